"""Per-token estimators of KL(pi_theta || pi_ref) from tokens sampled by pi_theta.

With log r = log pi_ref(y) - log pi_theta(y) (J. Schulman, "Approximating KL divergence", 2020):
    k1 = -log r                  unbiased, high variance, can be negative
    k2 = (log r)^2 / 2           biased, low variance, >= 0
    k3 = (r - 1) - log r         unbiased, low variance, >= 0 -- the notes' q/p - log(q/p) - 1
pi_ref is a frozen copy (its log-probs are constants); the gradient flows through pi_theta only.
k3 exponentiates log r clamped above at 20 (the policy losses clamp their log-ratio at the same
bound), so a token the reference finds far likelier gives a large finite value, never inf. Only
the side where exp overflows is clamped (verl clamps both): a policy far likelier than the
reference (log r << 0) keeps k3 ~ -log r and its full pull back towards the reference. Given a mask, ``kl_penalty``
sets both log-probs to 0 on padding first: whatever padding holds, its KL is exactly 0.

Where the KL goes, and how strongly:
- in the loss: beta * aggregate(k(logp, ref_logp)), optionally with the value of one estimator and
  the gradient of another (``kl_penalty(..., grad_name="k2")``);
- in the reward: R_i <- R_i - beta * sum_t k(old_logp_it, ref_logp_it), before the deltas
  (``kl_shaped_rewards``; k1 there is the classic choice of Ziegler et al. 2019 / InstructGPT);
- beta fixed, or adapted towards a target KL (``adaptive_kl_coef``, Ziegler et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.losses import LOG_RATIO_LIMIT
from rlvr.registry import Registry

KL_ESTIMATORS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp.detach()


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (ref_logp.detach() - logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    log_r = (ref_logp.detach() - logp).clamp(max=LOG_RATIO_LIMIT)
    return log_r.exp() - 1 - log_r


def kl_penalty(name: str, logp: Tensor, ref_logp: Tensor, *, mask: Tensor | None = None,
               grad_name: str | None = None) -> Tensor:
    """Per-token KL estimate (N, T) by the named estimator (see ``KL_ESTIMATORS.names()``); with a
    mask (N, T), exactly 0 on padding (the log-probs there are replaced by 0 before any formula).

    ``grad_name`` gives the value of ``name`` with the gradient of ``grad_name``:
        value.detach() + (g - g.detach())
    e.g. k3's value (unbiased, >= 0, what is logged and weighed) with k2's gradient
    (log(pi/pi_ref) grad log pi, whose expectation is the exact gradient of KL(pi || pi_ref); the
    gradient of k3 itself is not, Tang & Munos 2025 "On a few pitfalls in KL divergence gradient
    estimation for RL"; verl's ``kl_loss_type`` "k3+" option).
    """
    if mask is not None:
        real = mask != 0
        logp, ref_logp = (torch.where(real, x, torch.zeros((), dtype=x.dtype)) for x in (logp, ref_logp))
    value = KL_ESTIMATORS.get(name)(logp, ref_logp)
    if grad_name is None or grad_name == name:
        return value
    grad_source = KL_ESTIMATORS.get(grad_name)(logp, ref_logp)
    return value.detach() + (grad_source - grad_source.detach())


def token_kl(old_logp: Tensor, ref_logp: Tensor, mask: Tensor, *, estimator: str) -> Tensor:
    """KL in the reward, per token: k(y_it) (N, T) of the sampling policy vs the reference, 0 on
    padding, a constant. The reward side subtracts beta times it: summed over the response for the
    outcome reward (``kl_shaped_rewards``), per token for process credit (``credit.shaped_token_rewards``)."""
    return masked(kl_penalty(estimator, old_logp.detach(), ref_logp, mask=mask), mask).detach()


def kl_shaped_rewards(rewards: Tensor, old_logp: Tensor, ref_logp: Tensor, mask: Tensor, *,
                      coef: float, estimator: str) -> tuple[Tensor, Tensor]:
    """KL in the reward: R_i - beta * sum_t k(y_it) for rewards (B, G) and (N, T) log-probs of the
    sampling policy and the reference. Returns (shaped rewards (B, G), sequence KL (N,)); all
    constants, computed once per batch before the deltas. With k1 the sequence sum is
    log pi_old(y_i) / pi_ref(y_i), an unbiased estimate of KL(pi_old || pi_ref)."""
    seq_kl = token_kl(old_logp, ref_logp, mask, estimator=estimator).sum(-1)  # (N,)
    return rewards - coef * seq_kl.reshape(rewards.shape), seq_kl


def adaptive_kl_coef(coef: float, observed_kl: float, *, target: float, horizon: int,
                     num_samples: int) -> float:
    """Ziegler et al. 2019 ("Fine-tuning language models from human preferences"; TRL's
    ``AdaptiveKLController``): a proportional controller on log beta,

        e = clip(KL / KL_target - 1, -0.2, 0.2)        beta <- beta * (1 + e * n / horizon)

    n = samples in the batch. KL above target raises beta, below lowers it, at most by a factor
    1 +- 0.2 n / horizon per step."""
    error = min(max(observed_kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * num_samples / horizon)
