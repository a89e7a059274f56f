"""Policy-gradient losses, per token. Minimising them ascends the expected delta-weighted objective.

Every loss maps
    logp (N, T)        log pi_theta(y_t | ...) of the current policy, with gradient
    old_logp (N, T)    log pi_old of the policy that sampled the batch -- a constant (no gradient)
    advantages (N, T)  the response's delta broadcast over its tokens (or per-token credit)
    mask (N, T)        1 on real response tokens
-> (per-token loss (N, T), detached metrics). Aggregation to a scalar is a separate step.

old_logp is always detached here. The notes' pitfall: differentiating through pi_old as well makes
the ratio of identical policies a constant 1 with zero gradient, so nothing learns.

Padding is inert whatever it holds: ``policy_loss`` sets logp, old_logp and advantages to 0 on
padded positions (a ``torch.where`` selection, so the gradient there is exactly 0) before any
formula runs, and every ratio is exp of a log-ratio clamped to [-20, 20] (as verl clamps it):
r = exp(log r) is at most e^20 ~ 5e8, never inf, and a token past the clamp gets no gradient
through its ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.options import opt
from rlvr.registry import Registry

LOG_RATIO_LIMIT = 20.0  # |log r| beyond this is clamped before exp (verl: the same 20)
LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[LossFn] = Registry("policy loss")


@dataclass
class ClipParams:
    """The settings of the losses that clip a ratio (``params=ClipParams`` below)."""

    clip_eps_low: float = opt(0.2, "clipped losses: lower bound 1 - eps_low on the ratio", ge=0.0, le=1.0)
    clip_eps_high: float | None = opt(None, "clipped losses: upper bound 1 + eps_high (default: eps_low)", ge=0.0)


@dataclass
class DualClipParams(ClipParams):
    dual_clip_c: float = opt(3.0, "dual-clip loss: bound c |A| on the loss of negative-advantage tokens", gt=1.0)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return masked(values, mask).sum() / mask.sum().clamp(min=1)


def log_ratio_of(logp: Tensor, old_logp: Tensor) -> Tensor:
    """log r = log pi_theta - log pi_old (old detached), clamped to [-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT]."""
    return (logp - old_logp.detach()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


def ratio_metrics(log_ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """approx_kl = E[(r - 1) - log r] (k3 of pi_old vs pi_theta), as cleanrl logs it."""
    ratio = log_ratio.exp()
    return {
        "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, mask).detach(),
        "policy/ratio_mean": masked_mean(ratio, mask).detach(),
    }


def clip_objective(ratio: Tensor, advantages: Tensor, *, clip_eps_low: float,
                   clip_eps_high: float) -> tuple[Tensor, Tensor]:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) and where the clipped term won (float 0/1)."""
    unclipped_obj = ratio * advantages
    clipped_obj = ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high) * advantages
    return -torch.minimum(unclipped_obj, clipped_obj), (clipped_obj < unclipped_obj).to(ratio.dtype)


