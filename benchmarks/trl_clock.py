"""Timing TRL's GRPOTrainer from the outside, the same way in every benchmark (bench_w1.py, w2_trl.py):
a step's wall time from the trainer's step callbacks, and the part of it spent inside the model's
``generate`` (the rollout), the rest being training."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def step_clock(model: Any, out: dict[str, list[float]]) -> tuple[Any, Callable[..., Any]]:
    """Wraps ``model.generate`` so that its wall time is summed; returns a TrainerCallback that appends
    each step's total, generation and the rest to ``out["step_s"]``, ``out["gen_s"]``, ``out["train_s"]``
    (put it first among the callbacks: a later callback's time is outside the step's), and the
    unwrapped ``generate`` (for evaluations that must not count as the step's generation)."""
    from transformers import TrainerCallback

    generate, generating = model.generate, [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = generate(*args, **kwargs)
        generating[0] += time.perf_counter() - start
        return result
    model.generate = timed
    for key in ("step_s", "gen_s", "train_s"):
        out.setdefault(key, [])

    class Clock(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t, self.g = time.perf_counter(), generating[0]

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            total, gen = time.perf_counter() - self.t, generating[0] - self.g
            out["step_s"].append(total)
            out["gen_s"].append(gen)
            out["train_s"].append(total - gen)
    return Clock(), generate
