"""Rollouts: sample G responses for each of B prompts and score them with the task's verifier; refill
a batch whose groups have no reward spread (dynamic sampling); the rollouts' per-token rewards and
length shaping.

Shapes as in ``rlvr.algorithms``: rewards (B, G); response_ids, mask, logprobs (N, T), N = B * G,
responses of one prompt contiguous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms.shaping import overlong_penalty
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
    prompt_pad_id: int = 0           # the id left-padding prompt_ids (the policy's <pad>)
    source_rewards: Tensor | None = None  # (B, G, S) each reward source's own (unweighted) reward; None:
                                          # scored without a reward runner (rewards.source_weights: S weights)

    def responses(self) -> list[list[int]]:
        return response_lists(self.response_ids, self.mask)


def select_prompts(rollouts: Rollouts, prompt_rows: Sequence[int]) -> Rollouts:
    """The rollouts of the given prompt rows b and their responses n = b * G + g, in that order.
    Every per-prompt field (B rows) and per-response field (N rows) is cut, tensors and lists alike."""
    batch, group = len(rollouts.prompts), rollouts.group_size
    prompts = [int(b) for b in prompt_rows]
    responses = [b * group + g for b in prompts for g in range(group)]
    cut: dict[str, Any] = {}
    for f in dataclasses.fields(rollouts):
        value = getattr(rollouts, f.name)
        if isinstance(value, (Tensor, list)):
            rows = prompts if len(value) == batch else responses
            cut[f.name] = value[rows] if isinstance(value, Tensor) else [value[i] for i in rows]
    return dataclasses.replace(rollouts, **cut)


def concat_rollouts(parts: Sequence[Rollouts]) -> Rollouts:
    """Several batches of groups -> one, in order. Widths that differ are padded: prompt tensors on
    the left with ``prompt_pad_id``, response tensors on the right with 0 (mask 0: never counted)."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(parts[0]):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(values[0], Tensor):
            left = f.name.startswith("prompt")
            merged[f.name] = cat_padded(values, left=left, value=parts[0].prompt_pad_id if left else 0)
        elif isinstance(values[0], list):
            merged[f.name] = [item for value in values for item in value]
        else:
            if any(v != values[0] for v in values):
                raise ValueError(f"rollouts disagree on {f.name}: {values}")
            merged[f.name] = values[0]
    return type(parts[0])(**merged)


def cat_padded(tensors: Sequence[Tensor], *, left: bool, value: int = 0) -> Tensor:
    """Concatenate along rows, padding dim 1 to the widest (on the left or the right)."""
    if tensors[0].dim() < 2 or len({t.shape[1] for t in tensors}) == 1:
        return torch.cat(list(tensors))
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        pad = (width - t.shape[1], 0) if left else (0, width - t.shape[1])
        padded.append(torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + pad, value=value))
    return torch.cat(padded)


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


def score(task: Task, prompts: Sequence[Prompt], responses: Sequence[Any], group_size: int,
          *, rewards: RewardRunner | None = None) -> Tensor:
    """Rewards (B, G) of N = B * G responses, response n answering prompt n // G. With ``rewards``
    (a RewardRunner around ``task.reward``), a failing reward call gets its fallback instead of raising."""
    return score_sources(task, prompts, responses, group_size, rewards=rewards)[0]


