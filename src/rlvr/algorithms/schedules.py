"""Coefficient schedules: a multiplier in [0, 1] from training progress (fraction 0 -> 1 of outer steps).

- ``constant``  1
- ``linear``    1 - progress / until, floored at 0 (reaches 0 at fraction ``until`` of training)
- ``cosine``    (1 + cos(pi * min(progress / until, 1))) / 2
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rlvr.registry import Registry

SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(progress: float, *, until: float) -> float:
    return 1.0


@SCHEDULES.register("linear")
def linear(progress: float, *, until: float) -> float:
    return max(0.0, 1.0 - progress / until)


@SCHEDULES.register("cosine")
def cosine(progress: float, *, until: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(progress / until, 1.0)))


def schedule_value(name: str, progress: float, *, until: float = 1.0) -> float:
    return SCHEDULES.get(name)(progress, until=until)
