"""Where a step's inference budget goes: uniform groups, DAPO's dynamic sampling, Reinforce-Ada.

    python benchmarks/adaptive_sampling.py --preset sort5 [--seeds 3] [--jobs 2] [--arms ...] [--set key=value ...]

Every arm is the ``reinforce-ada`` recipe over the preset (clipped loss 0.2 / 0.28, token-mean,
dr-grpo deltas: the group's or the pool's mean as the baseline, no std, no KL) with outcome credit
(adaptive sampling has no per-position form), and differs only in how the step's groups are drawn:

    uniform     one draw of G per prompt                                  (algo.adaptive_sampling none)
    dynamic     DAPO: flat groups dropped, new prompts drawn, <= 3 refills (algo.dynamic_sampling true)
    balanced    Reinforce-Ada-balance: rounds of M = 2G, <= 4 rounds
    positive    Reinforce-Ada-pos: the same rounds, a prompt retired at its first correct response

Each (arm, seed) trains in a worker process (one thread; --jobs at once) and records, at every
evaluation, eval/exact_match and the responses sampled so far (the inference cost: B x G a step for
uniform, the draws' B x G for dynamic, the pools for the adaptive arms), and per step the share of
trained groups without a reward spread. Writes benchmarks/results/adaptive-sampling-<preset>.json
(or --out): per arm the mean curve over seeds against steps and against responses sampled, seconds
per run (median and range), and a "provenance" block (benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb
from provenance import summary as median_range
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.runs.atomic import atomic_write_text
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRIC = "eval/exact_match"
RECIPE = "reinforce-ada"
ARMS: dict[str, dict[str, object]] = {
    "uniform": {"algo.adaptive_sampling": "none"},
    "dynamic": {"algo.adaptive_sampling": "none", "algo.dynamic_sampling": True, "algo.max_refills": 3},
    "balanced": {"algo.adaptive_sampling": "balanced"},
    "positive": {"algo.adaptive_sampling": "positive"},
}


def sampled_per_step(row: dict, prompts: int, group: int) -> float:
    """Responses sampled in one outer step, from its metrics row."""
    if "sampling/samples_per_prompt" in row:       # adaptive: every pool
        return float(round(row["sampling/samples_per_prompt"] * prompts))
    return row.get("sampling/draws", 1.0) * prompts * group   # dynamic sampling: each draw is B x G


def run_arm(preset: Path, arm: str, seed: int, overrides: dict[str, str], workdir: Path) -> dict:
    run_dir = workdir / f"{arm}-{seed}"
    cfg = load_config(preset, {"algo.credit": "outcome", **ARMS[arm], **overrides, "seed": seed,
                               "run_dir": str(run_dir), "train.threads": 1}, recipe=RECIPE)
    summary = train(cfg, show_progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sampled, curve, flat = 0.0, [], []
    for row in rows:
        if row["step"] > 0 and "train/reward_mean" in row:
            sampled += sampled_per_step(row, cfg.train.prompts_per_step, cfg.train.group_size)
            if "sampling/flat_groups" in row:
                flat.append(row["sampling/flat_groups"])
            elif "loss/total" in row:  # the groups trained on: the first draw's (uniform) or the kept ones
                flat.append(0.0 if "sampling/kept_groups" in row else row["train/zero_std_frac"])
        if METRIC in row:
            curve.append((row["step"], sampled, row[METRIC]))
    return {"seed": seed, "curve": curve, "final": curve[-1][2], "responses_sampled": sampled,
            "flat_trained_groups": statistics.fmean(flat) if flat else None,
            "wall_seconds": summary["wall_seconds"]}


def summarise(arm: str, runs: list[dict]) -> dict:
    columns = list(zip(*[r["curve"] for r in runs], strict=True))
    return {
        "arm": arm, "values": ARMS[arm], "steps": [c[0][0] for c in columns],
        "mean_responses_sampled": [statistics.fmean(p[1] for p in c) for c in columns],
        "mean_curve": [statistics.fmean(p[2] for p in c) for c in columns],
        "min_curve": [min(p[2] for p in c) for c in columns], "max_curve": [max(p[2] for p in c) for c in columns],
        "final_mean": statistics.fmean(r["final"] for r in runs),
        "seconds_per_run": statistics.fmean(r["wall_seconds"] for r in runs),
        "wall_seconds": median_range(r["wall_seconds"] for r in runs), "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sort5", help="a preset name from configs/ or a YAML path")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (<= cores)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. train.outer_steps=800")
    parser.add_argument("--out", type=Path, help="the JSON file (default benchmarks/results/adaptive-sampling-PRESET.json)")
    args = parser.parse_args()
    watch = LoadWatch()
    preset_path = resolve_config_path(args.preset)
    overrides = dict(item.split("=", 1) for item in args.set)
    jobs = [(arm, seed) for arm in args.arms for seed in range(args.seeds)]
    finished: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as workdir, ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_arm, preset_path, arm, seed, overrides, Path(workdir)): (arm, seed)
                   for arm, seed in jobs}
        for future in as_completed(futures):
            arm, seed = futures[future]
            run = finished[(arm, seed)] = future.result()
            print(f"{arm:<9} seed {seed}: final {METRIC} {run['final']:.2f}, {run['responses_sampled']:.0f} "
                  f"responses sampled ({run['wall_seconds']:.1f}s)", flush=True)
    results = [summarise(arm, [finished[(arm, seed)] for seed in range(args.seeds)]) for arm in args.arms]
    out = args.out or RESULTS / f"adaptive-sampling-{preset_path.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"preset": preset_path.stem, "recipe": RECIPE, "seeds": args.seeds,
                                       "overrides": overrides, "date": time.strftime("%Y-%m-%d"),
                                       "results": results, "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
