"""Off-policy correction: when the sampler is not the learner.

The policy that drew a batch and the learner that trains on it can disagree about the same tokens:
the Ray backend's one-step-off-policy mode samples batch k+1 with the weights from before step k
(``distributed.off_policy``), and an inference engine (vLLM, SGLang, a bf16 sampler) computes the
probabilities of the same weights with other kernels. Three policies are then in play, as in
decoupled PPO (Hilton, Cobbe & Schulman 2021, "Batch size-invariance for policy optimization"):

    pi_sampler   drew the tokens; its log-probs are the ones it recorded (``Rollouts.logprobs``)
    pi_old       the learner's own weights before the inner loop (one no-grad forward per batch):
                 the proximal policy that the loss's ratio r = pi_theta / pi_old and clip are around
    pi_theta     the learner in the inner loop (with gradient)

and the per-token loss l_t(r_t) of any ``POLICY_LOSSES`` entry is weighted by a constant c_t that
accounts for the sampler/learner gap w_t = pi_old(y_t) / pi_sampler(y_t):

    log w_t = log pi_old(y_t) - log pi_sampler(y_t)      (N, T), clamped to +-LOG_RATIO_LIMIT
    loss_t  = c_t * l_t(pi_theta / pi_old)                c_t detached, computed once per batch

Unclipped, c = w makes E_sampler[c grad l] the gradient at the learner's own distribution; the
entries bound it (bias for variance), each as its source defines it, with W_i = prod_t w_it =
exp(sum_t log w_it) over response i's real tokens:

    tis-token  c_t  = min(w_t, C)                       truncated IS: Yao et al. 2025, "Your efficient
                                                        RL framework secretly brings you off-policy RL
                                                        training" (TIS); verl rollout_is=token
    tis-seq    c_it = min(W_i, C)                       verl rollout_is=sequence
    mis-token  c_t  = w_t if 1/C <= w_t <= C, else 0    masked IS: Liu et al. 2025, "When speed kills
    mis-seq    c_it = W_i if 1/C <= W_i <= C, else 0    stability" (MIS: w 1[w <= C]); the lower bound
                                                        1/C as verl's rejection sampling sets it
    seq-mask   c_it = 0 if A_it < 0 and D_i > delta, else 1,   D_i = mean_t log(pi_sampler / pi_old)
               DeepSeek-V3.2 (DeepSeek-AI 2025), "off-policy sequence masking": a response the
               learner finds much less likely than the sampler did (D_i, the k1 estimate of
               KL(pi_sampler || pi_old) per token) is not pushed down further; positive ones stay.
               DeepSeek measures D_i against pi_theta at each step; here against pi_old, once per
               batch, so the mask is a constant of the batch like every other c.

C = ``algo.correction_cap``, delta = ``algo.correction_delta``. A masked token keeps its place in
the aggregation's denominator (its loss is 0): DeepSeek-V3.2's M_it does so, verl's rejection
sampling drops it from the response mask instead. Kept, c is a fixed weight on each token's loss,
so slices of the batch still add up to the whole (``rlvr.batching``), and a sequence weight, the
same on all of a response's tokens, cuts with whole groups. ``none`` skips the extra forward: pi_old
is the sampler's own log-probs, so r = pi_theta / pi_sampler carries the staleness and the mismatch
together, inside the loss's clip (verl's "bypass" mode; rlvr before this module).

Padding is inert: both log-probs are set to 0 there before any formula (w = 1), and c is 0 there.
Shapes as in ``rlvr.algorithms``; the sequence sums are over ``mask``, the sampled responses' real
tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.losses import LOG_RATIO_LIMIT, masked_mean, sequence_log_ratio
from rlvr.options import opt, own_settings
from rlvr.registry import Registry

CorrectionFn = Callable[..., Tensor]
ROLLOUT_CORRECTIONS: Registry[CorrectionFn] = Registry("rollout correction")


@dataclass
class CapParams:
    """The cap of the importance-sampling corrections (tis-*, mis-*)."""

    correction_cap: float = opt(2.0, "tis/mis rollout correction: C, the bound on the sampler/learner weight w "
                                "(tis: min(w, C); mis: w kept inside [1/C, C], 0 outside)", gt=1.0)


@dataclass
class SeqMaskParams:
    """DeepSeek-V3.2's threshold."""

    correction_delta: float = opt(0.1, "seq-mask rollout correction: delta; a negative-advantage response whose "
                                  "mean log(pi_sampler / pi_old) per token exceeds it is left out of the loss",
                                  gt=0.0)


def truncated(log_weight: Tensor, cap: float) -> Tensor:
    """min(w, C) = exp(min(log w, log C)): never overflows, however large log w."""
    return log_weight.clamp(max=math.log(cap)).exp()


def inside_band(log_weight: Tensor, cap: float) -> Tensor:
    """w where 1/C <= w <= C, else exactly 0 (a selection: exp is only taken inside the band)."""
    bound = math.log(cap)
    kept = log_weight.abs() <= bound
    return torch.where(kept, log_weight.clamp(-bound, bound).exp(), torch.zeros((), dtype=log_weight.dtype))


