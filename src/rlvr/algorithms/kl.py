"""Per-token estimators of KL(pi_theta || pi_ref) from tokens sampled by pi_theta.

With log r = log pi_ref(y) - log pi_theta(y) (J. Schulman, "Approximating KL divergence", 2020):
    k1 = -log r                  unbiased, high variance, can be negative
    k2 = (log r)^2 / 2           biased, low variance, >= 0
    k3 = (r - 1) - log r         unbiased, low variance, >= 0 -- the notes' q/p - log(q/p) - 1
pi_ref is a frozen copy (its log-probs are constants); the gradient flows through pi_theta only.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

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
    log_r = ref_logp.detach() - logp
    return log_r.exp() - 1 - log_r


def kl_penalty(name: str, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL estimate (N, T) by the named estimator (see ``KL_ESTIMATORS.names()``)."""
    return KL_ESTIMATORS.get(name)(logp, ref_logp)
