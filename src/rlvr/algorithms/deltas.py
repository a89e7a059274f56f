"""Deltas: the scalar that multiplies grad log pi(response) for each response.

The notes call it the unified delta: algorithms differ mainly in how rewards become deltas.
All functions map rewards (B, G) -> deltas (B, G); the G responses of a row share one prompt.
A baseline b may depend on the prompt and on the *other* responses of the group, never on the
response it is subtracted from: then E[(R - b) grad log pi] = E[R grad log pi] (unbiased).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlvr.registry import Registry

DELTAS: Registry = Registry("deltas mode")


def group_std(rewards: Tensor, *, unbiased: bool) -> Tensor:
    """Per-group standard deviation (B, 1); 0 for a group of one (never NaN)."""
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards[..., :1])
    return rewards.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)


@DELTAS.register("raw")
def raw(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta = R. The naive policy gradient (reward-weighted SFT in the notes)."""
    return rewards


@DELTAS.register("centered")
def centered(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = R_i - mean_j R_j over the prompt's group (the notes' group baseline).

    The mean includes R_i itself, so E[delta_i grad log pi(y_i)] = (G-1)/G of the true gradient
    (tests/test_gradient_unbiased.py shows it): the direction is right, the length shrinks.
    """
    return rewards - rewards.mean(dim=-1, keepdim=True)


@DELTAS.register("normalized")
def normalized(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = (R_i - mean R) / (std R + eps), std over the prompt's group (GRPO).

    std is the unbiased (N-1) estimate by default, as torch.std and the notes' code compute it;
    ``unbiased_std=False`` divides by N instead. A group of equal rewards gives 0, never NaN.
    """
    return centered(rewards, eps=eps, unbiased_std=unbiased_std) / (
        group_std(rewards, unbiased=unbiased_std) + eps
    )


@DELTAS.register("max-only")
def max_only(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = R_i if R_i is the maximum of its group, else 0 (the notes' ``max_rewards``)."""
    group_max = rewards.max(dim=-1, keepdim=True).values
    return torch.where(rewards == group_max, rewards, torch.zeros_like(rewards))


@DELTAS.register("rloo")
def rloo(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """Leave-one-out: delta_i = R_i - mean_{j != i} R_j = G/(G-1) (R_i - mean R).

    The baseline excludes the response itself, so the estimator is unbiased (Kool et al. 2019,
    Ahmadian et al. 2024). Needs G >= 2.
    """
    group_size = rewards.shape[-1]
    return centered(rewards, eps=eps, unbiased_std=unbiased_std) * (group_size / (group_size - 1))


def compute_deltas(rewards: Tensor, mode: str, *, eps: float = 1e-5, unbiased_std: bool = True) -> Tensor:
    """rewards (B, G) -> deltas (B, G) by the named mode (see ``DELTAS.names()``)."""
    return DELTAS.get(mode)(rewards, eps=eps, unbiased_std=unbiased_std)
