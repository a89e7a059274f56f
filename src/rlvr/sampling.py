"""What the trainer trains on, drawn from the policy: dynamic sampling, per-token rewards, shaping.

Dynamic sampling (DAPO, Yu et al. 2025, sec. 3.2; verl ``filter_groups``): a group whose G rewards
are all equal gets zero group-centred deltas, so it only dilutes the batch. Such groups are
dropped and more prompts are drawn, at most ``max_refills`` times per step; then the step trains
on the first B surviving groups, or on fewer when the refills ran out (DAPO itself raises
instead). Counts go to the metrics: ``sampling/draws``, ``sampling/kept_groups``,
``sampling/dropped_groups``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlvr.algorithms.shaping import overlong_penalty
from rlvr.rollout import Rollouts, concat_rollouts, select_prompts
from rlvr.tasks import Task


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
