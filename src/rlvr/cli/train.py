"""Commands that run a training config: ``rlvr train`` (or resume a run) and ``rlvr sft``.

    rlvr train --config FILE [--algo RECIPE] [--seed N] [--run-dir DIR] [--section.key VALUE ...]
    rlvr train --resume RUN_DIR
    rlvr sft   --config FILE [--run-dir DIR] [--section.key VALUE ...]   the config's SFT stage alone

Flags override the YAML; ``rlvr train --help`` lists every config field with its default and
allowed values (the parser is ``rlvr.cli.parsing.train_parser``; ``rlvr sft`` takes the same).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rlvr.cli.parsing import config_from_args, parse_overrides, train_parser
from rlvr.config import load_config, to_dict
from rlvr.errors import UserError
from rlvr.runs import RunDir


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
    cfg = load_config(run / "config.yaml", {"run_dir": str(run)}, saved=True)
    summary = train(cfg, show_progress=not args.quiet, trackers=args.tracker, show_samples=args.show_samples,
                    resume=True)
    print_summary(summary)
    return 0


def sft_command(argv: list[str]) -> int:
    import torch

    from rlvr.policies import build_policy
    from rlvr.policies.export import save_final
    from rlvr.runs.recorder import default_run_dir
    from rlvr.sft import run_sft
    from rlvr.tasks import build_task
    from rlvr.trainer import seed_everything

    parser = train_parser()
    parser.prog, parser.description = "rlvr sft", "Supervised warm start (the config's sft section) alone."
    args, rest = parser.parse_known_args(argv)
    cfg = config_from_args(args, rest)
    if cfg.sft.steps == 0:
        raise UserError("sft.steps: 0; give the number of SFT steps (--sft.steps N)")
    torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    task = build_task(cfg.task)
    policy = build_policy(cfg.policy, task)
    run_dir = RunDir(cfg.run_dir or default_run_dir(cfg.name + "-sft"))
    run_dir.write_config(to_dict(cfg))
    start = time.perf_counter()
    from rlvr.multiturn import build_episodes
    episodes = build_episodes(cfg, task, policy)  # a multi-turn task: demonstrated and evaluated as episodes
    try:
        rows = run_sft(cfg, policy, task, run_dir, show_progress=not args.quiet, episodes=episodes)
    finally:
        if episodes is not None:
            episodes.close()
    save_final(policy, run_dir.path / "final")
    final = {k: v for k, v in rows[-1].items() if k.startswith(("eval/", "sft/"))}
    run_dir.write_json("summary.json", {"sft_steps": cfg.sft.steps, "wall_seconds": time.perf_counter() - start,
                                        "final": final, "run_dir": str(run_dir.path)})
    print("done: " + "  ".join(f"{k} {v:.3f}" for k, v in final.items()) + f"\nrun directory: {run_dir.path}")
    return 0



def print_summary(summary: dict[str, Any]) -> None:
    final = "  ".join(f"{k} {v:.3f}" for k, v in summary["final"].items())
    print(f"done in {summary['wall_seconds']:.1f}s: {final}\nrun directory: {summary['run_dir']}")
