"""Policy-gradient losses, per token. Minimising them ascends the expected delta-weighted objective.

Every loss maps
    logp (N, T)        log pi_theta(y_t | ...) of the current policy, with gradient
    old_logp (N, T)    log pi_old of the policy that sampled the batch -- a constant (no gradient)
    advantages (N, T)  the response's delta broadcast over its tokens (or per-token credit)
    mask (N, T)        1 on real response tokens
-> (per-token loss (N, T), detached metrics). Aggregation to a scalar is a separate step.

old_logp is always detached here. The notes' pitfall: differentiating through pi_old as well makes
the ratio of identical policies a constant 1 with zero gradient, so nothing learns.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlvr.registry import Registry

LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[LossFn] = Registry("policy loss")


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def ratio_metrics(log_ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """approx_kl = E[(r - 1) - log r] (k3 of pi_old vs pi_theta), as cleanrl logs it."""
    ratio = log_ratio.exp()
    return {
        "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, mask).detach(),
        "policy/ratio_mean": masked_mean(ratio, mask).detach(),
    }


@POLICY_LOSSES.register("naive")
def naive(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -A_t log pi_theta(y_t). The score-function estimator of the notes (REINFORCE).
    old_logp only feeds the metrics (how far the inner loop has moved from the sampling policy)."""
    return -advantages * logp, ratio_metrics(logp.detach() - old_logp.detach(), mask)


@POLICY_LOSSES.register("ratio")
def ratio(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -r_t A_t, r_t = pi_theta / pi_old = exp(logp - old_logp) (importance-weighted, unclipped).

    At pi_theta = pi_old, grad r_t = grad log pi_theta, so the first inner step equals ``naive``.
    """
    log_ratio = logp - old_logp.detach()
    return -log_ratio.exp() * advantages, ratio_metrics(log_ratio, mask)


@POLICY_LOSSES.register("clipped")
def clipped(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
            clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO/GRPO: l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t) (Schulman et al. 2017).

    The gradient is zero where the clipped term is the smaller one: r > 1 + eps_high with A > 0,
    or r < 1 - eps_low with A < 0. eps_high > eps_low is DAPO's clip-higher.
    """
    log_ratio = logp - old_logp.detach()
    r = log_ratio.exp()
    unclipped_obj = r * advantages
    clipped_obj = r.clamp(1 - clip_eps_low, 1 + clip_eps_high) * advantages
    loss = -torch.minimum(unclipped_obj, clipped_obj)
    is_clipped = (clipped_obj < unclipped_obj).to(logp.dtype)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    return loss, metrics


def policy_loss(name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_eps_low: float = 0.2, clip_eps_high: float = 0.2) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss (N, T) and metrics of the named loss (see ``POLICY_LOSSES.names()``)."""
    fn = POLICY_LOSSES.get(name)
    return fn(logp, old_logp, advantages, mask, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high)
