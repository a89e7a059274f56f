"""The named recipes side by side on one preset: learning curves of evaluation exact match.

    python benchmarks/recipes.py --preset sort5 [--seeds 3] [--jobs 2] [--recipes grpo dapo ...] [--set key=value ...]

For every recipe and seed, trains ``rlvr train --config PRESET --algo RECIPE --seed S`` (in a
worker process, one thread each; --jobs runs that many at once) and records eval/exact_match at
every evaluation (the preset's held-out prompts; a preset with a fixed prompt list, like sort-toy,
evaluates on that list). Writes
benchmarks/results/recipes-<preset>.json (with a "provenance" block, benchmarks/provenance.py, and
seconds per run as median and range) and recipes-<preset>.png (mean over seeds, band = min..max),
and rewrites the preset's table in docs/algorithms.md between its markers.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from provenance import LoadWatch, provenance, rss_now_mb  # noqa: E402
from provenance import summary as median_range  # noqa: E402
from rlvr.algorithms import CREDIT, DELTAS  # noqa: E402
from rlvr.cli import resolve_config_path  # noqa: E402
from rlvr.config import load_config  # noqa: E402
from rlvr.errors import ConfigError  # noqa: E402
from rlvr.recipes import RECIPES  # noqa: E402
from rlvr.runs.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from rlvr.trainer import train  # noqa: E402

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRIC = "eval/exact_match"


# a recipe that normalises each reward source (gdpo) needs several: the task's verifier and, at half
# weight, the binary exact-answer source (evaluation, exact match, is the same for every recipe)
TWO_SOURCES = "[{kind: verifier}, {kind: exact, weight: 0.5}]"


def recipe_overrides(preset: Path, recipe: str) -> dict[str, str]:
    """What a recipe needs beyond the preset to run on it at all (stated under the table).

    A recipe that normalises each reward source (gdpo) gets TWO_SOURCES. It and adaptive sampling
    (reinforce-ada) compute their deltas per response (per source, or over a pool), so on a preset with
    per-position credit (sort5's process credit) they run with outcome credit. A preset that leaves flat
    groups out of the training pass (smollm2-add) keeps them for a recipe whose loss gives them a gradient
    (a KL term in the loss: grpo)."""
    values, extra = RECIPES.get(recipe), {}
    per_source = DELTAS.meta(values["algo.deltas"]).get("needs_sources")
    if per_source:
        extra["rewards.sources"] = TWO_SOURCES
    if per_source or values.get("algo.adaptive_sampling", "none") != "none":
        credit = values.get("algo.credit") or load_config(preset).algo.credit
        if CREDIT.meta(credit).get("per_position"):
            extra["algo.credit"] = "outcome"
    try:
        load_config(preset, extra, recipe=recipe)
    except ConfigError as exc:  # a preset that skips flat groups, a recipe whose loss gives them a gradient
        if not str(exc).startswith("train.skip_flat_groups"):
            raise
        extra["train.skip_flat_groups"] = "false"
    return extra


def run_recipe(preset: Path, recipe: str, seed: int, overrides: dict[str, str], workdir: Path) -> dict:
    run_dir = workdir / f"{recipe}-{seed}"
    overrides = {**recipe_overrides(preset, recipe), **overrides}
    cfg = load_config(preset, {**overrides, "seed": seed, "run_dir": str(run_dir), "train.threads": 1},
                      recipe=recipe)
    summary = train(cfg, show_progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r[METRIC]) for r in rows if METRIC in r]
    return {"seed": seed, "curve": curve, "final": curve[-1][1], "wall_seconds": summary["wall_seconds"],
            "final_train_reward": summary["final"]["train/reward_mean"]}


def summarise(recipe: str, runs: list[dict]) -> dict:
    curves = [[y for _, y in r["curve"]] for r in runs]
    steps = [s for s, _ in runs[0]["curve"]]
    mean_curve = [statistics.fmean(ys) for ys in zip(*curves, strict=True)]
    reached = [next((s for s, y in r["curve"] if y >= 1.0), None) for r in runs]
    return {
        "recipe": recipe, "values": RECIPES.get(recipe), "steps": steps, "mean_curve": mean_curve,
        "min_curve": [min(ys) for ys in zip(*curves, strict=True)],
        "max_curve": [max(ys) for ys in zip(*curves, strict=True)],
        "final_mean": statistics.fmean(r["final"] for r in runs),
        "curve_mean": statistics.fmean(mean_curve),  # area under the curve / steps: speed and level
        "steps_to_all_correct": reached,
        "seconds_per_run": statistics.fmean(r["wall_seconds"] for r in runs),
        "wall_seconds": median_range(r["wall_seconds"] for r in runs),
        "runs": runs,
    }


def plot(results: list[dict], preset: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        line, = ax.plot(r["steps"], r["mean_curve"], marker="o", markersize=3, label=r["recipe"])
        ax.fill_between(r["steps"], r["min_curve"], r["max_curve"], color=line.get_color(), alpha=0.12)
    ax.set_xlabel("outer step")
    ax.set_ylabel("evaluation exact match (mean over seeds)")
    ax.set_title(f"recipes on {preset}, {len(results[0]['runs'])} seeds (band: min..max)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def table(results: list[dict], preset: Path) -> str:
    lines = ["| recipe | final exact match | best (mean curve) | mean over the curve | step all-correct (per seed) "
             "| s/run |", "|---|---|---|---|---|---|"]
    for r in results:
        reached = ", ".join("—" if s is None else str(s) for s in r["steps_to_all_correct"])
        lines.append(f"| `{r['recipe']}` | {r['final_mean']:.2f} | {max(r['mean_curve']):.2f} | "
                     f"{r['curve_mean']:.2f} | {reached} | "
                     f"{r['seconds_per_run']:.1f} |")
    extras = [f"`{r['recipe']}` runs with " + ", ".join(f"`{k}={v}`" for k, v in extra.items())
              for r in results if (extra := recipe_overrides(preset, r["recipe"]))]
    if extras:
        lines += ["", "Beyond its recipe and the preset: " + "; ".join(extras) + "."]
    return "\n".join(lines)


def update_docs(preset: str, text: str, doc: Path) -> None:
    start, end = f"<!-- RECIPES-{preset}-START -->", f"<!-- RECIPES-{preset}-END -->"
    content = doc.read_text()
    if start not in content:
        content += f"\n### `{preset}`\n\n{start}\n{end}\n"
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(doc, f"{head}{start}\n{text}\n{end}{tail}")


def load_progress(path: Path, overrides: dict[str, str]) -> dict[tuple[str, int], dict]:
    """The runs an earlier, stopped invocation with the same overrides finished."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(row["recipe"], row["run"]["seed"]): row["run"] for row in rows if row["overrides"] == overrides}


def save_progress(path: Path, overrides: dict[str, str], recipe: str, run: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps({"overrides": overrides, "recipe": recipe, "run": run}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sort5", help="a preset name from configs/ or a YAML path")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (<= cores)")
    parser.add_argument("--recipes", nargs="+", default=RECIPES.names())
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. eval.every=5")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/algorithms.md")
    args = parser.parse_args()
    watch = LoadWatch()
    preset_path = resolve_config_path(args.preset)
    preset = preset_path.stem
    overrides = dict(item.split("=", 1) for item in args.set)
    # every finished run is appended here at once, so a stopped benchmark restarts where it was
    progress = ROOT / "runs" / "benchmarks" / f"recipes-{preset}.jsonl"
    finished = load_progress(progress, overrides)
    if finished:
        print(f"{len(finished)} runs already finished, from {progress.relative_to(ROOT)}", flush=True)
    jobs = [(recipe, seed) for recipe in args.recipes for seed in range(args.seeds)
            if (recipe, seed) not in finished]
    with tempfile.TemporaryDirectory() as workdir, ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_recipe, preset_path, recipe, seed, overrides, Path(workdir)): (recipe, seed)
                   for recipe, seed in jobs}
        for future in as_completed(futures):
            recipe, seed = futures[future]
            run = finished[(recipe, seed)] = future.result()
            save_progress(progress, overrides, recipe, run)
            print(f"{recipe:<12} seed {seed}: final {METRIC} {run['final']:.2f} ({run['wall_seconds']:.1f}s)",
                  flush=True)
    results = [summarise(recipe, [finished[(recipe, seed)] for seed in range(args.seeds)])
               for recipe in args.recipes]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"recipes-{preset}.json"
    atomic_write_text(out, json.dumps({"preset": preset, "seeds": args.seeds, "overrides": overrides,
                               "date": time.strftime("%Y-%m-%d"), "results": results,
                               "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)}, indent=1) + "\n")
    png = RESULTS / f"recipes-{preset}.png"
    plot(results, preset, png)
    text = table(results, preset_path)
    print(text)
    print(f"wrote {out.relative_to(ROOT)} and {png.relative_to(ROOT)}")
    if not args.no_docs:
        command = " ".join(["python benchmarks/recipes.py", "--preset", args.preset, "--seeds", str(args.seeds),
                            "--jobs", str(args.jobs)]
                           + (["--recipes", *args.recipes] if args.recipes != RECIPES.names() else [])
                           + (["--set", *args.set] if args.set else []))
        update_docs(preset, text + f"\n\n![recipes on {preset}](../benchmarks/results/{png.name})\n\n"
                    f"_Measured by `{command}` on {time.strftime('%Y-%m-%d')}, seeds 0..{args.seeds - 1}._",
                    ROOT / "docs" / "algorithms.md")


if __name__ == "__main__":
    main()
