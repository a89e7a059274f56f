"""Deltas: the scalar that multiplies grad log pi(response) for each response.

The notes call it the unified delta: algorithms differ mainly in how rewards become deltas.
All functions map rewards (B, G) -> deltas (B, G); the G responses of a row share one prompt.
A baseline b may depend on the prompt and on the *other* responses of the group, never on the
response it is subtracted from: then E[(R - b) grad log pi] = E[R grad log pi] (unbiased).
A mode that compares a response with its group-mates registers with ``needs_group=True``
(validation then asks for group_size >= 2); one that reads each reward source's own rewards
(B, G, S) instead of their weighted sum registers with ``needs_sources=True`` (``compute_deltas``
then hands it ``sources`` and ``source_weights``). Every mode takes ``eps`` and ``unbiased_std`` (the
config's ``norm_eps`` and ``unbiased_std``, ``NormParams``); a mode with settings of its own declares
them in the params block it registers with and takes them as keyword arguments (``mode_settings``).
A mode built from its group's mean (and std) registers its ``pooled`` form too: the same formula
with the statistics of a larger pool of responses to the prompt, of which the group is a part
(adaptive sampling, ``rlvr.algorithms.adaptive``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.errors import ConfigError
from rlvr.options import opt, own_settings
from rlvr.registry import Registry

DELTAS: Registry = Registry("deltas mode")


@dataclass
class NormParams:
    """The settings of the modes that divide by a standard deviation (``params=NormParams``)."""

    norm_eps: float = opt(1e-5, "normalized deltas: eps in (R - mean) / (std + eps)", gt=0.0)
    unbiased_std: bool = opt(True, "normalized deltas: std with N-1 (true) or N (false)")


@dataclass
class WReinforceParams:
    """W-REINFORCE's weight of the positive samples (``params=WReinforceParams``)."""

    positive_weight: float = opt(0.1, "w-reinforce deltas: lambda, the weight of the positive samples "
                                 "(the negative ones weigh 1; Zhu et al. 2025: 0.1)", ge=0.0)


def group_std(rewards: Tensor, *, unbiased: bool) -> Tensor:
    """Per-group standard deviation (B, 1); 0 for a group of one (never NaN)."""
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards[..., :1])
    return rewards.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)


def pool_centered(rewards: Tensor, *, mean: Tensor, std: Tensor, eps: float) -> Tensor:
    """delta_i = R_i - mean_x, mean_x over every response sampled for the prompt (its pool, (B,)), not
    only the group's G: Reinforce-Ada's "global" baseline, A_i = r_i - r_bar_x (Xiong et al. 2025,
    arXiv:2510.04996, Algorithm 1 lines 17-19; its paper drops the std, see ``pool_normalized``)."""
    return rewards - mean.unsqueeze(-1)


def pool_normalized(rewards: Tensor, *, mean: Tensor, std: Tensor, eps: float) -> Tensor:
    """delta_i = (R_i - mean_x) / (std_x + eps) with the pool's mean and std (B,): GRPO's normalisation
    with Reinforce-Ada's global statistics (its verl code, ``global_stat_est`` with the std kept)."""
    return pool_centered(rewards, mean=mean, std=std, eps=eps) / (std.unsqueeze(-1) + eps)


