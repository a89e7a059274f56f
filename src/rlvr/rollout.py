"""Rollouts: sample G responses for each of B prompts and score them with the task's verifier.

Shapes as in ``rlvr.algorithms``: rewards (B, G); response_ids, mask, logprobs (N, T), N = B * G,
responses of one prompt contiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.policies import Policy
from rlvr.policies.base import response_lists
from rlvr.rewards import RewardRunner
from rlvr.tasks import Prompt, Task


@dataclass
class Rollouts:
    prompts: list[Prompt]    # B task prompts
    prompt_ids: Tensor       # (B, P)
    response_ids: Tensor     # (N, T)
    mask: Tensor             # (N, T)
    logprobs: Tensor         # (N, T) recorded by the sampler: pi_old, a constant
    rewards: Tensor          # (B, G)
    group_size: int
    truncated: Tensor | None = None  # (N,) bool, from the sampler (None: nothing truncated)
    decoded: list[Any] | None = None  # N responses as the verifier read them (token lists or Completions)

    def responses(self) -> list[list[int]]:
        return response_lists(self.response_ids, self.mask)


class PromptSource:
    """Training prompts in a reproducible order: a fixed list cycled in order, or seeded draws."""

    def __init__(self, task: Task, seed: int) -> None:
        self.task = task
        self.rng = np.random.default_rng([seed, 2])
        self.position = 0

    def next_batch(self, count: int) -> list[Prompt]:
        fixed = self.task.fixed_prompts
        if fixed is not None:
            batch = [fixed[(self.position + i) % len(fixed)] for i in range(count)]
        else:
            batch = [self.task.train_prompt(self.rng) for _ in range(count)]
        self.position += count
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]
        self.rng.bit_generator.state = state["rng"]


def encode_prompts(prompts: Sequence[Prompt]) -> Tensor:
    return torch.tensor([list(p) for p in prompts], dtype=torch.long)


def score(task: Task, prompts: Sequence[Prompt], responses: Sequence[Any], group_size: int,
          *, rewards: RewardRunner | None = None) -> Tensor:
    """Rewards (B, G) of N = B * G responses, response n answering prompt n // G. With ``rewards``
    (a RewardRunner around ``task.reward``), a failing reward call gets its fallback instead of raising."""
    asked = [prompts[n // group_size] for n in range(len(responses))]
    values = rewards(asked, responses) if rewards is not None else [task.reward(p, r) for p, r in zip(asked, responses, strict=True)]
    return torch.tensor(values, dtype=torch.float).reshape(len(prompts), group_size)


def generate(policy: Policy, task: Task, prompts: list[Prompt], *, group_size: int,
             generator: torch.Generator, temperature: float, rewards: RewardRunner | None = None) -> Rollouts:
    prompt_ids = policy.encode_prompts(prompts)
    samples = policy.sample(prompt_ids, group_size, generator=generator, temperature=temperature)
    decoded = policy.decode_responses(samples.response_ids, samples.mask)
    scores = score(task, prompts, decoded, group_size, rewards=rewards)
    return Rollouts(prompts=prompts, prompt_ids=prompt_ids, response_ids=samples.response_ids,
                    mask=samples.mask, logprobs=samples.logprobs, rewards=scores, group_size=group_size,
                    truncated=samples.truncated, decoded=decoded)


def as_json(value: Any) -> Any:
    """A prompt, solution or decoded response as JSON: token tuples as lists, Completions as text."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    if hasattr(value, "token_ids"):
        body = value.body()
        return body if body is not None else {"malformed": value.text, "ids": list(value.token_ids)}
    return value
