"""The notes' toy environment: sort n numbers. Prompt (3, 1, 2) -> desired response (1, 2, 3).

Three rewards, from sparse to shaped (the notes' reward-design trade-off):
- ``binary``               1 if the response is exactly sorted(prompt), else 0;
- ``position-match``       number of positions i with response[i] == sorted(prompt)[i]  (0..n);
- ``inclusion-adjacency``  one point per prompt number present in the response, plus one per
                           adjacent pair a <= b in the response                     (0..2n-1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.plugins import import_object, is_import_spec
from rlvr.registry import Registry
from rlvr.tasks.base import TASKS, Prompt, Response, Task, TaskConfig

SORT_REWARDS: Registry[Callable[[Sequence[int], Sequence[int]], float]] = Registry("sorting reward")


@SORT_REWARDS.register("binary")
def binary_reward(prompt: Sequence[int], response: Sequence[int]) -> float:
    return float(list(response) == sorted(prompt))


@SORT_REWARDS.register("position-match")
def position_match_reward(prompt: Sequence[int], response: Sequence[int]) -> float:
    return float(sum(a == b for a, b in zip(sorted(prompt), response, strict=False)))


@SORT_REWARDS.register("inclusion-adjacency")
def inclusion_adjacency_reward(prompt: Sequence[int], response: Sequence[int]) -> float:
    inclusion = sum(1 for x in prompt if x in response)
    adjacency = sum(1 for a, b in zip(response, response[1:], strict=False) if a <= b)
    return float(inclusion + adjacency)


MAX_REWARD = {
    "binary": lambda n: 1.0,
    "position-match": lambda n: float(n),
    "inclusion-adjacency": lambda n: float(2 * n - 1),
}


class SortTask(Task):
    """Sort ``length`` numbers drawn from 0..vocab_size-1 (repeats allowed)."""

    name = "sort"

    def __init__(self, *, length: int, vocab_size: int, reward: str, **split: Any) -> None:
        super().__init__(**split)
        self.prompt_length = self.response_length = length
        self.vocab_size = vocab_size
        self.reward_name = reward
        if is_import_spec(reward):  # the user's own reward function (rlvr.plugins)
            self._reward = import_object(reward, field="task.reward")
            self.max_reward = math.nan  # unknown
        else:
            self._reward = SORT_REWARDS.get(reward)
            self.max_reward = MAX_REWARD[reward](length)

    def random_prompt(self, rng: np.random.Generator) -> Prompt:
        return tuple(int(x) for x in rng.integers(0, self.vocab_size, size=self.prompt_length))

    def solution(self, prompt: Prompt) -> Response:
        return tuple(sorted(prompt))

    def reward(self, prompt: Prompt, response: Sequence[int]) -> float:
        return self._reward(prompt, [int(t) for t in response])

    def token_rewards(self, prompt: Prompt, response: Sequence[int]) -> list[float]:
        """Process reward: 1 at each position that holds the right number of the sorted prompt."""
        return [float(int(a) == b) for a, b in zip(response, sorted(prompt), strict=False)]


@dataclass
class SortConfig(TaskConfig):
    length: int = opt(3, "numbers per prompt (and per response)", ge=1)
    vocab_size: int = opt(5, "numbers are drawn from 0 .. vocab_size-1", ge=2)
    reward: str = opt("inclusion-adjacency", "sorting reward, or module.path:function for your own "
                      "(function(prompt, response) -> float)", choices=SORT_REWARDS.names, imports=True)
    prompts: list | None = opt(None, "fixed prompt list, e.g. [[1,0,2],[3,2,4],[1,2,3]]; "
                               "training and evaluation then both use exactly this list")

    def check(self) -> None:
        if self.prompts is None:
            return
        if not self.prompts:
            raise ConfigError("task.prompts: the list is empty; give at least one prompt or null")
        for prompt in self.prompts:
            ok = (isinstance(prompt, list) and len(prompt) == self.length
                  and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < self.vocab_size
                          for x in prompt))
            if not ok:
                raise ConfigError(f"task.prompts: {prompt!r} must be a list of {self.length} integers "
                                  f"in 0..{self.vocab_size - 1}")


@TASKS.register("sort", config=SortConfig)
def build_sort(cfg: SortConfig) -> Task:
    return SortTask(length=cfg.length, vocab_size=cfg.vocab_size, reward=cfg.reward,
                    fixed_prompts=cfg.prompts, **cfg.split_args())
