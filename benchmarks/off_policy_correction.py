"""One-step-off-policy training on Ray with and without each off-policy correction: learning curves.

    python benchmarks/off_policy_correction.py [--preset sort-toy] [--seeds 3] [--jobs 1] [--workers 2]
        [--corrections none tis-token ...] [--synchronous] [--set key=value ...]

For every correction (``algo.rollout_correction``, docs/algorithms.md "Off-policy correction") and
seed, trains ``rlvr train --config PRESET --distributed.backend ray --distributed.off_policy true
--algo.rollout_correction MODE --seed S`` (in a worker process with its own local Ray; --jobs runs
that many at once) and records, per run, eval/exact_match at every evaluation and, per outer step,
policy/sampler_kl (the per-token KL(pi_sampler || pi_old) the correction sees; absent for ``none``,
which does not compute the learner's log-probs), the correction's mean weight and masked share, and
the clip fraction. ``--synchronous`` adds the on-policy reference (Ray without off_policy, no
correction). Writes benchmarks/results/off-policy-correction-<preset>.json (with a "provenance" block,
benchmarks/provenance.py, and seconds per run as median and range) and prints a table.

The preset's loss is replaced by ``clipped`` unless --set says otherwise: sort-toy's own ``naive``
loss has no ratio, so pi_old would change nothing but the weights. sort5 (``--preset sort5``) is the
tiny transformer; give it a budget, e.g. ``--set train.outer_steps=300 eval.every=50``.
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
from rlvr.algorithms import ROLLOUT_CORRECTIONS
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.options import params_of
from rlvr.runs.atomic import atomic_write_text
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METRIC = "eval/exact_match"
PER_STEP = ("policy/sampler_kl", "policy/correction_weight_mean", "policy/correction_masked_frac",
            "policy/clip_frac", "train/reward_mean", "rollout/policy_lag")
SYNCHRONOUS = "synchronous"  # the on-policy reference: Ray without off_policy, no correction


def own_settings(mode: str, overrides: dict[str, str]) -> dict[str, str]:
    """The overrides without the correction settings this mode does not have (the config refuses them)."""
    chosen = "none" if mode == SYNCHRONOUS else mode
    others = {f"algo.{p}" for entry in ROLLOUT_CORRECTIONS.names() for p in params_of(ROLLOUT_CORRECTIONS, entry)}
    mine = {f"algo.{p}" for p in params_of(ROLLOUT_CORRECTIONS, chosen)}
    return {k: v for k, v in overrides.items() if k not in others - mine}


def run_one(preset: Path, mode: str, seed: int, overrides: dict[str, str], workers: int, workdir: Path) -> dict:
    run_dir = workdir / f"{mode}-{seed}"
    values = {"algo.loss": "clipped", **own_settings(mode, overrides), "seed": seed, "run_dir": str(run_dir),
              "train.threads": 1,
              "distributed.backend": "ray", "distributed.rollout_workers": workers,
              "distributed.off_policy": mode != SYNCHRONOUS,
              "algo.rollout_correction": "none" if mode == SYNCHRONOUS else mode}
    summary = train(load_config(preset, values), show_progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r[METRIC]) for r in rows if METRIC in r]
    steps = {key: [(r["step"], r[key]) for r in rows if key in r] for key in PER_STEP}
    return {"seed": seed, "curve": curve, "final": curve[-1][1], "per_step": steps,
            "wall_seconds": summary["wall_seconds"]}


def mean_of(runs: list[dict], key: str) -> float | None:
    values = [v for r in runs for _, v in r["per_step"][key] if v is not None]
    return statistics.fmean(values) if values else None


def summarise(mode: str, runs: list[dict]) -> dict:
    curves = [[y for _, y in r["curve"]] for r in runs]
    mean_curve = [statistics.fmean(ys) for ys in zip(*curves, strict=True)]
    return {
        "mode": mode, "steps": [s for s, _ in runs[0]["curve"]], "mean_curve": mean_curve,
        "min_curve": [min(ys) for ys in zip(*curves, strict=True)],
        "max_curve": [max(ys) for ys in zip(*curves, strict=True)],
        "final_mean": statistics.fmean(r["final"] for r in runs),
        "curve_mean": statistics.fmean(mean_curve),
        "sampler_kl_mean": mean_of(runs, "policy/sampler_kl"),
        "masked_frac_mean": mean_of(runs, "policy/correction_masked_frac"),
        "weight_mean": mean_of(runs, "policy/correction_weight_mean"),
        "clip_frac_mean": mean_of(runs, "policy/clip_frac"),
        "seconds_per_run": statistics.fmean(r["wall_seconds"] for r in runs),
        "wall_seconds": median_range(r["wall_seconds"] for r in runs),
        "runs": runs,
    }


def table(results: list[dict]) -> str:
    def cell(value: float | None, digits: int = 3) -> str:
        return "—" if value is None else f"{value:.{digits}f}"
    lines = ["| correction | final exact match | mean over the curve | sampler KL / token | masked share "
             "| mean weight | clip frac | s/run |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r['mode']}` | {r['final_mean']:.2f} | {r['curve_mean']:.2f} | "
                     f"{cell(r['sampler_kl_mean'], 5)} | {cell(r['masked_frac_mean'])} | {cell(r['weight_mean'])} | "
                     f"{cell(r['clip_frac_mean'])} | {r['seconds_per_run']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sort-toy", help="a preset name from configs/ or a YAML path")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each with its own local Ray")
    parser.add_argument("--workers", type=int, default=2, help="Ray rollout actors per run")
    parser.add_argument("--corrections", nargs="+", default=ROLLOUT_CORRECTIONS.names(),
                        choices=ROLLOUT_CORRECTIONS.names())
    parser.add_argument("--synchronous", action="store_true", help="add the on-policy reference run")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. eval.every=5 algo.correction_cap=3")
    args = parser.parse_args()
    watch = LoadWatch()
    preset_path = resolve_config_path(args.preset)
    overrides = dict(item.split("=", 1) for item in args.set)
    modes = [*([SYNCHRONOUS] if args.synchronous else []), *args.corrections]
    jobs = [(mode, seed) for mode in modes for seed in range(args.seeds)]
    finished: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as workdir, ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, preset_path, mode, seed, overrides, args.workers, Path(workdir)): (mode, seed)
                   for mode, seed in jobs}
        for future in as_completed(futures):
            mode, seed = futures[future]
            run = finished[(mode, seed)] = future.result()
            print(f"{mode:<12} seed {seed}: final {METRIC} {run['final']:.2f} ({run['wall_seconds']:.1f}s)", flush=True)
    results = [summarise(mode, [finished[(mode, seed)] for seed in range(args.seeds)]) for mode in modes]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"off-policy-correction-{preset_path.stem}.json"
    atomic_write_text(out, json.dumps({"preset": preset_path.stem, "seeds": args.seeds, "workers": args.workers,
                                       "overrides": {"algo.loss": "clipped", **overrides},
                                       "date": time.strftime("%Y-%m-%d"), "results": results,
                                       "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS,
                                                                children=True)}, indent=1) + "\n")
    print(table(results))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
