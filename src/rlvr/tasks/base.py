"""The Task interface: where prompts come from and how a program checks an answer.

A task owns:
- a training prompt distribution, drawn with a seeded ``numpy.random.Generator``;
- a held-out split that never overlaps it (or, for a task defined by a fixed prompt list, that
  list, which is then both trained on and evaluated, as the lecture notes do);
- ``reward(prompt, response) -> float`` and the ground truth ``solution(prompt)``.
Prompts and responses of the token-level tasks are tuples of integer tokens.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.registry import Registry

Prompt = tuple[int, ...]
Response = tuple[int, ...]

RG_PREFIX = "rg:"  # a task-name namespace, not a module: rg:NAME is never imported as module:attribute


def is_reasoning_gym(name: str) -> bool:
    """``rg:NAME``: the reasoning-gym dataset NAME (rlvr.tasks.reasoning_gym)."""
    return name.startswith(RG_PREFIX)


class TaskNames(list):
    """Registered task names; any ``rg:NAME`` (a reasoning-gym dataset) is also accepted."""

    def __contains__(self, value: object) -> bool:
        return list.__contains__(self, value) or (isinstance(value, str) and is_reasoning_gym(value))


def task_names() -> list[str]:
    return TaskNames(TASKS.names() + ["rg:NAME"])


@dataclass
class TaskConfig:
    """The settings every task has: which one, and its held-out split. A task kind's own settings
    live in a subclass next to its code (``SortConfig`` in sorting.py, ``ArithConfig`` ...),
    registered with it: ``TASKS.register("sort", config=SortConfig)``."""

    name: str = opt("sort", "verifiable task, or module.path:factory for your own (factory(task_config) -> Task)",
                    choices=task_names, imports=True)
    eval_fraction: float = opt(0.2, "share of the prompt space held out for evaluation", gt=0.0, le=0.9)
    num_eval_prompts: int = opt(32, "held-out prompts evaluated (fewer if the held-out split is smaller)", ge=1)
    split_seed: int = opt(0, "seed of the train/held-out split and of the held-out prompts", ge=0, le=2**32 - 1)

    def split_args(self) -> dict[str, Any]:
        return {"eval_fraction": self.eval_fraction, "num_eval_prompts": self.num_eval_prompts,
                "split_seed": self.split_seed}

    def check(self) -> None:
        """Rules that tie this section's fields together (raise ConfigError); none by default."""


# name -> factory(config) -> Task; each entry declares its config class (``config=``)
TASKS: Registry[Callable[[Any], Task]] = Registry("task")


class Task(ABC):
    """A verifiable environment: prompts, a reward, the ground truth."""

    name: str
    vocab_size: int
    prompt_length: int
    response_length: int
    max_reward: float

    def __init__(self, *, fixed_prompts: Sequence[Sequence[int]] | None, eval_fraction: float,
                 num_eval_prompts: int, split_seed: int) -> None:
        self.fixed_prompts: list[Prompt] | None = (
            [tuple(p) for p in fixed_prompts] if fixed_prompts is not None else None)
        self.eval_fraction = eval_fraction
        self.num_eval_prompts = num_eval_prompts
        self.split_seed = split_seed
        self._eval_prompts: list[Prompt] | None = None

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def random_prompt(self, rng: np.random.Generator) -> Prompt:
        """One prompt from the task's whole prompt distribution (either split)."""

    @abstractmethod
    def solution(self, prompt: Prompt) -> Response:
        """The ground-truth response."""

    @abstractmethod
    def reward(self, prompt: Prompt, response: Sequence[int]) -> float:
        """A program's verdict on one response."""

    def token_rewards(self, prompt: Prompt, response: Sequence[int]) -> list[float] | None:
        """Per-token process rewards, when the task can give them (None: outcome reward only)."""
        return None

    reads_answers = False  # True: the task reads its answer out of free text (``answer_found`` says if it could)

    def answer_found(self, prompt: Prompt, response: Sequence[int]) -> bool | None:
        """Whether an answer could be read from the response, right or wrong (``eval/format_rate``, the
        ``answer-format`` reward source); None for a task that reads no answer out of free text."""
        return None

    # -- provided ----------------------------------------------------------------------------
    def is_correct(self, prompt: Prompt, response: Sequence[int]) -> bool:
        return tuple(int(t) for t in response) == tuple(self.solution(prompt))

    def is_heldout(self, prompt: Prompt) -> bool:
        """Deterministic split by a hash of the prompt: the same prompt is always on the same side."""
        digest = hashlib.blake2b(repr((self.split_seed, tuple(prompt))).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64 < self.eval_fraction

    def train_prompt(self, rng: np.random.Generator) -> Prompt:
        """A training prompt: never one of the held-out split."""
        for _ in range(10_000):
            prompt = self.random_prompt(rng)
            if not self.is_heldout(prompt):
                return prompt
        raise ConfigError(f"task.eval_fraction: {self.eval_fraction} leaves no training prompts for task {self.name!r}")

    def eval_prompts(self) -> list[Prompt]:
        """The evaluation prompts: the fixed list, or distinct held-out prompts (seeded)."""
        if self.fixed_prompts is not None:
            return list(self.fixed_prompts)
        if self._eval_prompts is None:
            rng = np.random.default_rng([self.split_seed, 1])
            found: dict[Prompt, None] = {}
            for _ in range(200 * self.num_eval_prompts):
                prompt = self.random_prompt(rng)
                if self.is_heldout(prompt):
                    found[prompt] = None
                    if len(found) == self.num_eval_prompts:
                        break
            if not found:
                raise ConfigError(f"task.eval_fraction: {self.eval_fraction} yields no held-out prompts for task {self.name!r}")
            self._eval_prompts = list(found)
        return self._eval_prompts
