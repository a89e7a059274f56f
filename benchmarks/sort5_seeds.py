"""sort5 from random init, RL only, over several seeds: held-out exact match and policy entropy,
and how the end of each run holds up; optionally a second setting beside it.

    python benchmarks/sort5_seeds.py --seeds 0 1 2 [--threads T] [--set key=value ...]
        [--label preset] [--compare-label constant-lr --compare-set optim.lr_schedule=constant ...]
    python benchmarks/sort5_seeds.py --from-runs LABEL=RUN_DIR [LABEL=RUN_DIR ...]   # finished runs

Each seed is one `rlvr train --config sort5 --seed S` (sequentially: run it alone on the machine, the
wall time is part of the result). Per run it records the evaluation curve (eval/exact_match every
eval.every steps), the policy entropy and sampled reward per step (means over windows of 50 steps),
the wall time, the load average before and after, and the *end*: the final evaluation and the lowest
of the last three (a run is judged on where it ends, not on its best evaluation). Writes
benchmarks/results/sort5-seeds.json (or --out) and docs/img/sort5-seeds.png: exact match and
entropy against the step, one line per run, the two settings side by side. The JSON carries a
"provenance" block (benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.runs.atomic import atomic_write_text
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"
WINDOW = 50  # steps per point of the per-step curves


def read_run(run_dir: Path) -> dict:
    """The curves of one finished (or stopped) run directory."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval/exact_match"]) for r in rows if "eval/exact_match" in r]
    steps = [r for r in rows if r["step"] > 0 and "policy/entropy" in r]
    windows = [steps[i:i + WINDOW] for i in range(0, len(steps), WINDOW)]
    per_step = [{"step": w[-1]["step"], "entropy": statistics.fmean(r["policy/entropy"] for r in w),
                 "train_reward": statistics.fmean(r["train/reward_mean"] for r in w)} for w in windows]
    seconds = sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0) for r in rows)
    summary_path = run_dir / "summary.json"
    wall = json.loads(summary_path.read_text())["wall_seconds"] if summary_path.exists() else seconds
    last3 = [y for _, y in evals[-3:]]
    return {"run_dir": str(run_dir), "steps": rows[-1]["step"], "eval_curve": evals, "per_step": per_step,
            "final_exact_match": evals[-1][1], "min_last3_exact_match": min(last3),
            "wall_minutes": wall / 60, "config": (run_dir / "config.yaml").read_text()}


def run_seed(seed: int, sets: list[str], threads: int | None, run_dir: Path) -> dict:
    overrides = dict(s.split("=", 1) for s in sets)
    overrides.update({"seed": seed, "run_dir": str(run_dir)})
    if threads is not None:
        overrides["train.threads"] = threads
    cfg = load_config(resolve_config_path("sort5"), overrides)
    load_before = os.getloadavg()
    start = time.perf_counter()
    train(cfg, show_progress=False)
    result = read_run(run_dir)
    result.update({"seed": seed, "overrides": sets, "threads": threads,
                   "wall_minutes": (time.perf_counter() - start) / 60,
                   "load_before": load_before, "load_after": os.getloadavg()})
    print(f"seed {seed}: final {result['final_exact_match']:.3f}, lowest of the last three "
          f"{result['min_last3_exact_match']:.3f}, {result['wall_minutes']:.1f} min "
          f"(load {load_before[0]:.2f} -> {result['load_after'][0]:.2f})", flush=True)
    return result


def summary_of(runs: list[dict]) -> dict:
    finals = [r["final_exact_match"] for r in runs]
    minutes = [r["wall_minutes"] for r in runs]
    return {"final_exact_match": finals, "min_last3_exact_match": [r["min_last3_exact_match"] for r in runs],
            "final_median": statistics.median(finals), "wall_minutes": minutes,
            "wall_minutes_median": statistics.median(minutes), "wall_minutes_range": [min(minutes), max(minutes)]}


def plot(settings: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_em, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    for colour, (label, runs) in zip(("tab:blue", "tab:red", "tab:green", "tab:purple"), settings.items(),
                                     strict=False):
        for i, run in enumerate(runs):
            name = f"{label}" if i == 0 else None
            ax_em.plot(*zip(*run["eval_curve"], strict=True), "-", color=colour, alpha=0.8, label=name)
            ax_h.plot([p["step"] for p in run["per_step"]], [p["entropy"] for p in run["per_step"]], "-",
                      color=colour, alpha=0.8, label=name)
    ax_em.axhline(0.9, color="grey", ls=":", lw=1)
    ax_em.set(xlabel="outer step", ylabel="held-out greedy exact match", ylim=(0, 1))
    ax_h.set(xlabel="outer step", ylabel=f"policy entropy, nats/token (mean of {WINDOW} steps)", yscale="log")
    for ax in (ax_em, ax_h):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("sort5 from random init, RL only: one line per seed")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], help="override of the preset, section.key=value")
    parser.add_argument("--label", default="preset")
    parser.add_argument("--compare-label", help="a second setting, run on the same seeds")
    parser.add_argument("--compare-set", action="append", default=[], help="the second setting's overrides")
    parser.add_argument("--from-runs", nargs="*", default=[], metavar="LABEL=RUN_DIR",
                        help="summarise finished runs instead of training (repeat a label for its seeds)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "sort5-seeds")
    parser.add_argument("--out", default="sort5-seeds")
    args = parser.parse_args()
    watch = LoadWatch()
    settings: dict[str, list[dict]] = {}
    for item in args.from_runs:
        label, run_dir = item.split("=", 1)
        settings.setdefault(label, []).append(read_run(Path(run_dir)))
    if not args.from_runs:
        plan = [(args.label, args.set)] + ([(args.compare_label, args.compare_set)] if args.compare_label else [])
        for label, sets in plan:
            settings[label] = [run_seed(seed, sets, args.threads, args.workdir / f"{label}-{seed}")
                               for seed in args.seeds]
    result = {"date": time.strftime("%Y-%m-%d"), "platform": platform.platform(), "cpu_count": os.cpu_count(),
              "settings": {label: {"summary": summary_of(runs), "runs": runs} for label, runs in settings.items()},
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    if args.from_runs:
        result["provenance"]["note"] = "recorded when summarising the finished runs (--from-runs), not when they ran"
    atomic_write_text(RESULTS / f"{args.out}.json", json.dumps(result, indent=1) + "\n")
    plot(settings, IMAGES / f"{args.out}.png")
    print(json.dumps({label: r["summary"] for label, r in result["settings"].items()}, indent=1))


if __name__ == "__main__":
    main()
