"""Tasks played as episodes: the task gives the rows (a hidden number, a question), an ``Env`` per
episode plays them (rlvr.envs.base), and the env's rewards are the episode's return.

An ``EnvTask`` is a ``TextTask`` whose ``rollout_kind`` is ``"episodes"``: the trainer samples whole
episodes for it (rlvr.multiturn) instead of single answers. ``random_prompt`` draws a row, its
string form is what ``is_heldout`` hashes (so the held-out split works unchanged), and the policy
never reads it: it reads the env's observations. ``solution`` is a reference answer (the hidden
number, the product) shown in samples; ``demonstration`` plays one episode with a scripted
demonstrator, the policy's turns of which are the SFT warm start.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from rlvr.envs.base import Env
from rlvr.tasks.text import TextTask


class EnvTask(TextTask):
    """A text task whose responses are whole episodes with an environment."""

    rollout_kind = "episodes"

    @abstractmethod
    def make_env(self, prompt: str) -> Env:
        """A fresh environment for one episode on this row."""

    @abstractmethod
    def demonstration(self, prompt: str, rng: np.random.Generator) -> list[str]:
        """The policy turns (texts, no end-of-turn token) of one demonstrated episode on this row."""

    def score_text(self, prompt: str, answer: str) -> float:
        raise TypeError(f"task {self.name!r} is played as episodes: its rewards come from its env, not a verifier")

    def reward(self, prompt: str, response: Any) -> float:  # type: ignore[override]
        """An episode's reward is its return (the env's rewards summed, rlvr.multiturn.Episode)."""
        return float(response.ret)

    def is_correct(self, prompt: str, response: Any) -> bool:  # type: ignore[override]
        return episode_success(response, max_reward=self.max_reward)


def episode_success(episode: Any, *, max_reward: float) -> bool:
    """An episode (rlvr.multiturn.Episode) succeeded when its env says so (its ``success`` metric), else
    when it ended without a fault at a return of at least ``max_reward``."""
    if "success" in episode.metrics:
        return bool(episode.metrics["success"])
    return episode.fault is None and float(episode.ret) >= max_reward