def score_sources(task: Task, prompts: Sequence[Prompt], responses: Sequence[Any], group_size: int,
                  *, rewards: RewardRunner | None = None) -> tuple[Tensor, Tensor | None]:
    """``score``'s rewards (B, G), and each reward source's own reward (B, G, S) (``rewards.scored``;
    None without ``rewards``): the sum weighs them by ``rewards.source_weights``."""
    asked = [prompts[n // group_size] for n in range(len(responses))]
    if rewards is None:
        values = [task.reward(p, r) for p, r in zip(asked, responses, strict=True)]
        return torch.tensor(values, dtype=torch.float).reshape(len(prompts), group_size), None
    values, by_source = rewards.scored(asked, responses)
    count = len(rewards.source_weights)
    sources = torch.tensor(by_source, dtype=torch.float).reshape(len(prompts), group_size, count)
    return torch.tensor(values, dtype=torch.float).reshape(len(prompts), group_size), sources


def generate(policy: Policy, task: Task, prompts: list[Prompt], *, group_size: int,
             generator: torch.Generator, temperature: float, rewards: RewardRunner | None = None) -> Rollouts:
    prompt_ids = policy.encode_prompts(prompts)
    samples = policy.sample(prompt_ids, group_size, generator=generator, temperature=temperature)
    decoded = policy.decode_responses(samples.response_ids, samples.mask)
    scores, sources = score_sources(task, prompts, decoded, group_size, rewards=rewards)
    return Rollouts(prompts=prompts, prompt_ids=prompt_ids, response_ids=samples.response_ids,
                    mask=samples.mask, logprobs=samples.logprobs, rewards=scores, group_size=group_size,
                    truncated=samples.truncated, decoded=decoded, prompt_pad_id=policy.prompt_pad_id,
                    source_rewards=sources)


def as_json(value: Any) -> Any:
    """A prompt, solution or decoded response as JSON: token tuples as lists, Completions as text."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    if hasattr(value, "token_ids"):
        body = value.body()
        return body if body is not None else {"malformed": value.text, "ids": list(value.token_ids)}
    return value

# ---------------------------------------------------------------- dynamic sampling, per-token rewards, shaping
# Dynamic sampling (DAPO, Yu et al. 2025, sec. 3.2; verl ``filter_groups``): a group whose G rewards
# are all equal gets zero group-centred deltas, so it only dilutes the batch. Such groups are
# dropped and more prompts are drawn, at most ``max_refills`` times per step; then the step trains
# on the first B surviving groups, or on fewer when the refills ran out (DAPO itself raises
# instead). Counts go to the metrics: ``sampling/draws``, ``sampling/kept_groups``,
# ``sampling/dropped_groups``.


def has_signal(rewards: Tensor) -> Tensor:
    """rewards (B, G) -> (B,) bool: True where the group's rewards are not all equal."""
    return rewards.max(-1).values != rewards.min(-1).values


def dynamic_sample(draw: Callable[[int], Rollouts], batch_size: int, *, max_refills: int,
                   enabled: bool) -> tuple[Rollouts, Tensor, dict[str, float]]:
    """Draw B groups; if ``enabled``, drop zero-variance groups and refill (at most M more draws of B
    prompts). Returns (rollouts to train on (<= B groups), the first draw's rewards (B, G) -- an
    unfiltered sample of the policy's reward, for the learning curves -- and the counts)."""
    first = draw(batch_size)
    if not enabled:
        return first, first.rewards, {}
    kept: list[Rollouts] = []
    count, draws, dropped, current = 0, 1, 0, first
    while True:
        signal = has_signal(current.rewards).tolist()
        keep = [g for g, ok in enumerate(signal) if ok][: batch_size - count]
        dropped += signal.count(False)
        if keep:
            kept.append(select_prompts(current, keep))
            count += len(keep)
        if count >= batch_size or draws > max_refills:
            break
        current = draw(batch_size)
        draws += 1
    rollouts = concat_rollouts(kept) if kept else select_prompts(first, [])
    stats = {"sampling/draws": float(draws), "sampling/kept_groups": float(count),
             "sampling/dropped_groups": float(dropped)}
    return rollouts, first.rewards, stats


def token_reward_tensor(task: Task, rollouts: Rollouts) -> Tensor | None:
    """The task's per-token process rewards as (N, T) (0 on padding), or None if it has none."""
    responses = rollouts.decoded if rollouts.decoded is not None else rollouts.responses()
    group = rollouts.group_size
    out = torch.zeros_like(rollouts.mask)
    for n, response in enumerate(responses):
        values = task.token_rewards(rollouts.prompts[n // group], response)
        if values is None:
            return None
        out[n, : len(values)] = torch.tensor(values, dtype=out.dtype)
    return out


def length_penalty(rollouts: Rollouts, *, max_length: int, buffer_frac: float, factor: float) -> Tensor:
    """DAPO's soft overlong punishment of each response (B, G), from the mask and the sampler's
    ``truncated`` flag (absent: nothing truncated). The buffer is a fraction of ``max_length``."""
    lengths = rollouts.mask.sum(-1)
    truncated = rollouts.truncated if rollouts.truncated is not None else torch.zeros_like(lengths, dtype=torch.bool)
    penalty = overlong_penalty(lengths, truncated.bool(), max_length=max_length,
                               buffer=round(buffer_frac * max_length), factor=factor)
    return penalty.reshape(rollouts.rewards.shape)
