"""Where rlvr's W1 step goes: phase by phase (wall clocks) and operator by operator (torch.profiler).

    python benchmarks/w1_profile.py                          # betas 0 and 0.04, 30 warm-up + 100 timed steps
    python benchmarks/w1_profile.py --betas 0.04 --steps 40 --out /tmp/p.json

For each beta: rlvr's W1 trainer with the settings bench_w1.py times against TRL
(``bench_w1.rlvr_config``, the same model folder: bench_w1.build_folder) runs ``--warmup`` steps
(responses shorten as the policy learns, so early steps are not typical), then ``--steps`` steps with
wall clocks around the trainer's own calls (the computation is the run's, unchanged):

- ``sample``     policy.sample: prefill, the fused decode steps, drawing tokens
- ``score``      response ids -> text, and the verifier
- ``reference``  the reference forward (no gradient; beta > 0 only)
- ``inner``      the optimizer step: training forward, loss, backward, clipping, AdamW
- ``step``       the whole outer step (``time/step``)

then ``--ops-steps`` more steps under ``torch.profiler``: each phase's operators by self CPU time per
step (the top ``--top``), and the share of the matrix products (aten::mm / addmm / bmm / baddbmm).
The profiler adds a fixed cost to every operator, so the operator times are shares, not timings.
Medians and full ranges over the timed steps (provenance.summary). Writes
benchmarks/results/w1-profile-<date>.json (``--out``) with a "provenance" block; run it alone.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import bench_w1
from provenance import LoadWatch, OneLineParser, provenance, rss_now_mb, summary

RSS_AFTER_IMPORTS = rss_now_mb()
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


class Clocks:
    """Wall time of each call of the wrapped functions, by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = collections.defaultdict(list)

    def wrap(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds[phase].append(time.perf_counter() - start)
            return out
        return timed


def operator_table(self_us: dict[str, float], calls: dict[str, int], steps: int, top: int) -> dict[str, Any]:
    """Operators by self CPU time per step (``self_us``, ``calls``: totals over ``steps``): the top
    ``top``, the total, the operator count, and the matrix products' share of the time."""
    total = sum(self_us.values()) / 1e3 / steps
    ranked = sorted(self_us, key=self_us.__getitem__, reverse=True)[:top]
    matmul = sum(self_us.get(k, 0.0) for k in MATMULS) / 1e3 / steps
    return {"self_ms_per_step": total, "matmul_share": matmul / total if total else 0.0,
            "operators": sum(calls.values()) / steps,
            "top": [{"op": k, "self_ms_per_step": self_us[k] / 1e3 / steps, "calls_per_step": calls[k] / steps}
                    for k in ranked]}


def profile_beta(folder: Path, beta: float, args: argparse.Namespace) -> dict[str, Any]:
    from rlvr import rollout
    from rlvr.trainer import Trainer

    cfg = bench_w1.rlvr_config(str(folder), args.warmup + args.steps + args.ops_steps, beta, seed=0,
                               run_dir=tempfile.mkdtemp(prefix="w1-profile-", dir=folder))
    trainer = Trainer(cfg, show_progress=False)
    for step in range(1, args.warmup + 1):
        trainer.outer_step(step)
    clocks = Clocks()
    policy, score = trainer.policy, rollout.score_sources
    policy.sample = clocks.wrap(policy.sample, "sample")
    rollout.score_sources = clocks.wrap(score, "score")
    trainer.constant_logprobs = clocks.wrap(trainer.constant_logprobs, "reference")
    trainer.inner_step = clocks.wrap(trainer.inner_step, "inner")
    first = args.warmup + 1
    try:
        rows = [trainer.outer_step(step) for step in range(first, first + args.steps)]
    finally:
        rollout.score_sources = score
    phases = {phase: summary(values) for phase, values in clocks.seconds.items()}
    phases["step"] = summary(r["time/step"] for r in rows)
    phases["other"] = summary(r["time/step"] - sum(clocks.seconds[p][i] for p in clocks.seconds)
                              for i, r in enumerate(rows))

    ops: dict[str, Any] = {}
    if args.ops_steps:
        from torch.profiler import ProfilerActivity, profile
        recorded: dict[str, list[Any]] = collections.defaultdict(list)

        def profiled(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
            def run(*a: Any, **k: Any) -> Any:
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    out = fn(*a, **k)
                recorded[phase].append(prof.key_averages())
                return out
            return run
        policy.sample = profiled(policy.sample, "sample")
        trainer.constant_logprobs = profiled(trainer.constant_logprobs, "reference")
        trainer.inner_step = profiled(trainer.inner_step, "inner")
        start = first + args.steps
        for step in range(start, start + args.ops_steps):
            trainer.outer_step(step)
        for phase, tables in recorded.items():
            self_us: dict[str, float] = collections.defaultdict(float)
            calls: dict[str, int] = collections.defaultdict(int)
            for averages in tables:
                for e in averages:
                    self_us[e.key] += e.self_cpu_time_total
                    calls[e.key] += e.count
            ops[phase] = operator_table(self_us, calls, len(tables), args.top)
    tokens = [r["train/response_length"] for r in rows]
    return {"beta": beta, "steps": [first, first + args.steps - 1], "response_length": summary(tokens),
            "seconds": phases, "share_of_step": {p: (s["median"] or 0.0) / phases["step"]["median"]
                                                 for p, s in phases.items() if p != "step"},
            "operators": ops}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.04])
    p.add_argument("--warmup", type=int, default=30, help="steps before the timed ones")
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--ops-steps", type=int, default=10, help="steps under torch.profiler after the timed ones (0: none)")
    p.add_argument("--top", type=int, default=12, help="operators listed per phase")
    p.add_argument("--threads", type=int, default=bench_w1.THREADS)
    p.add_argument("--out", type=Path, help="the results file (default benchmarks/results/w1-profile-<date>.json)")
    args = p.parse_args(argv)
    for name in ("steps", "threads", "top"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: {getattr(args, name)} (must be at least 1)")
    for name in ("warmup", "ops_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')}: {getattr(args, name)} (must be at least 0)")
    if any(b < 0 for b in args.betas):
        p.error(f"--betas: {min(args.betas)} (a KL coefficient is >= 0)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bench_w1.THREADS = args.threads
    watch = LoadWatch()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="w1-model-"))
    bench_w1.build_folder(folder)
    results = []
    for beta in args.betas:
        result = profile_beta(folder, beta, args)
        results.append(result)
        med = {p: s["median"] for p, s in result["seconds"].items()}
        print(f"beta {beta:g}: step {med['step'] * 1e3:.1f} ms = " + ", ".join(
            f"{p} {med[p] * 1e3:.1f}" for p in ("sample", "score", "reference", "inner", "other") if p in med)
            + f" (response {result['response_length']['median']:.1f} tokens)", flush=True)
        for phase, table in result["operators"].items():
            print(f"  {phase}: {table['self_ms_per_step']:.1f} ms profiled self time per step, "
                  f"{table['operators']:.0f} operators, matrix products {table['matmul_share']:.0%}", flush=True)
    out = args.out or bench_w1.RESULTS / f"w1-profile-{datetime.date.today().isoformat()}.json"
    record = {"date": datetime.date.today().isoformat(), "threads": args.threads, "warmup": args.warmup,
              "steps": args.steps, "ops_steps": args.ops_steps, "betas": results,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
