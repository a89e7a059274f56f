"""``rewards``: how rewards are computed (the guard's limits, weighted sources, user functions).

Owned here, next to the code it configures (rlvr.rewards.runner, sources, functions);
``rlvr.config`` composes it into the run's Config.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.rewards.functions import check_functions
from rlvr.rewards.sources import SourceConfig, check_sources


@dataclass
class RewardsConfig:
    timeout: float | None = opt(10.0, "seconds one reward call may run before it gets the fallback (none: no limit)",
                                gt=0.0)
    fallback: float = opt(0.0, "reward of a response whose reward function raised, hung, or returned a "
                          "non-number or a non-finite number")
    max_failure_rate: float = opt(0.1, "stop the run (with a checkpoint) once more than this share of all "
                                  "reward calls so far has failed", ge=0.0, le=1.0)
    workers: int = opt(0, "reward worker processes (0: call rewards in the training process; >0: the "
                       "verifier in that many parallel processes and each rewards.functions entry in one of "
                       "its own; a hung or crashed call's worker is killed and replaced)", ge=0)
    sources: list[SourceConfig] | None = opt(
        None, "weighted reward sources, e.g. [{kind: verifier, weight: 1}, {kind: model, path: DIR, "
        "weight: 0.5}]; kinds: verifier, exact, format, think-format, model (none: the verifier alone); see "
        "rlvr.rewards.sources")
    functions: list[str] | None = opt(
        None, "TRL-style reward functions module.path:function, fn(prompts, completions, **columns) -> "
        "list[float | None], added to the sources' sum (see rlvr.rewards.functions)")
    function_weights: list[float] | None = opt(
        None, "one weight per rewards.functions entry (none: 1.0 each)")

    def check(self) -> None:
        if self.sources is not None:
            check_sources(self.sources)
        check_functions(self.functions, self.function_weights)
        labels = {spec.label for spec in self.sources} if self.sources is not None else {"verifier"}
        for i, spec in enumerate(self.functions or []):
            name = spec.rpartition(":")[2].rpartition(".")[2]
            if name in labels:
                raise ConfigError(f"rewards.functions[{i}]: {name!r} is also a source's name; both would be "
                                  f"logged as reward/{name}")
