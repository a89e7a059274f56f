"""Credit assignment: which tokens of a response a delta is credited to. (N, T) advantages out.

- ``outcome``  A_it = delta_i for every real token: the outcome's delta broadcast over the response
               (the notes' default; every token shares the blame for the one reward).
- ``process``  per-token process rewards r_it (a task's ``token_rewards``; the sorting task's is 1
               where position t holds the right number) become rewards-to-go
                   G_it = sum_{s >= t} r_is          (gamma = 1: token t can only influence
                                                      itself and later tokens)
               and the delta mode is applied per position across the group:
                   A_{., t} = deltas(G_{b, ., t})    e.g. G_it - mean_j G_jt for ``centered``.
               A token that got its own position right is credited even inside a response with a
               low total. With ``raw`` deltas this is REINFORCE with reward-to-go, unbiased for
               grad E[sum_t r_t] (Williams 1992; the notes' causality argument).
The outcome reward is not used by ``process`` credit; KL and length shaping act on the outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from rlvr.algorithms.deltas import compute_deltas
from rlvr.errors import ConfigError
from rlvr.registry import Registry

CREDIT: Registry[Callable[..., Tensor]] = Registry("credit assignment")
TokenRewards = Tensor | Callable[[], Tensor | None] | None  # (N, T), or a function computing them


@CREDIT.register("outcome")
def outcome(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool) -> Tensor:
    return deltas.reshape(-1, 1).expand_as(mask) * mask


@CREDIT.register("process")
def process(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool) -> Tensor:
    if callable(token_rewards):
        token_rewards = token_rewards()
    if token_rewards is None:
        raise ConfigError("algo.credit: 'process' needs per-token rewards and this task gives none; use 'outcome'")
    batch, group = deltas.shape
    rewards = token_rewards * mask
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)                               # (N, T)
    length = to_go.shape[-1]
    per_position = to_go.reshape(batch, group, length).transpose(1, 2)         # (B, T, G)
    token_deltas = compute_deltas(per_position.reshape(batch * length, group), mode, eps=eps,
                                  unbiased_std=unbiased_std)
    return token_deltas.reshape(batch, length, group).transpose(1, 2).reshape(-1, length) * mask


def token_advantages(name: str, deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str,
                     eps: float = 1e-5, unbiased_std: bool = True) -> Tensor:
    """deltas (B, G), token rewards (N, T) or None, mask (N, T) -> advantages (N, T).
    ``token_rewards`` may be a zero-argument function returning them: only a mode that uses them
    calls it (the trainer passes one, so outcome credit never asks the task)."""
    return CREDIT.get(name)(deltas, token_rewards, mask, mode=mode, eps=eps, unbiased_std=unbiased_std)
