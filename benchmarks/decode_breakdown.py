"""Where a W1 rollout's time goes: rlvr's sampler (fused decoder and module path) vs HF ``generate``.

    python benchmarks/decode_breakdown.py [--threads 1 2] [--reps 15] [--out FILE.json]

On the W1 model folder (bench_w1.build_folder, random init) and W1's batch (16 prompts x 8, 12 new
tokens, temperature 1), for each thread count: the wall time of one rollout for rlvr's fused decoder,
rlvr's module path (``TransformerFastPaths(fused_decode=False)``) and HF ``generate``, median and full
range over --reps repeats (``fused``, ``module_path``, ``hf_generate``; ``fused_s`` and the others
are the fastest repeat, as files before medians recorded them); and, for the fused decoder, the split
into prefill, building the decoder, the decode steps and the rest (sampling ops, masks), per-phase
medians (``fused_split_median_s``; ``fused_split_s``: the fastest repeat's). Also the matrix-product
floor: the decode steps' matmul FLOPs at the machine's fp32 rate for those shapes (a floor, so the
fastest of 30). Writes benchmarks/results/decode-breakdown-<date>.json (or --out) with a
"provenance" block (benchmarks/provenance.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_w1 import GROUP, MAX_NEW, PROMPTS, RESULTS, build_folder, sort_task  # noqa: E402
from provenance import LoadWatch, provenance, rss_now_mb, summary  # noqa: E402
from rlvr.policies.transformer import TransformerFastPaths, TransformerPolicy  # noqa: E402
from rlvr.runs.rundir import atomic_write_text  # noqa: E402

RSS_AFTER_IMPORTS = rss_now_mb()
PHASES = ("total", "prefill", "expand", "decode", "rest", "decode_steps", "mean_rows")


def repeat(fn, reps: int) -> list[float]:
    """Wall times of ``reps`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def best_of(fn, reps: int) -> float:
    return min(repeat(fn, reps))


class Timed:
    """Wraps the policy's hooks to add up the time spent in each (one rollout at a time), and counts
    the rows of each decode step."""

    def __init__(self, policy: TransformerPolicy) -> None:
        self.spent: dict[str, float] = {}
        self.rows: list[int] = []
        for name in ("prefill", "expand", "decode"):
            setattr(policy, name, self.wrap(name, getattr(policy, name)))

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            if name == "decode":
                self.rows.append(args[0].shape[0])
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t
            return out
        return timed


def matmul_floor(rows: float, hidden: int, inter: int, layers: int, vocab: int, steps: int) -> dict:
    """FLOPs of the decode steps' matrix products and their time at the measured rate of each shape."""
    shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, 2 * inter), (inter, hidden)]
    seconds, flops = 0.0, 0.0
    m = max(1, round(rows))
    for k, n in shapes:
        a, w = torch.randn(m, k), torch.randn(k, n)
        per = best_of(lambda a=a, w=w: a @ w, 30)
        seconds += per * layers
        flops += 2 * m * k * n * layers
    a, w = torch.randn(m, hidden), torch.randn(hidden, vocab)
    seconds += best_of(lambda: a @ w, 30)
    flops += 2 * m * hidden * vocab
    return {"rows": rows, "seconds": seconds * steps, "gflop": flops * steps / 1e9}


def measure(folder: Path, threads: int, reps: int) -> dict:
    torch.set_num_threads(threads)
    policy = TransformerPolicy.load_hf(folder, max_new_tokens=MAX_NEW)
    ids = policy.encode_prompts([sort_task().random_prompt(np.random.default_rng(i)) for i in range(PROMPTS)])
    rng = torch.Generator().manual_seed(0)
    out: dict = {"threads": threads}
    tokens = int(policy.sample(ids, GROUP, generator=rng).mask.sum())
    times = {"fused": repeat(lambda: policy.sample(ids, GROUP, generator=rng), reps)}
    module_path = TransformerPolicy.load_hf(folder, max_new_tokens=MAX_NEW, fast=TransformerFastPaths(fused_decode=False))
    times["module_path"] = repeat(lambda: module_path.sample(ids, GROUP, generator=rng), reps)

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    rows = ids.repeat_interleave(GROUP, 0)

    def hf() -> None:
        with torch.no_grad():
            model.generate(rows, attention_mask=rows != 0, do_sample=True, temperature=1.0, top_k=0,
                           max_new_tokens=MAX_NEW, pad_token_id=0, eos_token_id=2)
    times["hf_generate"] = repeat(hf, reps)
    for name, values in times.items():
        out[f"{name}_s"] = min(values)
        out[name] = summary(values)

    timed = Timed(policy)
    steps = []
    for _ in range(reps):
        timed.spent.clear()
        timed.rows.clear()
        t = time.perf_counter()
        policy.sample(ids, GROUP, generator=rng)
        total = time.perf_counter() - t
        steps.append({"total": total, **timed.spent, "decode_steps": len(timed.rows),
                      "mean_rows": sum(timed.rows) / len(timed.rows)})
    for s in steps:
        s["rest"] = s["total"] - s["prefill"] - s["expand"] - s["decode"]
    best = min(steps, key=lambda s: s["total"])
    out["fused_split_s"] = best
    out["fused_split_median_s"] = {p: float(np.median([s[p] for s in steps])) for p in PHASES}
    c = policy.net.config
    out["decode_matmul_floor"] = matmul_floor(best["mean_rows"], c.hidden_size, c.intermediate_size,
                                              c.num_layers, c.vocab_size, best["decode_steps"])
    out["tokens"] = tokens
    out["fused_over_hf"] = out["hf_generate_s"] / out["fused_s"]
    out["fused_over_module_path"] = out["module_path_s"] / out["fused_s"]
    out["fused_over_hf_median"] = out["hf_generate"]["median"] / out["fused"]["median"]
    out["fused_over_module_path_median"] = out["module_path"]["median"] / out["fused"]["median"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--out", type=Path, help="the results file (default benchmarks/results/decode-breakdown-<date>.json)")
    args = p.parse_args()
    watch = LoadWatch()
    folder = Path(tempfile.mkdtemp(prefix="w1-model-"))
    build_folder(folder)
    results = [measure(folder, t, args.reps) for t in args.threads]
    for r in results:
        s, f = r["fused_split_median_s"], r["decode_matmul_floor"]
        print(f"{r['threads']} thread(s), medians: fused {r['fused']['median'] * 1e3:.1f} ms, module path "
              f"{r['module_path']['median'] * 1e3:.1f} ms, HF generate {r['hf_generate']['median'] * 1e3:.1f} ms -> "
              f"{r['fused_over_hf_median']:.2f}x HF; split: prefill "
              f"{s['prefill'] * 1e3:.1f}, build {s['expand'] * 1e3:.1f}, {s['decode_steps']:.0f} decode steps "
              f"{s['decode'] * 1e3:.1f} (mean {s['mean_rows']:.0f} rows; matmul floor {f['seconds'] * 1e3:.1f}), "
              f"rest {s['rest'] * 1e3:.1f} ms")
    path = args.out or RESULTS / f"decode-breakdown-{datetime.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
                                        "reps": args.reps, "statistic": "median and full range over reps",
                                        "results": results,
                                        "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)},
                                       indent=1) + "\n")
    print(f"wrote {path}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
