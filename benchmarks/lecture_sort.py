"""L1 (shared/spec/workloads.md): the lecture's sorting experiment over 5 seeds, for every
``lecture-sort-*`` preset and for ``sort-toy``, beside the original code's figures.

    python benchmarks/lecture_sort.py [--seeds 5] [--presets sort-toy lecture-sort-centered ...]

Writes benchmarks/results/lecture-sort-<date>.json and rewrites the table in docs/experiments.md
between its L1 markers. Columns: mean sampled reward of the last 10 outer steps (the notes'
figure), final greedy reward (eval/reward_mean) averaged over seeds, and greedy outputs exactly
sorted, out of 3 prompts x seeds. The JSON carries a "provenance" block (benchmarks/provenance.py)
and each preset's seconds per run (median and range).
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
ORIGINAL = {  # workloads.md, L1: the original code on 5 seeds
    "lecture-sort-raw": (2.87, "0/15"),
    "lecture-sort-centered": (3.47, "1/15"),
    "lecture-sort-normalized": (3.33, "0/15"),
    "lecture-sort-max": (3.00, "0/15"),
    "lecture-sort-clipped": (3.60, "2/15"),
}
PRESETS = ["lecture-sort-raw", "lecture-sort-centered", "lecture-sort-normalized", "lecture-sort-max",
           "lecture-sort-clipped", "sort-toy"]
# sort-toy with one ingredient taken away: which part of the recipe does the work
ABLATIONS = {
    "sort-toy, notes' init (init_scale 1)": ("sort-toy", {"policy.init_scale": 1.0}),
    "sort-toy, no entropy bonus": ("sort-toy", {"algo.entropy_coef": 0.0}),
    "sort-toy, constant entropy bonus": ("sort-toy", {"algo.entropy_schedule": "constant"}),
    "sort-toy, raw deltas": ("sort-toy", {"algo.deltas": "raw"}),
}
START, END = "<!-- L1-TABLE-START -->", "<!-- L1-TABLE-END -->"


def run_preset(label: str, seeds: int, workdir: Path) -> dict:
    preset, overrides = ABLATIONS.get(label, (label, {}))
    per_seed = []
    for seed in range(seeds):
        run_dir = workdir / f"{len(list(workdir.iterdir()))}"
        cfg = load_config(ROOT / "configs" / f"{preset}.yaml", {**overrides, "seed": seed, "run_dir": str(run_dir)})
        summary = train(cfg, show_progress=False)
        rows = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        num_prompts = len(cfg.task.prompts or [])
        per_seed.append({
            "seed": seed,
            "last10_sampled_reward": statistics.fmean(r["train/reward_mean"] for r in rows[-10:]),
            "greedy_reward": summary["final"]["eval/reward_mean"],
            "greedy_exact": round(summary["final"]["eval/exact_match"] * num_prompts),
            "num_prompts": num_prompts,
            "wall_seconds": summary["wall_seconds"],
        })
    return {
        "preset": label,
        "overrides": overrides,
        "last10_sampled_reward": statistics.fmean(s["last10_sampled_reward"] for s in per_seed),
        "greedy_reward": statistics.fmean(s["greedy_reward"] for s in per_seed),
        "greedy_exact": sum(s["greedy_exact"] for s in per_seed),
        "greedy_total": sum(s["num_prompts"] for s in per_seed),
        "seconds_per_run": statistics.fmean(s["wall_seconds"] for s in per_seed),
        "wall_seconds": median_range(s["wall_seconds"] for s in per_seed),
        "per_seed": per_seed,
    }


def table(results: list[dict]) -> str:
    lines = ["| preset | mean last-10 sampled reward | final greedy reward | greedy exact | original code (last-10, exact) | s/run |",
             "|---|---|---|---|---|---|"]
    for r in results:
        orig = ORIGINAL.get(r["preset"])
        orig_text = f"{orig[0]:.2f}, {orig[1]}" if orig else "—"
        name = f"`{r['preset']}`" if r["preset"] in PRESETS else r["preset"]
        lines.append(f"| {name} | {r['last10_sampled_reward']:.2f} | {r['greedy_reward']:.2f} | "
                     f"{r['greedy_exact']}/{r['greedy_total']} | {orig_text} | {r['seconds_per_run']:.1f} |")
    return "\n".join(lines)


def update_docs(text: str, doc: Path) -> None:
    content = doc.read_text()
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=PRESETS + list(ABLATIONS),
                        help="presets, or ablation labels: " + "; ".join(ABLATIONS))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/experiments.md")
    args = parser.parse_args()
    watch = LoadWatch()
    with tempfile.TemporaryDirectory() as workdir:
        results = []
        for preset in args.presets:
            results.append(run_preset(preset, args.seeds, Path(workdir)))
            r = results[-1]
            print(f"{preset:<26} last10 {r['last10_sampled_reward']:.2f}  greedy {r['greedy_reward']:.2f}  "
                  f"exact {r['greedy_exact']}/{r['greedy_total']}", flush=True)
    out = ROOT / "benchmarks" / "results" / f"lecture-sort-{time.strftime('%Y-%m-%d')}.json"
    record = {"seeds": args.seeds, "results": results,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(results))
    print(f"wrote {out.relative_to(ROOT)}")
    if not args.no_docs:
        update_docs(table(results) + f"\n\n_Measured by `python benchmarks/lecture_sort.py` on {time.strftime('%Y-%m-%d')}, "
                    f"{args.seeds} seeds (0..{args.seeds - 1})._", ROOT / "docs" / "experiments.md")


if __name__ == "__main__":
    main()
