"""Where one outer step's time goes, phase by phase, for any config (default: the real-model preset).

    python benchmarks/step_profile.py [--config smollm2-add] [--steps 6] [--out FILE.json] [--key value ...]

Builds the preset's Trainer and runs outer steps 1..N, timing each phase with wall clocks around the
trainer's own calls (the computation is the run's, unchanged):

- ``sample``         policy.sample: prefill + token-by-token decoding, sampler log-probs recorded
- ``decode``         response ids -> text (the tokenizer)
- ``reward``         the guarded verifier / reward sources / functions on the decoded texts
- ``reference``      make_batch: reference log-probs (when a KL is on), deltas, advantages
- ``forward``        the training pass: policy.logprobs with gradients (every micro-batch)
- ``loss+backward``  the rest of accumulate_gradient: the loss and its backward
- ``optimizer``      optimizer.step (clipping and the lr schedule are in ``other``)
- ``other``          the step minus the above (weight sync, metrics, clipping, samples)

Step 1 is reported apart (first-call costs); medians and ranges are over steps 2..N. Writes
benchmarks/results/step-profile-<config>.json with the load average before and after and a
"provenance" block (benchmarks/provenance.py). Run it on an idle machine (workloads.md): the numbers
are wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from provenance import LoadWatch, provenance, rss_now_mb, summary  # noqa: E402
from rlvr.cli.parsing import parse_overrides, resolve_config_path  # noqa: E402
from rlvr.config import load_config  # noqa: E402
from rlvr.trainer import Trainer  # noqa: E402

RSS_AFTER_IMPORTS = rss_now_mb()
PHASES = ["sample", "decode", "reward", "reference", "forward", "loss+backward", "optimizer", "other"]


class Clock:
    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, phase: str, fn: Callable[..., Any], *, when: Callable[[], bool] = lambda: True) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not when():
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[phase] += time.perf_counter() - t0
        return timed


class TimedRewards:
    """The run's reward runner, its calls timed (everything else passed through)."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self.inner, self.clock = inner, clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.clock.wrap("reward", self.inner)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def profile(cfg: Any, steps: int) -> list[dict[str, float]]:
    trainer = Trainer(cfg, show_progress=False)
    clock = Clock()
    policy = trainer.policy
    policy.sample = clock.wrap("sample", policy.sample)
    policy.decode_responses = clock.wrap("decode", policy.decode_responses)
    policy.logprobs = clock.wrap("forward", policy.logprobs, when=torch.is_grad_enabled)
    backend = trainer.rollout_backend
    backend.rewards = TimedRewards(backend.rewards, clock)
    trainer.make_batch = clock.wrap("reference", trainer.make_batch)
    trainer.optimizer.step = clock.wrap("optimizer", trainer.optimizer.step)
    accumulate = trainer.accumulate_gradient
    trainer.accumulate_gradient = clock.wrap("accumulate", accumulate)
    rows = []
    for step in range(1, steps + 1):
        clock.spent.clear()
        t0 = time.perf_counter()
        trainer.outer_step(step)
        total = time.perf_counter() - t0
        spent = dict(clock.spent)
        spent["loss+backward"] = spent.pop("accumulate", 0.0) - spent.get("forward", 0.0)
        spent["other"] = total - sum(spent.values())
        rows.append({"step": step, "total": total, **{p: spent.get(p, 0.0) for p in PHASES}})
        print(json.dumps({k: round(v, 3) for k, v in rows[-1].items()}), flush=True)
    trainer.rollout_backend.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm2-add")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out")
    args, rest = parser.parse_known_args()
    os.chdir(ROOT)
    overrides = {"eval.every": 10**6, "checkpoint.every": 0, **parse_overrides(rest)}
    overrides["run_dir"] = str(ROOT / "runs" / f"step-profile-{Path(args.config).stem}")
    cfg = load_config(resolve_config_path(args.config), overrides)
    torch.set_num_threads(cfg.train.threads)
    load_before = os.getloadavg()[0]
    watch = LoadWatch()
    rows = profile(cfg, args.steps)
    later = rows[1:] or rows
    per_phase = {p: summary(r[p] for r in later) for p in ["total", *PHASES]}
    result = {"config": args.config, "overrides": {k: v for k, v in overrides.items() if k != "run_dir"},
              "threads": cfg.train.threads, "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0],
              "seconds_per_step": per_phase, "share_of_step": {p: per_phase[p]["median"] / per_phase["total"]["median"]
                                                                 for p in PHASES},
              "first_step": rows[0], "steps": rows,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS)}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"step-profile-{Path(args.config).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
