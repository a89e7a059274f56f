"""The guess preset over seeds: mean guesses and success on the held-out hidden numbers against the
random demonstrator it starts from and against bisection.

    python benchmarks/guess.py --seeds 0 1 2 [--set key=value ...] [--label guess]
    python benchmarks/guess.py --from-runs LABEL=RUN_DIR [LABEL=RUN_DIR ...]       # finished runs

Each seed is one `rlvr train --config guess --seed S` (sequentially: run it alone on the machine,
the wall time is part of the result). Per run: the held-out evaluation curve (eval/guesses and
eval/success, greedy, every eval.every steps, step 0 = after the SFT warm start), the training
episodes' mean guesses per step, the wall time and the load average before and after. Writes
benchmarks/results/guess.json (or --out) and docs/img/guess.png: mean guesses against the step with
the two reference lines (the random demonstrator within the turn limit, and bisection's 5.8). The JSON
carries a "provenance" block (benchmarks/provenance.py) and the wall minutes' median and range.
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
from provenance import summary as median_range
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.envs.guess import expected_bisect_guesses, expected_random_guesses
from rlvr.runs.atomic import atomic_write_text
from rlvr.tasks import build_task
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"


def read_run(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [{"step": r["step"], "guesses": r["eval/guesses"], "success": r["eval/success"]}
             for r in rows if "eval/guesses" in r]
    train_guesses = [(r["step"], r["env/guesses"]) for r in rows if "env/guesses" in r]
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    sft = [json.loads(line) for line in (run_dir / "sft_metrics.jsonl").read_text().splitlines()] \
        if (run_dir / "sft_metrics.jsonl").exists() else []
    return {"run_dir": str(run_dir), "steps": rows[-1]["step"], "eval_curve": evals, "train_guesses": train_guesses,
            "final": evals[-1] if evals else None, "after_sft": evals[0] if evals else None,
            "sft_seconds": sum(r.get("time/step", 0.0) for r in sft),
            "wall_minutes": summary.get("wall_seconds", 0.0) / 60}


def run_seed(seed: int, sets: list[str], run_dir: Path) -> dict:
    overrides = dict(s.split("=", 1) for s in sets)
    overrides.update({"seed": seed, "run_dir": str(run_dir)})
    cfg = load_config(resolve_config_path("guess"), overrides)
    before = os.getloadavg()[0]
    print(f"seed {seed}: rlvr train --config guess {' '.join(sets)} -> {run_dir}", flush=True)
    t0 = time.perf_counter()
    train(cfg, show_progress=True)
    result = read_run(run_dir)
    result.update({"seed": seed, "wall_minutes": (time.perf_counter() - t0) / 60,
                   "load_before": before, "load_after": os.getloadavg()[0]})
    print(f"seed {seed}: final {result['final']} in {result['wall_minutes']:.1f} min", flush=True)
    return result


def random_guesses_for(hidden: int, lo: int, hi: int, turns_left: int, memo: dict) -> float:
    """Expected guesses of the random demonstrator (``choose_guess``: uniform among the guesses that
    keep the rest solvable in the turns left) to find ``hidden`` in [lo, hi], exactly."""
    key = (lo, hi, turns_left)
    if key not in memo:
        side = 2 ** (turns_left - 1) - 1 if turns_left >= 1 else 0
        first, last = max(lo, hi - side), min(hi, lo + side)
        guesses = range(first, last + 1) if first <= last else [(lo + hi) // 2]
        total = 0.0
        for g in guesses:
            if g != hidden:
                nlo, nhi = (g + 1, hi) if g < hidden else (lo, g - 1)
                total += random_guesses_for(hidden, nlo, nhi, turns_left - 1, memo)
        memo[key] = 1.0 + total / len(guesses)
    return memo[key]


def bisect_guesses_for(hidden: int, lo: int, hi: int) -> int:
    count = 1
    while (g := (lo + hi) // 2) != hidden:
        lo, hi, count = (g + 1, hi, count + 1) if g < hidden else (lo, g - 1, count + 1)
    return count


def references(cfg_path: Path) -> dict[str, float]:
    """Mean guesses of both demonstrators over every hidden number, and over the held-out ones (the
    numbers eval/guesses is measured on)."""
    cfg = load_config(cfg_path)
    task = build_task(cfg.task)
    low, high, turns = cfg.task.low, cfg.task.high, cfg.task.max_turns  # type: ignore[attr-defined]
    heldout = [int(p) for p in task.eval_prompts()]
    return {"random": expected_random_guesses(high - low + 1),
            "random_within_turns": expected_random_guesses(high - low + 1, max_turns=turns),
            "bisect": expected_bisect_guesses(high - low + 1),
            "heldout_numbers": sorted(heldout),
            "random_within_turns_heldout": statistics.fmean(
                random_guesses_for(h, low, high, turns, {}) for h in heldout),
            "bisect_heldout": statistics.fmean(bisect_guesses_for(h, low, high) for h in heldout)}


def plot(runs: list[dict], refs: dict[str, float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        label = f"{run['label']} seed {run['seed']}"
        steps, guesses = zip(*run["train_guesses"], strict=True) if run["train_guesses"] else ((), ())
        left.plot(steps, guesses, lw=0.8, label=label)
        curve = run["eval_curve"]
        right.plot([c["step"] for c in curve], [c["guesses"] for c in curve], marker="o", ms=3, label=label)
    for ax, title in ((left, "training episodes (sampled, all numbers)"),
                      (right, "held-out hidden numbers (greedy)")):
        suffix = "_heldout" if ax is right else ""  # the held-out curve against the held-out numbers' values
        ax.axhline(refs["random_within_turns" + suffix], color="grey", ls="--",
                   label=f"random demonstrator {refs['random_within_turns' + suffix]:.2f}")
        ax.axhline(refs["bisect" + suffix], color="black", ls=":", label=f"bisection {refs['bisect' + suffix]:.2f}")
        ax.set_xlabel("RL step (0: after SFT)")
        ax.set_ylabel("mean guesses")
        ax.set_title(title)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", default="guess")
    parser.add_argument("--from-runs", nargs="*", default=None, metavar="LABEL=RUN_DIR")
    parser.add_argument("--runs-root", default="runs/benchmarks/guess")
    parser.add_argument("--out", default=str(RESULTS / "guess.json"))
    parser.add_argument("--plot", default=str(IMAGES / "guess.png"))
    args = parser.parse_args()
    watch = LoadWatch()
    runs = []
    if args.from_runs is not None:
        for item in args.from_runs:
            label, run_dir = item.split("=", 1)
            runs.append({"label": label, "seed": None, **read_run(Path(run_dir))})
    else:
        for seed in args.seeds:
            run = run_seed(seed, args.set, Path(args.runs_root) / f"{args.label}-seed{seed}")
            runs.append({"label": args.label, **run})
    refs = references(resolve_config_path("guess"))
    finals = [r["final"] for r in runs if r["final"]]
    result = {"measured_by": "python benchmarks/guess.py " + (
        f"--seeds {' '.join(map(str, args.seeds))}" + (f" --set {' '.join(args.set)}" if args.set else "")
        if args.from_runs is None else "--from-runs ..."),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "references": refs, "runs": runs,
        "median_final_guesses": statistics.median(f["guesses"] for f in finals) if finals else None,
        "median_final_success": statistics.median(f["success"] for f in finals) if finals else None,
        "wall_minutes": median_range(r["wall_minutes"] for r in runs),
        "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    if args.from_runs is not None:
        result["provenance"]["note"] = "recorded when summarising the finished runs (--from-runs), not when they ran"
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    plot(runs, refs, Path(args.plot))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