@POLICY_LOSSES.register("naive")
def naive(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -A_t log pi_theta(y_t). The score-function estimator of the notes (REINFORCE).
    old_logp only feeds the metrics (how far the inner loop has moved from the sampling policy)."""
    return -advantages * logp, ratio_metrics(log_ratio_of(logp.detach(), old_logp), mask)


@POLICY_LOSSES.register("ratio")
def ratio(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -r_t A_t, r_t = pi_theta / pi_old = exp(logp - old_logp) (importance-weighted, unclipped).

    At pi_theta = pi_old, grad r_t = grad log pi_theta, so the first inner step equals ``naive``.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    return -log_ratio.exp() * advantages, ratio_metrics(log_ratio, mask)


@POLICY_LOSSES.register("clipped", params=ClipParams)
def clipped(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
            clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO/GRPO: l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t) (Schulman et al. 2017).

    The gradient is zero where the clipped term is the smaller one: r > 1 + eps_high with A > 0,
    or r < 1 - eps_low with A < 0. eps_high > eps_low is DAPO's clip-higher.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    loss, is_clipped = clip_objective(log_ratio.exp(), advantages, clip_eps_low=clip_eps_low,
                                      clip_eps_high=clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    return loss, metrics


@POLICY_LOSSES.register("dual-clip", params=DualClipParams)
def dual_clip(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
              clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clip, and on negative-advantage tokens a bound c |A_t| on the loss (Ye et al. 2020,
    "Mastering Complex Control in MOBA Games", dual-clip PPO; verl ``clip_ratio_c``, default 3):

        l_t = l^clip_t                      if A_t >= 0
        l_t = min(l^clip_t, -c A_t)         if A_t < 0     (c > 1)

    With A < 0 the clipped loss is |A| max(r, clip(r)), unbounded in r: one token the old policy
    found unlikely but the current one likes (r >> 1) could dominate the batch. Beyond r = c the
    loss is the constant c |A|, with zero gradient.
    """
    loss, metrics = clipped(logp, old_logp, advantages, mask, clip_eps_low=clip_eps_low,
                            clip_eps_high=clip_eps_high, dual_clip_c=dual_clip_c)
    bound = -dual_clip_c * advantages
    is_negative = advantages < 0
    metrics["policy/dual_clip_frac"] = masked_mean((is_negative & (loss > bound)).to(logp.dtype), mask).detach()
    return torch.where(is_negative, torch.minimum(loss, bound), loss), metrics


def sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """(N, T) per-token log pi_theta/pi_old -> (N, 1) mean over each response's real tokens."""
    return masked(log_ratio, mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)


@POLICY_LOSSES.register("gspo", params=ClipParams)
def gspo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
         clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"): one ratio per response,

        s_i = (pi_theta(y_i) / pi_old(y_i))^(1/|y_i|) = exp( mean_t log r_it )
        l_i = -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)

    written per token as in the paper's GSPO-token form (and verl's ``gspo`` loss):
    s_it = sg[s_i] * pi_theta(y_it) / sg[pi_theta(y_it)] has the value s_i at every token and the
    gradient s_i grad log pi(y_it), so with ``seq-mean-token-mean`` aggregation the loss and its
    gradient are exactly those of mean_i l_i. A per-token A_it gives GSPO-token. The paper's clip
    range is tiny (eps_low 3e-4, eps_high 4e-4) because s_i is a per-token geometric mean.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    seq_log_ratio = sequence_log_ratio(log_ratio, mask)                        # (N, 1)
    s = (seq_log_ratio.detach() + logp - logp.detach()).exp()                  # (N, T), value s_i
    loss, is_clipped = clip_objective(s, advantages, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    metrics["policy/seq_ratio_mean"] = seq_log_ratio.detach().exp().mean()
    return loss, metrics


@POLICY_LOSSES.register("cispo", params=ClipParams)
def cispo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1 report, 2025): the clipped ratio is a stop-gradient WEIGHT on log pi,

        l_t = -sg[ clip(r_t, 1 - eps_low, 1 + eps_high) ] A_t log pi_theta(y_t)

    Unlike PPO's clip, no token loses its gradient: a clipped token still contributes
    clip(r) A grad log pi, only with a bounded weight. Inside the range the gradient is
    r A grad log pi = A grad r, the same as ``ratio``. (MiniMax uses no lower bound: eps_low = 1.)
    """
    log_ratio = log_ratio_of(logp.detach(), old_logp)
    r = log_ratio.exp()
    weight = r.clamp(1 - clip_eps_low, 1 + clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean((weight != r).to(logp.dtype), mask).detach()
    return -weight * advantages * logp, metrics


def policy_loss(name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_eps_low: float = 0.2, clip_eps_high: float = 0.2,
                dual_clip_c: float = 3.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss (N, T) and metrics of the named loss (see ``POLICY_LOSSES.names()``).
    Padded positions (mask 0) enter every formula as logp = old_logp = advantage = 0, whatever
    they held, so their loss is exactly 0 and no inf or NaN there can reach the value or a gradient."""
    fn = POLICY_LOSSES.get(name)
    real = mask != 0
    logp, old_logp, advantages = (torch.where(real, x, torch.zeros((), dtype=x.dtype))
                                  for x in (logp, old_logp, advantages))
    return fn(logp, old_logp, advantages, mask, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high,
              dual_clip_c=dual_clip_c)
