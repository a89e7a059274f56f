"""From a command line to a Config, for every command.

``Parser`` turns an argparse mistake into one ``UserError`` line (exit 2); ``resolve_config_path``
reads a YAML path or a shipped preset name; ``parse_overrides`` reads ``--section.key VALUE`` flags;
``train_parser`` is ``rlvr train``'s parser (every config field in its --help), which ``rlvr sft``
shares, and ``config_from_args`` builds the Config from what it parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlvr.config import Config, field_help, load_config
from rlvr.errors import UserError
from rlvr.recipes import RECIPES

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs"


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
    parser.add_argument("--env", help="module.path:make_env, your env for the task's rows (same as --env.factory)")
    return parser


def config_from_args(args: argparse.Namespace, rest: list[str]) -> Config:
    overrides = parse_overrides(rest)
    shortcuts = {"seed": "seed", "run_dir": "run_dir", "task": "task.name", "policy": "policy.kind",
                 "model": "policy.model", "backend": "distributed.backend",
                 "rollout_workers": "distributed.rollout_workers", "env": "env.factory"}
    for attr, key in shortcuts.items():
        if getattr(args, attr, None) is not None:
            overrides[key] = getattr(args, attr)
    path = resolve_config_path(args.config) if args.config else None
    return load_config(path, overrides, recipe=getattr(args, "algo", None))
