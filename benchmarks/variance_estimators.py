"""Gradient estimators on the lecture's sorting task: raw, centered, RLOO, and the notes' optimal
per-parameter baseline (exact by enumeration) pooled and per prompt, over 5 seeds, with the live
variance diagnostics averaged over training.

    python benchmarks/variance_estimators.py [--seeds 5] [--presets sort-toy lecture-sort-centered]

Each preset is run with only ``algo.deltas`` / ``algo.param_baseline`` changed. Writes
benchmarks/results/variance-estimators-<date>.json. Columns: final greedy reward (mean over seeds),
greedy outputs exactly sorted (out of 3 prompts x seeds), mean half-batch gradient cosine over the
first 20 outer steps, and seconds per run (mean, and median and full range); a "provenance" block
(benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb
from provenance import summary as median_range
from rlvr.config import load_config
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = {
    "raw": {"algo.deltas": "raw"},
    "centered": {"algo.deltas": "centered"},
    "rloo": {"algo.deltas": "rloo"},
    "raw + optimal-exact": {"algo.deltas": "raw", "algo.param_baseline": "optimal-exact"},
    "raw + optimal-exact-per-prompt": {"algo.deltas": "raw", "algo.param_baseline": "optimal-exact-per-prompt"},
}


def run_one(preset: str, overrides: dict, seed: int, run_dir: Path) -> dict:
    cfg = load_config(ROOT / "configs" / f"{preset}.yaml", {**overrides, "seed": seed, "run_dir": str(run_dir)})
    summary = train(cfg, show_progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    cosines = [r["diag/grad_cos_halves"] for r in rows[:20] if r.get("diag/grad_cos_halves") is not None]
    return {"seed": seed, "greedy_reward": summary["final"]["eval/reward_mean"],
            "greedy_exact": round(summary["final"]["eval/exact_match"] * len(cfg.task.prompts or [])),
            "num_prompts": len(cfg.task.prompts or []),
            "cos_halves_first20": statistics.fmean(cosines) if cosines else None,
            "wall_seconds": summary["wall_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["sort-toy", "lecture-sort-centered"])
    args = parser.parse_args()
    watch = LoadWatch()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for label, overrides in ESTIMATORS.items():
                runs = [run_one(preset, overrides, seed, Path(tmp) / f"{len(results)}-{seed}") for seed in range(args.seeds)]
                row = {"preset": preset, "estimator": label, "runs": runs,
                       "greedy_reward": statistics.fmean(r["greedy_reward"] for r in runs),
                       "greedy_exact": f"{sum(r['greedy_exact'] for r in runs)}/{sum(r['num_prompts'] for r in runs)}",
                       "cos_halves_first20": statistics.fmean(r["cos_halves_first20"] for r in runs
                                                              if r["cos_halves_first20"] is not None),
                       "seconds_per_run": statistics.fmean(r["wall_seconds"] for r in runs),
                       "wall_seconds": median_range(r["wall_seconds"] for r in runs)}
                results.append(row)
                print(f"{preset:22} {label:32} greedy {row['greedy_reward']:.2f}  exact {row['greedy_exact']:>6}  "
                      f"cos {row['cos_halves_first20']:.2f}  {row['seconds_per_run']:.1f}s/run", flush=True)
    out = ROOT / "benchmarks" / "results" / f"variance-estimators-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": args.seeds, "results": results,
                               "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
