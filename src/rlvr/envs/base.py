"""The environment interface: RL on interaction, not on one answer (issue 18).

An episode is a conversation between the policy and an ``Env``: the env opens with an observation
(``reset``), the policy answers with an action (the text of one turn, up to its end-of-turn token),
the env replies with a ``Step`` (its next observation, this turn's reward, whether the episode is
over), and so on until ``done`` or the episode limits (``env.max_turns`` turns, a token budget).

One ``Env`` is made per episode: G of them per prompt, so the group baselines of single-answer RL
apply unchanged. The prompt is the task's row for the episode (the hidden number of ``guess``, the
question of ``calc-arith``); the policy never sees the row, only the observations the env makes
from it. The interface is Tinker's ``Env.initial_observation / Env.step`` in rlvr's terms, with text
in and out: the exact token ids the policy sampled are kept as the training tokens (never
re-tokenised from the text the env reads).

Peers' terms: TRL's ``environment_factory`` (``reset(**row)``, public methods as tools,
``get_reward()``), verl's ``AgentLoopBase.run`` and ``BaseTool.execute``, Tinker's ``Env`` and
``EnvGroupBuilder`` (docs/environments.md sets them side by side).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """The env's answer to one policy turn."""

    observation: str | None  # the env's next message to the policy; None when the episode is over
    reward: float            # this turn's reward; the episode's return is the sum over its turns
    done: bool               # the episode is over (found, failed, or the env's own limit)


class Env(ABC):
    """One episode. Text in, text out; may keep any state between calls. Untrusted: the caller
    guards every call (an env that raises, hangs or returns garbage ends its episode, counted)."""

    @abstractmethod
    def reset(self) -> str:
        """The first observation: what the policy reads before its first turn."""

    @abstractmethod
    def step(self, action: str) -> Step:
        """The policy's turn (its text, without the end-of-turn token) -> the env's answer."""

    def metrics(self) -> dict[str, float]:
        """Per-episode figures averaged into ``env/<key>`` (e.g. ``success``, ``tool_calls``); read
        once when the episode ends."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the episode holds (processes, files); called once when it ends."""


# an episode row (a task prompt) -> a fresh Env for it
EnvFactory = Callable[[Any], Env]
