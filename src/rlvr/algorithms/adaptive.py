"""Adaptive sampling (Reinforce-Ada): when a prompt has been sampled enough, which of its pooled
responses train, and the pool's statistics for the deltas.

Xiong et al. 2025, "Reinforce-Ada: An Adaptive Sampling Framework for Reinforce-Style LLM Training"
(arXiv:2510.04996), Algorithm 1. Per prompt, responses are sampled in rounds of M; after each round
an exit rule looks at the prompt's pool so far (its correct and incorrect responses) and retires the
prompt, or it stays active until N rounds are used. Then each prompt's pool is cut down to a group
of G for training, and the deltas use the statistics of the whole pool (``pool_statistics``, and
the ``pooled`` forms of the deltas modes in ``deltas.py``). The loop that samples the rounds is
``rlvr.rollout.adaptive_sample``; this module is its arithmetic.

Shapes: a batch's pools as (B, P) tensors, prompt b's P_b responses in the first P_b columns in the
order they were sampled (``sizes`` (B,) holds P_b; columns past it are padding and never read); a
training group (B, G).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.options import opt
from rlvr.registry import Registry

ExitRule = Callable[..., Tensor]  # (correct (B,), incorrect (B,), *, group_size) -> done (B,) bool
EXIT_RULES: Registry[ExitRule | None] = Registry("adaptive sampling rule")


@dataclass
class AdaptiveParams:
    """The settings of adaptive sampling, declared by its exit rules (``params=AdaptiveParams``)."""

    adaptive_rounds: int = opt(4, "adaptive sampling: at most N sampling rounds per outer step (the "
                               "paper: 4)", ge=1)
    adaptive_round_multiplier: int = opt(2, "adaptive sampling: each round samples M = this x "
                                         "train.group_size responses for every prompt still active (the "
                                         "paper: M = 8 for G = 4); a prompt's budget is N x M", ge=1)
    adaptive_success: float | None = opt(None, "adaptive sampling: a response counts as correct when its "
                                         "reward is >= this (none: when the task's ground truth says so, "
                                         "Task.is_correct)")


# "none": no adaptive sampling; the step samples G per prompt once (with algo.dynamic_sampling, DAPO's
# refills of new prompts)
EXIT_RULES.register("none")(None)


@EXIT_RULES.register("balanced", params=AdaptiveParams)
def balanced(correct: Tensor, incorrect: Tensor, *, group_size: int) -> Tensor:
    """Reinforce-Ada-balance: a prompt is done once its pool holds floor(G/2) correct and
    G - floor(G/2) incorrect responses, enough for a balanced group (the paper's n/2 and n/2; its
    verl code's split of an odd G)."""
    return (correct >= group_size // 2) & (incorrect >= group_size - group_size // 2)


@EXIT_RULES.register("positive", params=AdaptiveParams)
def positive(correct: Tensor, incorrect: Tensor, *, group_size: int) -> Tensor:
    """Reinforce-Ada-pos: a prompt is done once its pool holds one correct response. An easy prompt
    thus leaves after its first round, possibly with no incorrect response (a flat group)."""
    return correct >= 1


def balanced_selection(correct: Tensor, sizes: Tensor, *, group_size: int) -> Tensor:
    """The G responses of each pool that train: the first k+ correct and the first k- incorrect ones
    in sampling order, with

        k+ = min(C, floor(G/2)),   k- = min(I, G - k+),   then k+ = min(C, G - k-)

    (C, I: the pool's correct and incorrect counts): half and half where the pool allows it, the
    other kind filling the rest (Algorithm 1, line 18; the verl code takes the first ones too).
    correct (B, P) bool, sizes (B,) with every P_b >= G -> column indices (B, G), ascending."""
    valid = torch.arange(correct.shape[1]) < sizes.unsqueeze(1)                         # (B, P)
    good, bad = correct & valid, ~correct & valid
    n_good, n_bad = good.sum(1, keepdim=True), bad.sum(1, keepdim=True)                # (B, 1)
    k_good = n_good.clamp(max=group_size // 2)
    k_bad = torch.minimum(n_bad, group_size - k_good)
    k_good = torch.minimum(n_good, group_size - k_bad)
    rank_good = good.long().cumsum(1) - 1                                              # 0 for the first
    rank_bad = bad.long().cumsum(1) - 1
    keep = (good & (rank_good < k_good)) | (bad & (rank_bad < k_bad))                  # (B, P)
    if bool((keep.sum(1) != group_size).any()):
        raise ValueError(f"a pool smaller than the group size {group_size}: sizes {sizes.tolist()}")
    return keep.nonzero()[:, 1].reshape(-1, group_size)                                # row-major: ascending


def pool_statistics(rewards: Tensor, sizes: Tensor, *, unbiased: bool) -> tuple[Tensor, Tensor]:
    """Each pool's mean and standard deviation (B,) over its P_b rewards (std with P_b - 1, or P_b
    with ``unbiased=False``; 0 for a pool of one): Reinforce-Ada's "global statistics", from every
    response sampled for the prompt, not only the G that train. rewards (B, P), sizes (B,)."""
    valid = torch.arange(rewards.shape[1]) < sizes.unsqueeze(1)                         # (B, P)
    count = sizes.to(rewards.dtype)
    mean = torch.where(valid, rewards, 0.0).sum(1) / count
    squares = torch.where(valid, rewards - mean.unsqueeze(1), 0.0).square().sum(1)
    divisor = (count - 1).clamp(min=1) if unbiased else count
    std = torch.where(sizes > 1, (squares / divisor).sqrt(), torch.zeros_like(mean))
    return mean, std
