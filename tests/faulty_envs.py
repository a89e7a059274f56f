"""Misbehaving envs (user code) for tests/test_env_guard.py; module-level, so worker processes can
import them. A row is (name, n): ``make`` builds ``ENVS[name](n)``; every faulty env plays ``CountDown``
and misbehaves on its second step (or in reset, metrics)."""

import math
import os
import time

from rlvr.envs import Env, Step

CLOSED: list[str] = []  # the class of each env closed in this process, in order


class CountDown(Env):
    """The policy must count down from n: each turn the right number is +1, anything else -0.5; the
    env answers with how many are left and ends the episode after n turns."""

    def __init__(self, n: int) -> None:
        self.left, self.right = n, 0

    def reset(self) -> str:
        return f"count down from {self.left}"

    def step(self, action: str) -> Step:
        reward = 1.0 if action == str(self.left) else -0.5
        self.left -= 1
        self.right += reward > 0
        return Step(None, reward, True) if self.left == 0 else Step(f"{self.left} left", reward, False)

    def metrics(self) -> dict[str, float]:
        return {"right": float(self.right)}

    def close(self) -> None:
        CLOSED.append(type(self).__name__)


class SecondStep(CountDown):
    """CountDown whose second step is ``bad()``."""

    def step(self, action: str) -> Step:
        return self.bad() if self.left == 2 else super().step(action)

    def bad(self):
        raise NotImplementedError


class HangsInReset(CountDown):
    def reset(self) -> str:
        time.sleep(60)
        return ""


class RaisesInReset(CountDown):
    def reset(self) -> str:
        raise ValueError("boom")


class RaisesInStep(SecondStep):
    def bad(self):
        raise ValueError("boom")


class HangsInStep(SecondStep):
    def bad(self):
        time.sleep(60)  # the in-process timer interrupts it; a worker is killed


class NanReward(SecondStep):
    def bad(self):
        return Step("1 left", math.nan, False)


class BoolReward(SecondStep):
    def bad(self):
        return Step("1 left", True, False)


class IntObservation(SecondStep):
    def bad(self):
        return Step(42, 1.0, False)


class NotAStep(SecondStep):
    def bad(self):
        return {"observation": "1 left"}


class NoneNotDone(SecondStep):
    def bad(self):
        return Step(None, 1.0, False)


class ExitsInStep(SecondStep):
    def bad(self):
        os._exit(13)  # the worker process dies


class Tuples(CountDown):
    """A good env that answers with (observation, reward, done) tuples: accepted as Steps."""

    def step(self, action: str):
        step = super().step(action)
        return step.observation, step.reward, step.done


class RaisesInMetrics(CountDown):
    """Its close raises too: still one faulted episode."""

    def metrics(self) -> dict[str, float]:
        raise KeyError("right")

    def close(self) -> None:
        super().close()
        raise OSError("busy")


class HangsInMetrics(CountDown):
    def metrics(self) -> dict[str, float]:
        time.sleep(60)
        return {}


class RaisesInClose(CountDown):
    def close(self) -> None:
        super().close()
        raise OSError("busy")


ENVS = {"good": CountDown, "raises_in_reset": RaisesInReset,
        "hangs_in_reset": HangsInReset, "raises_in_step": RaisesInStep,
        "hangs_in_step": HangsInStep, "nan_reward": NanReward, "bool_reward": BoolReward,
        "int_observation": IntObservation, "not_a_step": NotAStep, "none_not_done": NoneNotDone,
        "exits_in_step": ExitsInStep, "tuples": Tuples, "raises_in_metrics": RaisesInMetrics,
        "hangs_in_metrics": HangsInMetrics, "raises_in_close": RaisesInClose}


def make(row):
    name, n = row
    return ENVS[name](n)  # an unknown name: the factory raises KeyError
