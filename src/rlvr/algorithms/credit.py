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

- ``optimal-token-baseline``  the outcome reward R_i (the reward-to-go of every token, with ``raw``
               deltas) minus a per-token baseline weighted by the size of each response's score
               (Li et al. 2026, the Optimal Token Baseline; ``optimal_token_baseline`` below).

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
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.deltas import compute_deltas
from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.registry import Registry

CREDIT: Registry[Callable[..., Tensor]] = Registry("credit assignment")
TokenRewards = Tensor | Callable[[], Tensor | None] | None  # (N, T), or a function computing them
TokenValues = TokenRewards  # any per-token constant a mode may ask for: (N, T), or a function computing it


@dataclass
class OTBParams:
    """The setting of ``optimal-token-baseline``."""

    otb_leave_one_out: bool = opt(True, "optimal-token-baseline: each response's baseline from the other "
                                  "G-1 responses of its group (unbiased); false: from all G, itself included, "
                                  "as verl computes it (biased)")


@CREDIT.register("outcome")
def outcome(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool, settings: Mapping[str, Any] | None, score_norms: TokenValues = None) -> Tensor:
    return deltas.reshape(-1, 1).expand_as(mask) * mask


@CREDIT.register("process", per_position=True)
def process(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str, eps: float,
            unbiased_std: bool, settings: Mapping[str, Any] | None, score_norms: TokenValues = None) -> Tensor:
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


def optimal_token_baseline(returns: Tensor, score_norms: Tensor, mask: Tensor, *, group_size: int,
                           leave_one_out: bool = True) -> Tensor:
    """returns G (N, T), per-token score norms w (N, T), mask (N, T) -> advantages (N, T): the
    Optimal Token Baseline (Li et al. 2026, "The Optimal Token Baseline: Variance Reduction for
    Long-Horizon LLM-RL", arXiv:2602.07078; verl ``compute_optimal_token_baseline_advantage``).

        W_it = sum_{s <= t} w_is                                the prefix's squared score norm
        b_it = sum_{j != i} W_jt G_jt / sum_{j != i} W_jt       over i's group, j's real tokens only
        A_it = (G_it - b_it) m_it

    The variance-optimal constant baseline weighs each sample's return by its squared score norm,
    b* = E[G ||grad log pi||^2] / E[||grad log pi||^2] (Weaver & Tao 2001; the notes' b*); OTB takes it
    per token, with the score of the prefix y_<=t measured by w_t = ||d log pi(y_t) / d z_t||^2 at
    the logits z_t (``logprobs.logit_score_norm``: 1 - 2 pi(y_t) + sum_v pi(v)^2) summed over
    s <= t. ``leave_one_out``: the sum runs over the other G-1 responses, so b_it does not depend on
    y_i and the estimate stays unbiased; False sums over all G, i included, as verl and the paper
    compute it (then b_it moves with G_it, like ``centered``'s mean). Where no other response of
    the group has a real token t, or their W are all 0, b_it = 0 (verl's ``handle_zero_tail``).
    """
    length = returns.shape[-1]
    real = mask != 0
    weight = torch.where(real, masked(score_norms, mask).cumsum(-1), 0.0).reshape(-1, group_size, length)
    weighted = weight * masked(returns, mask).reshape(-1, group_size, length)              # (B, G, T)
    others = 1 - torch.eye(group_size, dtype=weight.dtype)                                   # (G, G)
    counted = others if leave_one_out else torch.ones_like(others)
    numerator = torch.einsum("ij,bjt->bit", counted, weighted)
    denominator = torch.einsum("ij,bjt->bit", counted, weight)
    alive = torch.einsum("ij,bjt->bit", others, real.reshape(-1, group_size, length).to(weight.dtype))
    has_baseline = (alive > 0) & (denominator > 0)
    baseline = torch.where(has_baseline, numerator / torch.where(has_baseline, denominator, 1.0), 0.0)
    return masked(returns - baseline.reshape(-1, length), mask)


@CREDIT.register("optimal-token-baseline", needs_group=True, needs_deltas="raw", params=OTBParams)
def optimal_token_baseline_credit(deltas: Tensor, token_rewards: TokenRewards, mask: Tensor, *, mode: str,
                                  eps: float, unbiased_std: bool, settings: Mapping[str, Any] | None,
                                  score_norms: TokenValues = None, otb_leave_one_out: bool = True) -> Tensor:
    """The outcome's rewards (``raw`` deltas) as every token's return G_it = R_i, minus the Optimal
    Token Baseline; ``score_norms`` (N, T), or a function computing them: the learner's (the trainer's
    ``constant_score_norms``)."""
    norms = score_norms() if callable(score_norms) else score_norms
    if norms is None:
        raise ConfigError("algo.credit: 'optimal-token-baseline' weighs by per-token score norms and was given none")
    returns = deltas.reshape(-1, 1).expand_as(mask)
    return optimal_token_baseline(returns, norms, mask, group_size=deltas.shape[-1], leave_one_out=otb_leave_one_out)


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
                     eps: float = 1e-5, unbiased_std: bool = True, settings: Mapping[str, Any] | None = None,
                     score_norms: TokenValues = None, **credit_settings: object) -> Tensor:
    """deltas (B, G), token rewards (N, T) or None, mask (N, T) -> advantages (N, T).
    ``token_rewards`` and ``score_norms`` (the policy's per-token score norms) may be zero-argument
    functions returning them: only a mode that uses them calls them (the trainer passes functions,
    so outcome credit never asks the task or the policy). ``settings``: the deltas mode's own
    (``deltas.mode_settings``), for process credit's per-position deltas; ``credit_settings``: the
    credit mode's own (its ``params``)."""
    return CREDIT.get(name)(deltas, token_rewards, mask, mode=mode, eps=eps, unbiased_std=unbiased_std,
                            settings=settings, score_norms=score_norms, **credit_settings)
