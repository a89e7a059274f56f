"""Run language-model presets and record held-out exact match against wall-clock minutes.

    python benchmarks/lm_presets.py sort5 sort5-sft-rl [--threads 2] [--set section.key=value ...]
    python benchmarks/lm_presets.py --from-run RUN_DIR [--name NAME]   # summarise a finished `rlvr train` run

For each preset: one `rlvr train` run (the SFT stage first when the preset has one), then
benchmarks/results/<preset>.json with the evaluation curve (SFT and RL rows, cumulative wall-clock
minutes), the SFT stage's final numbers and the run's final numbers, a "provenance" block
(benchmarks/provenance.py), and docs/img/<preset>.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from provenance import LoadWatch, provenance, rss_now_mb
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.runs.rundir import atomic_write_text
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def curve(run_dir: Path) -> list[dict]:
    """Evaluation points of the SFT stage then RL, with cumulative wall-clock minutes."""
    points, seconds = [], 0.0
    for row in read_jsonl(run_dir / "sft_metrics.jsonl"):
        seconds += row.get("time/step", 0.0) + row.get("time/eval", 0.0)
        if "eval/exact_match" in row:
            points.append({"stage": "sft", "step": row["sft_step"], "minutes": seconds / 60,
                           **{k: v for k, v in row.items() if k.startswith("eval/")}})
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        seconds += row.get("time/step", 0.0) + row.get("time/eval", 0.0)
        if "eval/exact_match" in row:
            points.append({"stage": "rl", "step": row["step"], "minutes": seconds / 60,
                           **{k: v for k, v in row.items() if k.startswith("eval/")},
                           "train/reward_mean": row.get("train/reward_mean")})
    return points


def plot(points: list[dict], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage, style in (("sft", "o--"), ("rl", "o-")):
        pts = [p for p in points if p["stage"] == stage]
        if pts:
            ax.plot([p["minutes"] for p in pts], [p["eval/exact_match"] for p in pts], style, ms=3,
                    label=f"{stage}: held-out greedy exact match")
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise_run(run_dir: Path, name: str) -> dict:
    """The same record for a run made with `rlvr train --config PRESET --run-dir RUN_DIR`."""
    points = curve(run_dir)
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    else:  # a run stopped early: its last evaluation, and the minutes up to it
        summary = {"wall_seconds": points[-1]["minutes"] * 60, "stopped_at_step": points[-1]["step"],
                   "final": {k: v for k, v in points[-1].items() if k.startswith(("eval/", "train/"))}}
    result = {"run_dir": str(run_dir), "config": (run_dir / "config.yaml").read_text(),
              "wall_minutes": summary["wall_seconds"] / 60, "final": summary["final"],
              "stopped_at_step": summary.get("stopped_at_step"),
              "sft_final": summary.get("sft_final"), "curve": points,
              "provenance": {**provenance(rss_after_imports_mb=RSS_AFTER_IMPORTS),
                             "note": "recorded when summarising the finished run (--from-run), not when it ran"}}
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(result, indent=1) + "\n")
    plot(points, name, IMAGES / f"{name}.png")
    return result


def run_preset(preset: str, threads: int, sets: list[str]) -> dict:
    watch = LoadWatch()
    overrides = dict(s.split("=", 1) for s in sets)
    overrides.update({"train.threads": threads, "run_dir": str(ROOT / "runs" / f"bench-{preset}")})
    cfg = load_config(resolve_config_path(preset), overrides)
    start = time.perf_counter()
    summary = train(cfg, show_progress=True)
    points = curve(Path(summary["run_dir"]))
    result = {"preset": preset, "overrides": sets, "threads": threads, "wall_minutes": (time.perf_counter() - start) / 60,
              "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
              "final": summary["final"], "sft_final": summary.get("sft_final"), "curve": points,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    name = preset + ("-" + "-".join(s.replace("=", "_") for s in sets) if sets else "")
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(result, indent=1) + "\n")
    plot(points, f"{name} ({threads} threads)", IMAGES / f"{name}.png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*")
    parser.add_argument("--from-run", help="summarise this finished run directory instead of training")
    parser.add_argument("--name", help="result name for --from-run (default: the directory's name)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="config override section.key=value")
    args = parser.parse_args()
    if args.from_run:
        run_dir = Path(args.from_run)
        result = summarise_run(run_dir, args.name or run_dir.name)
        print(json.dumps({k: result[k] for k in ("wall_minutes", "final", "sft_final")}, indent=1))
    for preset in args.presets:
        result = run_preset(preset, args.threads, args.set)
        print(json.dumps({k: result[k] for k in ("preset", "wall_minutes", "final", "sft_final")}, indent=1))


if __name__ == "__main__":
    main()
