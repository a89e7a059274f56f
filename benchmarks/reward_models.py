"""Binary verifiable reward vs a learned reward model vs both, on sort-text (docs/experiments.md).

    python benchmarks/reward_models.py [--steps 200] [--seeds 0] [--length 3]

1. ``rlvr rm train --task sort-text``: a Bradley-Terry reward model on synthetic preferences
   (the more-sorted of two answers is preferred).
2. Three RL runs from the same SFT warm start (flawed demonstrations), differing only in
   ``rewards.sources``: exact match (binary verifier), the reward model, and their sum. Every run
   also logs the sources it does not train on (weight 0), so the learned reward and the verifier
   are both visible in every run: reward hacking = ``reward/model`` rising while exact match does not.
Writes benchmarks/results/reward-models.json (with a "provenance" block, benchmarks/provenance.py) and
docs/img/reward-models.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from provenance import LoadWatch, provenance, rss_now_mb  # noqa: E402
from rlvr.config import load_config  # noqa: E402
from rlvr.runs.rundir import atomic_write_text  # noqa: E402
from rlvr.trainer import train  # noqa: E402

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"


def exact_task(length: int) -> dict:
    """Binary verifier: 1 only for the exactly sorted answer (the task's partial credit is the RM's to learn)."""
    return {"task.name": "sort-text", "task.length": length, "task.num_eval_prompts": 100}


def sources(setting: str, rm_dir: Path) -> list[dict]:
    weights = {"binary": (1.0, 0.0), "model": (0.0, 1.0), "binary+model": (1.0, 0.5)}[setting]
    return [{"kind": "exact", "weight": weights[0]},
            {"kind": "model", "path": str(rm_dir), "weight": weights[1]}]


def run_config(setting: str, rm_dir: Path, *, steps: int, seed: int, length: int, run_dir: Path) -> dict:
    return {**exact_task(length), "seed": seed, "run_dir": str(run_dir), "name": f"rm-{setting}",
            "policy.kind": "transformer", "policy.hidden_size": 64, "policy.intermediate_size": 256,
            "policy.num_layers": 2, "policy.num_heads": 4,
            "sft.steps": 60, "sft.batch_size": 32, "sft.lr": 1e-3, "sft.flawed_fraction": 0.5, "sft.eval_every": 60,
            "algo.deltas": "normalized", "algo.loss": "clipped",
            "optim.name": "adamw", "optim.lr": 3e-4, "optim.grad_clip": 1.0,
            "train.outer_steps": steps, "train.inner_steps": 1, "train.prompts_per_step": 8,
            "train.group_size": 8, "train.threads": 1, "train.diagnostics_every": 0,
            "eval.every": 20, "eval.pass_k": 1, "eval.pass_samples": 1, "eval.samples_every": 50,
            "checkpoint.every": 0, "rewards.sources": sources(setting, rm_dir)}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--length", type=int, default=3)
    parser.add_argument("--work", default="runs/reward-models")
    args = parser.parse_args()
    watch = LoadWatch()
    work = Path(args.work)
    rm_dir = work / "rm"
    subprocess.run([sys.executable, "-m", "rlvr", "rm", "train", "--task", "sort-text", "--task.length",
                    str(args.length), "--out", str(rm_dir), "--pairs", "2000", "--steps", "200"], check=True)
    rm_summary = json.loads((rm_dir / "summary.json").read_text())
    runs: dict[str, dict] = {}
    for setting in ("binary", "model", "binary+model"):
        for seed in args.seeds:
            run_dir = work / f"{setting}-s{seed}"
            overrides = run_config(setting, rm_dir, steps=args.steps, seed=seed, length=args.length, run_dir=run_dir)
            cfg = load_config(None, overrides)
            summary = train(cfg, show_progress=False)
            rows = read_jsonl(run_dir / "metrics.jsonl")
            keys = ("eval/exact_match", "eval/reward_mean", "train/zero_std_frac", "reward/exact", "reward/model")
            runs[f"{setting}/s{seed}"] = {
                "final": summary["final"], "wall_seconds": summary["wall_seconds"],
                "curve": [{"step": r["step"], **{k: r[k] for k in keys if k in r}} for r in rows]}
            print(setting, seed, summary["final"], flush=True)
    result = {"rm": rm_summary, "args": vars(args), "runs": runs,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / "reward-models.json", json.dumps(result, indent=1))
    plot(runs, IMAGES / "reward-models.png")
    return 0


def smooth(values: list[float], window: int = 10) -> list[float]:
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def plot(runs: dict[str, dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    colors = {"binary": "tab:blue", "model": "tab:red", "binary+model": "tab:green"}
    for name, run in runs.items():
        setting = name.split("/")[0]
        rows = run["curve"]
        ev = [r for r in rows if "eval/exact_match" in r]
        tr = [r for r in rows if "reward/model" in r]
        kw = {"color": colors[setting], "label": name, "alpha": 0.9}
        axes[0].plot([r["step"] for r in ev], [r["eval/exact_match"] for r in ev], marker="o", **kw)
        axes[1].plot([r["step"] for r in tr], smooth([r["train/zero_std_frac"] for r in tr]), **kw)
        axes[2].plot([r["step"] for r in tr], smooth([r["reward/model"] for r in tr]), **kw)
        axes[3].plot([r["step"] for r in tr], smooth([r["reward/exact"] for r in tr]), **kw)
    titles = ["held-out greedy exact match", "train/zero_std_frac (10-step mean)",
              "learned reward reward/model (train, 10-step mean)", "exact-match rate reward/exact (train, 10-step mean)"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RL outer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
