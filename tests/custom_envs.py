"""Environments for the multi-turn tests (module-level, so worker processes can import them)."""

from __future__ import annotations

import numpy as np

from rlvr.envs import Env, Step
from rlvr.envs.task import EnvTask
from rlvr.tasks.base import TaskConfig


class EchoEnv(Env):
    """The row is a number; the policy must say it. Each wrong turn gets 'no <turn>' and -0.1; the
    right one ends the episode with +1; after 3 turns the env ends it (reward 0 on that turn)."""

    def __init__(self, row: str) -> None:
        self.row, self.turn = row, 0

    def reset(self) -> str:
        return f"say {self.row}"

    def step(self, action: str) -> Step:
        self.turn += 1
        if action.strip() == self.row:
            return Step(None, 1.0, True)
        if self.turn >= 3:
            return Step(None, 0.0, True)
        return Step(f"no {self.turn}", -0.1, False)

    def metrics(self) -> dict[str, float]:
        return {"tries": float(self.turn)}


def make_echo_env(row: str) -> Env:
    return EchoEnv(row)


class EchoTask(EnvTask):
    name = "echo"

    def random_prompt(self, rng: np.random.Generator) -> str:
        return str(int(rng.integers(10, 100)))

    def solution(self, prompt: str) -> str:
        return prompt

    def make_env(self, prompt: str) -> Env:
        return EchoEnv(prompt)

    def demonstration(self, prompt: str, rng: np.random.Generator) -> list[str]:
        wrong = str(int(rng.integers(10, 100)))
        return [prompt] if rng.random() < 0.5 or wrong == prompt else [wrong, prompt]

    def alphabet_texts(self) -> list[str]:
        return ["0123456789", "say no:"]


def echo_task(cfg: TaskConfig) -> EchoTask:
    return EchoTask(max_new_tokens=4, **cfg.split_args())


echo_task.config = TaskConfig  # type: ignore[attr-defined]


# ---------------------------------------------------------------- faulty envs: every 8th episode faults
class Faulty(EchoEnv):
    """An EchoEnv that misbehaves in its first step (kind "metrics": in ``metrics``, after a normal
    episode) when it is the 8th, 16th, ... env this process made."""

    made = 0
    kind = "raise"

    def __init__(self, row: str) -> None:
        super().__init__(row)
        Faulty.made += 1
        self.bad = Faulty.made % 8 == 0

    def step(self, action: str) -> Step:
        if not self.bad or self.kind == "metrics":
            return super().step(action)
        if self.kind == "raise":
            raise RuntimeError("the env broke")
        if self.kind == "hang":
            import time
            time.sleep(60)
        if self.kind == "nan":
            return Step("no", float("nan"), False)
        return Step(42, 0.0, False)  # type: ignore[arg-type]  # a non-string observation

    def metrics(self) -> dict[str, float]:
        if self.bad and self.kind == "metrics":  # the episode itself ran as an EchoEnv's does
            raise RuntimeError("the env's metrics broke")
        return super().metrics()


def faulty_env(kind: str):
    def make(row: str) -> Env:
        env = Faulty(row)
        env.kind = kind
        return env
    return make


make_raising_env = faulty_env("raise")
make_hanging_env = faulty_env("hang")
make_nan_env = faulty_env("nan")
make_garbage_env = faulty_env("garbage")
make_metrics_env = faulty_env("metrics")
