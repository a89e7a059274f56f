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

Reward-side terms reach ``process`` credit through its token rewards (``shaped_token_rewards``),
so the same terms that shape the outcome reward shape every token's reward-to-go:
- per-token terms (the KL in the reward, -beta k(y_it)) are added on their own token: token t's
  reward-to-go carries the KL of tokens t.. only, the causality that reward-to-go is built on;
- per-response terms (DAPO's overlong penalty, any shaping of the whole response) are added on
  the response's last real token, so every token's reward-to-go carries them, as every token of
  the response shares the blame for its length.
Summed over a response, the shaped token rewards are the task's token rewards plus exactly the
shaping that the outcome reward gets. A response without real tokens has nowhere to take them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.deltas import compute_deltas
from rlvr.errors import ConfigError
from rlvr.registry import Registry

CREDIT: Registry[Callable[..., Tensor]] = Registry("credit assignment")
TokenRewards = Tensor | Callable[[], Tensor | None] | None  # (N, T), or a function computing them


@CREDIT.register("outcome")
def outcome(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool, settings: Mapping[str, Any] | None) -> Tensor:
    return deltas.reshape(-1, 1).expand_as(mask) * mask


@CREDIT.register("process")
def process(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool, settings: Mapping[str, Any] | None) -> Tensor:
    if callable(token_rewards):
        token_rewards = token_rewards()
    if token_rewards is None:
        raise ConfigError("algo.credit: 'process' needs per-token rewards and this task gives none; use 'outcome'")
    batch, group = deltas.shape
    rewards = masked(token_rewards, mask)
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)                               # (N, T)
    length = to_go.shape[-1]
    per_position = to_go.reshape(batch, group, length).transpose(1, 2)         # (B, T, G)
    token_deltas = compute_deltas(per_position.reshape(batch * length, group), mode, eps=eps,
                                  unbiased_std=unbiased_std, settings=settings)
    return token_deltas.reshape(batch, length, group).transpose(1, 2).reshape(-1, length) * mask


def shaped_token_rewards(token_rewards: Tensor | None, mask: Tensor, *, per_response: Tensor | None = None,
                         per_token: Tensor | None = None) -> Tensor | None:
    """token rewards (N, T) + per-token shaping (N, T) + per-response shaping (N,) on each response's
    last real token -> shaped token rewards (N, T), 0 on padding. None stays None (no token rewards)."""
    if token_rewards is None:
        return None
    shaped = masked(token_rewards, mask)
    if per_token is not None:
        shaped = shaped + masked(per_token, mask)
    if per_response is not None:
        real = mask != 0
        last = real & (real.cumsum(-1) == real.sum(-1, keepdim=True))         # (N, T) one True per row
        shaped = shaped + torch.where(last, per_response.reshape(-1, 1).to(shaped.dtype), 0.0)
    return shaped


def token_advantages(name: str, deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str,
                     eps: float = 1e-5, unbiased_std: bool = True, settings: Mapping[str, Any] | None = None) -> Tensor:
    """deltas (B, G), token rewards (N, T) or None, mask (N, T) -> advantages (N, T).
    ``token_rewards`` may be a zero-argument function returning them: only a mode that uses them
    calls it (the trainer passes one, so outcome credit never asks the task). ``settings``: the deltas
    mode's own (``deltas.mode_settings``), for process credit's per-position deltas."""
    return CREDIT.get(name)(deltas, token_rewards, mask, mode=mode, eps=eps, unbiased_std=unbiased_std,
                            settings=settings)