def sequence_log_weight(log_weight: Tensor, mask: Tensor) -> Tensor:
    """(N, T) -> (N, 1): log W_i = sum_t log w_it over response i's real tokens."""
    return masked(log_weight, mask).sum(-1, keepdim=True)


@ROLLOUT_CORRECTIONS.register("none", decoupled=False)
def no_correction(log_weight: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """No learner forward and no weight (c = 1): the loss's pi_old is the sampler's log-probs.
    ``rollout_correction`` returns before calling it (``decoupled=False``)."""
    return torch.ones_like(log_weight)


@ROLLOUT_CORRECTIONS.register("tis-token", params=CapParams)
def tis_token(log_weight: Tensor, advantages: Tensor, mask: Tensor, *, correction_cap: float) -> Tensor:
    """c_t = min(w_t, C) (Yao et al. 2025)."""
    return truncated(log_weight, correction_cap)


@ROLLOUT_CORRECTIONS.register("tis-seq", params=CapParams)
def tis_seq(log_weight: Tensor, advantages: Tensor, mask: Tensor, *, correction_cap: float) -> Tensor:
    """c_it = min(W_i, C), W_i = prod_t w_it: one weight per response, on all its tokens."""
    return truncated(sequence_log_weight(log_weight, mask), correction_cap).expand_as(log_weight)


@ROLLOUT_CORRECTIONS.register("mis-token", params=CapParams)
def mis_token(log_weight: Tensor, advantages: Tensor, mask: Tensor, *, correction_cap: float) -> Tensor:
    """c_t = w_t inside [1/C, C], 0 outside (Liu et al. 2025's masked IS, two-sided)."""
    return inside_band(log_weight, correction_cap)


@ROLLOUT_CORRECTIONS.register("mis-seq", params=CapParams)
def mis_seq(log_weight: Tensor, advantages: Tensor, mask: Tensor, *, correction_cap: float) -> Tensor:
    """c_it = W_i inside [1/C, C], 0 outside: a response is kept, with its weight, or left out whole."""
    return inside_band(sequence_log_weight(log_weight, mask), correction_cap).expand_as(log_weight)


@ROLLOUT_CORRECTIONS.register("seq-mask", params=SeqMaskParams)
def seq_mask(log_weight: Tensor, advantages: Tensor, mask: Tensor, *, correction_delta: float) -> Tensor:
    """c_it = 0 where A_it < 0 and D_i = mean_t log(pi_sampler / pi_old) > delta, else 1 (DeepSeek-V3.2)."""
    divergence = -sequence_log_ratio(log_weight, mask)                         # (N, 1) D_i
    dropped = (advantages < 0) & (divergence > correction_delta)               # (N, T)
    return (~dropped).to(log_weight.dtype)


def log_weight_of(old_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> Tensor:
    """log w = log pi_old - log pi_sampler (N, T), 0 on padding whatever it holds, clamped to
    +-LOG_RATIO_LIMIT as every log-ratio of the losses is."""
    real = mask != 0
    zero = torch.zeros((), dtype=old_logp.dtype)
    return torch.where(real, old_logp - sampler_logp, zero).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT).detach()


def correction_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The named correction's own settings: its params block's defaults, overridden by ``given``;
    another correction's setting is left out, a name no correction declares is a TypeError
    (``options.own_settings``)."""
    return own_settings(ROLLOUT_CORRECTIONS, name, given, caller="rollout_correction")


def rollout_correction(name: str, sampler_logp: Tensor, learner_logp: Callable[[], Tensor], advantages: Tensor,
                       mask: Tensor, **settings: Any) -> tuple[Tensor | None, Tensor | None]:
    """(pi_old of the loss's ratio (N, T), the weights c (N, T)), both constants, by the named
    correction (``ROLLOUT_CORRECTIONS.names()``) with its ``settings``; (None, None) for ``none``:
    the ratio is against ``sampler_logp`` and every weight is 1. ``learner_logp`` computes the
    learner's log-probs of the sampled tokens (no grad); only a decoupled correction calls it."""
    fn = ROLLOUT_CORRECTIONS.get(name)
    if not ROLLOUT_CORRECTIONS.meta(name).get("decoupled", True):
        return None, None
    old_logp = learner_logp().detach()
    log_weight = log_weight_of(old_logp, sampler_logp, mask)
    weights = fn(log_weight, advantages, mask, **correction_settings(name, settings))
    return old_logp, torch.where(mask != 0, weights, torch.zeros((), dtype=weights.dtype)).detach()


def correction_metrics(old_logp: Tensor, sampler_logp: Tensor, weights: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Means over the loss tokens (``mask``): ``policy/sampler_kl``, k3 = (w - 1) - log w, an unbiased
    estimate from the sampler's tokens of KL(pi_sampler || pi_old) per token (Schulman 2020);
    ``policy/correction_weight_mean``, the mean c; ``policy/correction_masked_frac``, the share with c = 0."""
    log_weight = log_weight_of(old_logp, sampler_logp, mask)
    return {
        "policy/sampler_kl": masked_mean(log_weight.exp() - 1 - log_weight, mask),
        "policy/correction_weight_mean": masked_mean(weights, mask),
        "policy/correction_masked_frac": masked_mean((weights == 0).to(weights.dtype), mask),
    }