@DELTAS.register("raw")
def raw(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta = R. The naive policy gradient (reward-weighted SFT in the notes)."""
    return rewards


@DELTAS.register("centered", needs_group=True, pooled=pool_centered)
def centered(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = R_i - mean_j R_j over the prompt's group (the notes' group baseline).

    The mean includes R_i itself, so E[delta_i grad log pi(y_i)] = (G-1)/G of the true gradient
    (tests/test_gradient_unbiased.py shows it): the direction is right, the length shrinks.
    """
    return rewards - rewards.mean(dim=-1, keepdim=True)


@DELTAS.register("normalized", needs_group=True, params=NormParams, pooled=pool_normalized)
def normalized(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = (R_i - mean R) / (std R + eps), std over the prompt's group (GRPO).

    std is the unbiased (N-1) estimate by default, as torch.std and the notes' code compute it;
    ``unbiased_std=False`` divides by N instead. A group of equal rewards gives 0, never NaN.
    """
    return centered(rewards, eps=eps, unbiased_std=unbiased_std) / (
        group_std(rewards, unbiased=unbiased_std) + eps
    )


# GRPO's name for the same estimator. Sources differ in the constants: the GRPO paper (Shao et al.
# 2024) writes std without saying which; TRL and verl both call torch.std (N-1), with eps 1e-4 (TRL)
# and 1e-6 (verl). Here: N-1 by default (``algo.unbiased_std``), eps = ``algo.norm_eps`` (1e-5).
DELTAS.register("grpo", needs_group=True, params=NormParams, pooled=pool_normalized)(normalized)


@DELTAS.register("dr-grpo", needs_group=True, pooled=pool_centered)
def dr_grpo(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = R_i - mean_j R_j: GRPO without the division by the std (Liu et al. 2025,
    "Understanding R1-Zero-Like Training", Dr. GRPO). The same estimator as ``centered``; its other
    half, dropping the 1/|y| length normalisation, is the aggregation ``seq-sum-constant``."""
    return centered(rewards, eps=eps, unbiased_std=unbiased_std)


@DELTAS.register("reinforce++", params=NormParams)
def reinforce_plus_plus(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta = (R - mean R) / (std R + eps) with mean and std over the WHOLE batch (B * G rewards),
    not per group: REINFORCE++'s global advantage normalisation (Hu 2025, arXiv:2501.03262; verl
    ``compute_reinforce_plus_plus_outcome_advantage`` whitens over the batch). Prompts do not get
    their own baseline, so an easy prompt's responses all get positive deltas. Biased (the batch
    mean contains R_i), and the scale is shared by all prompts of the batch.
    """
    flat = rewards.reshape(-1)
    if flat.numel() < 2:
        return torch.zeros_like(rewards)
    std = flat.std(correction=1 if unbiased_std else 0)
    return (rewards - flat.mean()) / (std + eps)


@DELTAS.register("pass-at-k", needs_group=True)
def pass_at_k(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """Only the best response of a group gets credit: the leave-one-out max,

        delta_i = max_j R_j - max_{j != i} R_j      (>= 0; > 0 only for a strict, unique maximum)

    sum_i delta_i grad log pi(y_i) is an unbiased estimate of grad E[max(R_1..R_G)], the gradient of
    best-of-G reward (pass@G for a 0/1 reward), because max_{j != i} R_j does not depend on y_i
    and is a valid baseline for term i (Walder & Karkhanis 2025, "Pass@k Policy Optimization", the
    k = G case). tests/test_gradient_unbiased.py checks it by enumeration. Needs G >= 2.
    """
    group_size = rewards.shape[-1]
    best = rewards.max(dim=-1, keepdim=True).values
    if group_size < 2:
        return torch.zeros_like(rewards)
    others = rewards.unsqueeze(-2).expand(*rewards.shape[:-1], group_size, group_size)  # (B, G, G)
    keep = ~torch.eye(group_size, dtype=torch.bool)
    leave_one_out_max = others[..., keep].reshape(*rewards.shape, group_size - 1).max(-1).values
    return best - leave_one_out_max


@DELTAS.register("max-only")
def max_only(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """delta_i = R_i if R_i is the maximum of its group, else 0 (the notes' ``max_rewards``)."""
    group_max = rewards.max(dim=-1, keepdim=True).values
    return torch.where(rewards == group_max, rewards, torch.zeros_like(rewards))


@DELTAS.register("rloo", needs_group=True)
def rloo(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """Leave-one-out: delta_i = R_i - mean_{j != i} R_j = G/(G-1) (R_i - mean R).

    The baseline excludes the response itself, so the estimator is unbiased (Kool et al. 2019,
    Ahmadian et al. 2024). Needs G >= 2.
    """
    group_size = rewards.shape[-1]
    return centered(rewards, eps=eps, unbiased_std=unbiased_std) * (group_size / (group_size - 1))


@DELTAS.register("gpg", needs_group=True)
def gpg(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """GPG's corrected advantage (Chu et al. 2025, "GPG: A Simple and Strong Reinforcement Learning
    Baseline for Model Reasoning", arXiv:2504.02546; F_norm = 1, as verl's default):

        delta_i = alpha (R_i - mean_j R_j),      alpha = B / B_valid

    B_valid: the groups (rows) whose rewards are not all equal (at least 1). A group of equal
    rewards has deltas 0 and adds nothing to the gradient, but its tokens still count in a token
    mean; alpha scales the others back up, as if the batch held only groups with a signal.
    (verl's ``gpg`` estimator counts responses with a nonzero reward instead; this follows the
    paper.) Under ``process`` credit the rows are (prompt, position) pairs.
    """
    has_spread = rewards.max(dim=-1).values != rewards.min(dim=-1).values     # (B,)
    alpha = rewards.shape[0] / has_spread.sum().clamp(min=1)
    return alpha * centered(rewards, eps=eps, unbiased_std=unbiased_std)


# ---- positive and negative sample reinforcement (Zhu et al. 2025, "The Surprising Effectiveness of
# Negative Reinforcement in LLM Reasoning", arXiv:2506.01347). The paper splits REINFORCE on a
# verifier's reward into PSR, which raises the likelihood of the correct samples, and NSR, which lowers
# that of the incorrect ones; NSR alone keeps pass@k at large k, and W-REINFORCE = lambda PSR + NSR
# (lambda = 0.1) was their best. No baseline, no std: each response's delta depends on its reward
# alone. A reward R in [0, 1] counts as R of a correct sample and 1 - R of an incorrect one, so the
# deltas are linear in R and, for R in {0, 1}, exactly the paper's (and its code's,
# ``compute_psr_nsr_outcome_advantage``: A = R for PSR, R - 1 for NSR, lambda R or R - 1 weighted).
# Partial credit needs no threshold: R = 0.5 is half a success and half a failure. Rewards outside
# [0, 1] (shaping, a weighted sum of sources) extend the same lines. Under ``process`` credit R is the
# reward-to-go of a position. The paper's PSR and NSR runs drop the other samples from the batch; here
# they keep delta 0, and with it their place in a token mean's denominator.


@DELTAS.register("psr")
def psr(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """Positive sample reinforcement: delta = R (0/1 rewards: 1 for a correct sample, 0 otherwise)."""
    return rewards


@DELTAS.register("nsr")
def nsr(rewards: Tensor, *, eps: float, unbiased_std: bool) -> Tensor:
    """Negative sample reinforcement: delta = -(1 - R) (0/1 rewards: -1 for an incorrect sample, 0 otherwise).
    ``w-reinforce`` with positive_weight 0."""
    return rewards - 1


@DELTAS.register("w-reinforce", params=WReinforceParams)
def w_reinforce(rewards: Tensor, *, eps: float, unbiased_std: bool, positive_weight: float) -> Tensor:
    """W-REINFORCE, lambda PSR + NSR: delta = lambda R - (1 - R), lambda = ``positive_weight``
    (0/1 rewards: lambda for a correct sample, -1 for an incorrect one). lambda = 1 is REINFORCE on the
    +-1 reward 2R - 1; lambda = 0 is ``nsr``."""
    return positive_weight * rewards - (1 - rewards)


@DELTAS.register("gdpo", needs_group=True, needs_sources=True, params=NormParams)
def gdpo(rewards: Tensor, *, sources: Tensor, source_weights: Tensor, eps: float, unbiased_std: bool) -> Tensor:
    """GDPO, group reward-decoupled normalisation (Liu et al. 2026, NVIDIA, arXiv:2601.05242; the
    authors' TRL and verl code, verl ``compute_gdpo_outcome_advantage``). With sources r_ik (B, G, S)
    and weights w_k (S,):

        z_ik    = (r_ik - mean_j r_jk) / (std_j r_jk + eps)     each source within the prompt's group
        A_i     = sum_k w_k z_ik                                 the weighted sum of the z-scores
        delta_i = (A_i - mean A) / (std A + eps)                 over the whole batch (B * G responses)

    GRPO normalises the weighted sum sum_k w_k r_ik instead: two sources (0/1 each, weights 1) give
    the combinations (1, 0) and (0, 1) the same sum, so GRPO cannot tell them apart; z-scoring each
    source first keeps apart what the sum collapses. Each source's scale is removed, so the weights
    alone say how much a source counts. ``rewards`` (the weighted sum) is not read. std with N-1 by
    default (``unbiased_std``) and eps = ``norm_eps`` in both normalisations (the authors' TRL code:
    torch.std, eps 1e-4 in both; verl whitens the sum over tokens, not responses). With one source
    this is ``reinforce++`` applied to ``grpo``'s deltas.
    """
    per_source = normalized(sources.movedim(-1, -2), eps=eps, unbiased_std=unbiased_std)   # (B, S, G)
    combined = (source_weights.reshape(-1, 1) * per_source).sum(-2)                         # (B, G)
    return reinforce_plus_plus(combined, eps=eps, unbiased_std=unbiased_std)



SHARED_SETTINGS = frozenset(f.name for f in dataclasses.fields(NormParams))  # every mode's, as eps and unbiased_std


def mode_settings(mode: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The named mode's own settings: its params block's fields (but norm_eps and unbiased_std, which
    every mode takes as ``eps`` and ``unbiased_std``) at their defaults, overridden by ``given``
    (``options.own_settings``; a name that no mode declares is a TypeError)."""
    return own_settings(DELTAS, mode, given, caller="compute_deltas", shared=SHARED_SETTINGS)


def compute_deltas(rewards: Tensor, mode: str, *, eps: float = 1e-5, unbiased_std: bool = True,
                   settings: Mapping[str, Any] | None = None, sources: Tensor | None = None,
                   source_weights: Sequence[float] | Tensor | None = None,
                   pool: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """rewards (B, G) -> deltas (B, G) by the named mode (see ``DELTAS.names()``); ``settings``: the
    mode's own (``mode_settings``; its defaults for the rest). A mode registered with ``needs_sources``
    gets each reward source's own rewards ``sources`` (B, G, S) and their ``source_weights`` (S,) as
    well (``Rollouts.source_rewards``, ``rewards.source_weights``). ``pool``: the mean and std (B,) of
    each prompt's pool of responses (adaptive sampling), used by the mode's ``pooled`` form in place
    of the group's own (its std already taken with ``unbiased_std``)."""
    fn = DELTAS.get(mode)
    if pool is not None:
        pooled = DELTAS.meta(mode).get("pooled")
        if pooled is None:
            raise ConfigError(f"algo.deltas: {mode!r} has no form with a pool's statistics; adaptive sampling "
                              f"needs one of {', '.join(pooled_modes())}")
        mean, std = pool
        return pooled(rewards, mean=mean, std=std, eps=eps)  # type: ignore[operator]
    own = mode_settings(mode, settings)
    if not DELTAS.meta(mode).get("needs_sources"):
        return fn(rewards, eps=eps, unbiased_std=unbiased_std, **own)
    if sources is None or source_weights is None:
        raise ConfigError(f"algo.deltas: {mode!r} normalises each reward source on its own and was given "
                          "no per-source rewards")
    weights = torch.as_tensor(source_weights, dtype=sources.dtype)
    if sources.shape != (*rewards.shape, weights.numel()):
        raise ValueError(f"sources {tuple(sources.shape)} do not match rewards {tuple(rewards.shape)} "
                         f"and {weights.numel()} weights")
    return fn(rewards, sources=sources, source_weights=weights, eps=eps, unbiased_std=unbiased_std, **own)


def pooled_modes() -> list[str]:
    """The deltas modes with a ``pooled`` form (adaptive sampling works with these)."""
    return [name for name in DELTAS.names() if DELTAS.meta(name).get("pooled") is not None]
