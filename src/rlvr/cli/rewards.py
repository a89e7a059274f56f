"""``rlvr rm``: preference data and reward models.

    rlvr rm data  --task NAME --out FILE.jsonl [--pairs N] [--task.key VALUE ...]
    rlvr rm train --out DIR (--data FILE.jsonl | --task NAME) [--pairs N] [--steps N] ...

``rm train`` fits a Bradley-Terry reward model (``rlvr.rewards.model``) and writes DIR as a Hugging
Face folder (config.json, model.safetensors, tokenizer files) plus DIR/summary.json with
``heldout/pairwise_accuracy``; use it as ``rewards.sources: [{kind: model, path: DIR}]``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlvr.cli.parsing import Parser, parse_overrides
from rlvr.config import load_config
from rlvr.errors import UserError
from rlvr.runs.rundir import atomic_write_text


def rm_parser(action: str) -> Parser:
    parser = Parser(prog=f"rlvr rm {action}", allow_abbrev=False,
                    description="Synthetic preference pairs of a text task." if action == "data" else
                    "Fit a reward model on pairwise preferences (Bradley-Terry loss).")
    parser.add_argument("--task", help="text task that generates the pairs (its --task.key VALUE flags apply)")
    parser.add_argument("--out", required=True, help="output JSONL file" if action == "data" else "output folder")
    parser.add_argument("--pairs", type=int, default=4000, help="pairs to generate from --task [4000]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the model [0]")
    if action == "train":
        parser.add_argument("--data", help="JSONL of {prompt, chosen, rejected} (default: generated from --task)")
        parser.add_argument("--steps", type=int, default=300, help="gradient steps [300]")
        parser.add_argument("--batch-size", type=int, default=64, help="pairs per step [64]")
        parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate [1e-3]")
        parser.add_argument("--hidden-size", type=int, default=64, help="model width [64]")
        parser.add_argument("--layers", type=int, default=2, help="decoder layers [2]")
        parser.add_argument("--heldout-fraction", type=float, default=0.1, help="pairs held out [0.1]")
        parser.add_argument("--threads", type=int, default=1, help="torch CPU threads [1]")
    return parser


def task_from(name: str, rest: list[str]) -> Any:
    from rlvr.tasks import build_task

    overrides = parse_overrides(rest)
    bad = [k for k in overrides if not k.startswith("task.")]
    if bad:
        raise UserError(f"--{bad[0]}: only --task.key VALUE flags are accepted here")
    return build_task(load_config(None, {**overrides, "task.name": name}).task)


def write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def rm_data_command(argv: list[str]) -> int:
    from rlvr.rewards.model import preference_pairs

    args, rest = rm_parser("data").parse_known_args(argv)
    if args.task is None:
        raise UserError("--task: give the text task that generates the pairs, e.g. --task sort-text")
    pairs = preference_pairs(task_from(args.task, rest), args.pairs, seed=args.seed)
    write_jsonl(Path(args.out), pairs)
    print(f"{len(pairs)} preference pairs -> {args.out}")
    return 0


def rm_train_command(argv: list[str]) -> int:
    from rlvr.rewards.model import (
        build_reward_model,
        preference_pairs,
        read_pairs,
        train_reward_model,
    )
    from rlvr.tokenizer import CharTokenizer

    args, rest = rm_parser("train").parse_known_args(argv)
    for flag in ("steps", "batch_size", "hidden_size", "layers", "pairs", "threads"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')}: {getattr(args, flag)} must be >= 1")
    if not 0 < args.heldout_fraction < 1:
        raise UserError(f"--heldout-fraction: {args.heldout_fraction} must be in (0, 1)")
    if args.data is None and args.task is None:
        raise UserError("--data: give a JSONL of {prompt, chosen, rejected}, or --task NAME to generate one")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    task = task_from(args.task, rest) if args.task is not None else None
    if args.data is not None:
        pairs = read_pairs(Path(args.data))
    else:
        pairs = preference_pairs(task, args.pairs, seed=args.seed)
        write_jsonl(out / "preferences.jsonl", pairs)
    texts = [p[k] for p in pairs for k in ("prompt", "chosen", "rejected")]
    tokenizer = CharTokenizer.from_texts(texts + (task.alphabet_texts() if task is not None else []))
    order = np.random.default_rng([args.seed, 9]).permutation(len(pairs))
    cut = max(1, int(round(args.heldout_fraction * len(pairs))))
    heldout, train = [pairs[i] for i in order[:cut]], [pairs[i] for i in order[cut:]]
    scorer = build_reward_model(tokenizer, hidden_size=args.hidden_size, num_layers=args.layers, seed=args.seed)
    start = time.perf_counter()
    metrics = train_reward_model(scorer, train, heldout, steps=args.steps, batch_size=args.batch_size,
                                 lr=args.lr, seed=args.seed)
    scorer.model.save_pretrained(str(out))
    tokenizer.save(out)
    summary = {**metrics, "pairs/train": len(train), "pairs/heldout": len(heldout), "steps": args.steps,
               "wall_seconds": time.perf_counter() - start, "data": args.data or str(out / "preferences.jsonl")}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"held-out pairwise accuracy {metrics['heldout/pairwise_accuracy']:.3f}  ({len(heldout)} pairs)\n"
          f"reward model: {out}  (rewards.sources: [{{kind: model, path: {out}}}])")
    return 0


def rm_command(argv: list[str]) -> int:
    actions = {"data": rm_data_command, "train": rm_train_command}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rlvr rm {data,train} ...\n\n"
              "  data   synthetic preference pairs of a text task (rlvr rm data --help)\n"
              "  train  fit a Bradley-Terry reward model (rlvr rm train --help)")
        return 0 if argv else 2
    if argv[0] not in actions:
        raise UserError(f"rm: unknown action {argv[0]!r}; valid: {', '.join(actions)}")
    return actions[argv[0]](argv[1:])
