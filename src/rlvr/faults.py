"""The one count of failed user-code calls: reward calls (rlvr.rewards.runner.RewardRunner) and
training episodes whose env faulted (rlvr.multiturn.FaultCount) are tallied the same way.

A ``FailureTally`` holds the run's calls and failures by kind (error, type, nonfinite, timeout,
crash). Each step adds its counts and gets its metrics back:
``fault/<name>_failures`` (this step), ``fault/<name>_failures_<kind>`` (this step, per kind) and
``fault/<name>_failure_rate`` (failures / calls over the run so far; 0 before any call). The run
stops once that rate exceeds ``max_failure_rate`` (at the limit it goes on; no minimum number of
calls), with a message its owner words. ``state_dict`` is what a checkpoint stores, under the
owner's key names, so a resumed run goes on counting where it stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FailureTally:
    """Calls and failed calls (by kind) over a run so far; see the module docstring."""

    name: str                  # the metrics' fault/<name>_failures...: "reward", "env"
    max_failure_rate: float    # the run stops once the failure rate is above this
    keys: tuple[str, str] = ("calls", "failures")  # the checkpoint's names for calls and failures
    calls: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, calls: int, failures: Mapping[str, int]) -> dict[str, float]:
        """Counts one step's ``calls`` and its ``failures`` by kind -> the step's metrics."""
        self.calls += calls
        self.failures.update(failures)
        metrics = {f"fault/{self.name}_failures": float(sum(failures.values())),
                   f"fault/{self.name}_failure_rate": self.rate()}
        metrics.update({f"fault/{self.name}_failures_{kind}": float(n) for kind, n in sorted(failures.items())})
        return metrics

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def rate(self) -> float:
        """Failures / calls over the run so far (0 before any call)."""
        return self.failed / self.calls if self.calls else 0.0

    def stop_reason(self, message: str, **extra: Any) -> str | None:
        """None while the rate is at most ``max_failure_rate``; else ``message`` formatted with
        ``failed``, ``calls``, ``rate``, ``limit`` (max_failure_rate), ``kinds`` ("1 error, 2 type")
        and ``extra``."""
        rate = self.rate()
        if rate <= self.max_failure_rate:
            return None
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.failures.items()))
        return message.format(failed=self.failed, calls=self.calls, rate=rate, limit=self.max_failure_rate,
                              kinds=kinds, **extra)

    def state_dict(self) -> dict[str, Any]:
        calls, failures = self.keys
        return {calls: self.calls, failures: dict(self.failures)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        calls, failures = self.keys
        self.calls, self.failures = int(state[calls]), Counter(state[failures])
