"""Command line: ``rlvr train``.

    rlvr train --config FILE [--algo RECIPE] [--seed N] [--run-dir DIR] [--section.key VALUE ...]
    rlvr train --resume RUN_DIR

Flags override the YAML; ``rlvr train --help`` lists every config field with its default and
allowed values. A user mistake prints one line ``rlvr: error: ...`` and exits with code 2; a run
stopped by a guard (failing rewards, non-finite updates) prints ``rlvr: stopped: ...``, exit code 3.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvr.config import field_help, load_config
from rlvr.errors import RunStopped, UserError
from rlvr.recipes import RECIPES

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs"
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)  # a full or read-only disk


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UserError(message)


def resolve_config_path(value: str) -> Path:
    """A YAML path, or the name of a shipped preset (``sort-toy`` -> configs/sort-toy.yaml)."""
    path = Path(value)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{value}.yaml"
    if preset.is_file():
        return preset
    presets = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise UserError(f"--config: no such file or preset {value!r}; presets: {', '.join(presets)}")


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """['--algo.deltas', 'rloo', '--train.group_size=8'] -> {'algo.deltas': 'rloo', 'train.group_size': '8'}."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or "." not in token.split("=", 1)[0]:
            raise UserError(f"unrecognized argument {token!r} (config fields are --section.key VALUE; see --help)")
        if "=" in token:
            key, value = token[2:].split("=", 1)
        else:
            if i + 1 >= len(tokens):
                raise UserError(f"{token}: expected a value")
            key, value = token[2:], tokens[i + 1]
            i += 1
        overrides[key] = value
        i += 1
    return overrides


def train_parser() -> Parser:
    rows = "\n".join(f"  {flag:<34} {text}" for flag, text in field_help())
    parser = Parser(
        prog="rlvr train", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Train a policy with reinforcement learning from verifiable rewards.",
        epilog=f"config fields (each also settable in the YAML as section: {{key: value}}):\n{rows}")
    parser.add_argument("--config", help="YAML config file, or a preset name from configs/ (e.g. sort-toy)")
    parser.add_argument("--algo", metavar="RECIPE", help="a named recipe applied over the YAML and under "
                        "--section.key flags: " + ", ".join(RECIPES.names()))
    parser.add_argument("--seed", help="seed of the run (same as --seed in the YAML)")
    parser.add_argument("--run-dir", help="where the run writes its files (default runs/<name>-<time>)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--show-samples", action="store_true",
                        help="print each batch of completions written to samples.jsonl as a table")
    parser.add_argument("--tracker", action="append", default=[], metavar="{wandb,trackio}",
                        help="also log to this tracker (an optional extra; repeatable). "
                             "metrics.jsonl and TensorBoard (RUN_DIR/tb) are always written")
    parser.add_argument("--backend", help="where rollouts are sampled: local or ray (= --distributed.backend)")
    parser.add_argument("--rollout-workers", help="Ray rollout actors (= --distributed.rollout_workers)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue RUN_DIR from its newest good checkpoint with its saved config.yaml "
                             "(from scratch if it has none; nothing to do if it finished)")
    parser.add_argument("--task", help="task name, overriding the preset's (same as --task.name; rg:NAME for reasoning-gym)")
    parser.add_argument("--policy", help="policy kind (same as --policy.kind: toy, transformer, hf)")
    parser.add_argument("--model", help="local model folder (same as --policy.model)")
    return parser


def config_from_args(args: argparse.Namespace, rest: list[str]) -> Any:
    overrides = parse_overrides(rest)
    shortcuts = {"seed": "seed", "run_dir": "run_dir", "task": "task.name", "policy": "policy.kind",
                 "model": "policy.model", "backend": "distributed.backend",
                 "rollout_workers": "distributed.rollout_workers"}
    for attr, key in shortcuts.items():
        if getattr(args, attr, None) is not None:
            overrides[key] = getattr(args, attr)
    path = resolve_config_path(args.config) if args.config else None
    return load_config(path, overrides, recipe=getattr(args, "algo", None))


def cmd_train(argv: list[str]) -> int:
    from rlvr.distributed import is_main_process, train  # the DDP learner when run by torchrun

    args, rest = train_parser().parse_known_args(argv)
    if args.resume is not None:
        return resume_train(args, parse_overrides(rest))
    cfg = config_from_args(args, rest)
    summary = train(cfg, show_progress=not args.quiet, trackers=args.tracker, show_samples=args.show_samples)
    if not is_main_process():
        return 0
    report(summary)
    return 0


def resume_train(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from rlvr.trainer import train

    if args.config or args.seed is not None or args.run_dir or args.algo or overrides:
        raise UserError("--resume: a resumed run keeps its saved config.yaml; drop --config, --algo, --seed, "
                        "--run-dir and field flags")
    from rlvr.distributed.launch import launched_by_torchrun
    if launched_by_torchrun():
        raise UserError("--resume: resume a run with plain `rlvr train --resume RUN_DIR`, not under torchrun")
    run = Path(args.resume)
    if not (run / "config.yaml").is_file():
        raise UserError(f"--resume: {args.resume!r} is not a run directory (no config.yaml)")
    if (run / "summary.json").is_file():
        print(f"run {args.resume} already finished ({run / 'summary.json'}); nothing to do")
        return 0
    cfg = load_config(run / "config.yaml", {"run_dir": str(run)})
    summary = train(cfg, show_progress=not args.quiet, trackers=args.tracker, show_samples=args.show_samples,
                    resume=True)
    report(summary)
    return 0


def report(summary: dict[str, Any]) -> None:
    final = "  ".join(f"{k} {v:.3f}" for k, v in summary["final"].items())
    print(f"done in {summary['wall_seconds']:.1f}s: {final}\nrun directory: {summary['run_dir']}")


def lazy_command(spec: str) -> Callable[[list[str]], int]:
    """A command whose module ("package.module:function") is imported only when it runs, so
    ``rlvr train`` never pays for Hugging Face, reports or the variance tools."""
    def run(argv: list[str]) -> int:
        module, function = spec.split(":")
        return getattr(importlib.import_module(module), function)(argv)
    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {"train": cmd_train, **{
    name: lazy_command(spec) for name, spec in {
        "sft": "rlvr.lm_commands:sft_command",
        "eval": "rlvr.lm_commands:eval_command",
        "convert": "rlvr.lm_commands:convert_command",
        "report": "rlvr.runs.report:cmd_report",
        "variance": "rlvr.analysis.cli:cmd_variance",
        "rm": "rlvr.rewards.commands:rm_command",
    }.items()}}


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
