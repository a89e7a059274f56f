"""The command line: ``rlvr COMMAND ...``, one module per family of commands.

    parsing.py    Parser, config presets and --section.key overrides, rlvr train's parser
    train.py      rlvr train (and --resume), rlvr sft
    models.py     rlvr eval, rlvr convert
    report.py     rlvr report
    variance.py   rlvr variance two-state | task
    rewards.py    rlvr rm data | train

A user mistake prints one line ``rlvr: error: ...`` and exits with code 2; a run stopped by a guard
(failing rewards, non-finite updates) prints ``rlvr: stopped: ...``, exit code 3.
"""

from __future__ import annotations

import errno
import importlib
import sys
from collections.abc import Callable

from rlvr.cli.parsing import (
    Parser,
    config_from_args,
    parse_overrides,
    resolve_config_path,
    train_parser,
)
from rlvr.errors import RunStopped, UserError

__all__ = ["COMMANDS", "Parser", "config_from_args", "main", "parse_overrides", "resolve_config_path",
           "train_parser"]

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # a full or read-only disk


def lazy_command(spec: str) -> Callable[[list[str]], int]:
    """A command whose module ("package.module:function") is imported only when it runs, so each
    command pays only for its own imports (``rlvr train`` never for Hugging Face, reports or the
    variance tools)."""
    def run(argv: list[str]) -> int:
        module, function = spec.split(":")
        return getattr(importlib.import_module(module), function)(argv)
    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {name: lazy_command(spec) for name, spec in {
    "train": "rlvr.cli.train:train_command",
    "sft": "rlvr.cli.train:sft_command",
    "eval": "rlvr.cli.models:eval_command",
    "convert": "rlvr.cli.models:convert_command",
    "report": "rlvr.cli.report:report_command",
    "variance": "rlvr.cli.variance:variance_command",
    "rm": "rlvr.cli.rewards:rm_command",
}.items()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rlvr {" + ",".join(COMMANDS) + "} ...\n\n"
              "  train     train a policy (rlvr train --help)\n"
              "  sft       supervised warm start on task demonstrations (rlvr sft --help)\n"
              "  eval      evaluate a run or a model folder on a task (rlvr eval --help)\n"
              "  convert   convert a GGUF model into a local Hugging Face folder (rlvr convert --help)\n"
              "  report    an HTML report of one or more runs (rlvr report --help)\n"
              "  variance  gradient variance under baselines and delta modes (rlvr variance --help)\n"
              "  rm        preference data and Bradley-Terry reward models (rlvr rm --help)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rlvr: error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except UserError as exc:
        print(f"rlvr: error: {exc}", file=sys.stderr)
        return 2
    except RunStopped as exc:
        print(f"rlvr: stopped: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        print(f"rlvr: error: {exc.filename or 'the run directory'}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlvr: interrupted", file=sys.stderr)
        return 130
