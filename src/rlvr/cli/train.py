"""``rlvr train``: run a training config, or resume a run.

    rlvr train --config FILE [--algo RECIPE] [--seed N] [--run-dir DIR] [--section.key VALUE ...]
    rlvr train --resume RUN_DIR

Flags override the YAML; ``rlvr train --help`` lists every config field with its default and
allowed values (the parser is ``rlvr.cli.parsing.train_parser``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlvr.cli.parsing import config_from_args, parse_overrides, train_parser
from rlvr.config import load_config
from rlvr.errors import UserError


def train_command(argv: list[str]) -> int:
    from rlvr.distributed import is_main_process, train  # the DDP learner when run by torchrun

    args, rest = train_parser().parse_known_args(argv)
    if args.resume is not None:
        return resume_train(args, parse_overrides(rest))
    cfg = config_from_args(args, rest)
    summary = train(cfg, show_progress=not args.quiet, trackers=args.tracker, show_samples=args.show_samples)
    if not is_main_process():
        return 0
    print_summary(summary)
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
    print_summary(summary)
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    final = "  ".join(f"{k} {v:.3f}" for k, v in summary["final"].items())
    print(f"done in {summary['wall_seconds']:.1f}s: {final}\nrun directory: {summary['run_dir']}")
