"""Live variance diagnostics, cheap enough to log every outer step.

- Gradient agreement of two halves of the batch (each group's even and odd responses), taken at
  the policy that sampled it, before the inner loop, with the trainer's gradient correction (a
  per-parameter baseline) applied, so it measures the estimator the optimizer actually uses. With h1, h2 the half-batch gradients of the
  policy loss and N responses, h1 . h2 estimates |grad|^2 without bias (the halves are independent
  draws) and |h1 - h2|^2 / 4 estimates tr Cov / N, so
      diag/grad_cos_halves   cos(h1, h2): near 1 when the batch pins down the direction, near 0 when
                             it is mostly noise
      diag/grad_noise_scale  B_noise = tr Cov / |grad|^2 = N |h1 - h2|^2 / (4 h1 . h2), the batch size
                             (in responses) at which noise and signal are equal (McCandlish et al.
                             2018); null when h1 . h2 <= 0 (the signal is not resolved)
  Group deltas couple the halves a little (a response's baseline uses its group-mates), so these
  are diagnostics, not exact estimates.
- diag/ratio_ess_frac: effective sample size of the sequence-level importance ratios
  w_n = pi_theta(y_n) / pi_old(y_n) after the inner loop, (sum w)^2 / (N sum w^2), in (0, 1]:
  1 while the policy is still the one that sampled the batch, small when a few responses dominate.
The share of groups whose rewards are all equal is train/zero_std_frac (logged by the trainer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.logprobs import sequence_logprob
from rlvr.policies import Policy


def half_batch(batch: Any, parity: int) -> Any:
    """The batch with only the responses n with n % 2 == parity kept (masked, shapes unchanged)."""
    r = batch.rollouts
    keep = (torch.arange(r.mask.shape[0]) % 2 == parity).to(r.mask.dtype).unsqueeze(-1)   # (N, 1)
    return dataclasses.replace(batch, rollouts=dataclasses.replace(r, mask=r.mask * keep),
                               advantages=batch.advantages * keep)


def batch_gradient(policy: Policy, batch: Any, loss_of: Callable[[Any], Tensor], correction: Callable[..., Any]) -> Tensor:
    """The flat gradient the optimizer would see for ``batch``: backward of the policy loss, then the
    trainer's gradient correction (a per-parameter baseline, or nothing). Leaves .grad cleared."""
    params = [p for p in policy.parameters() if p.requires_grad]
    policy.zero_grad(set_to_none=True)
    loss_of(batch).backward()
    correction(policy, batch, loss_of)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    policy.zero_grad(set_to_none=True)
    return flat


def gradient_agreement(policy: Policy, batch: Any, loss_of: Callable[[Any], Tensor],
                       correction: Callable[..., Any]) -> dict[str, float | None]:
    """Cosine of the two half-batch gradients and the gradient noise scale (see module doc)."""
    num_responses = batch.rollouts.mask.shape[0]
    if num_responses < 2:
        return {}
    h1, h2 = (batch_gradient(policy, half_batch(batch, parity), loss_of, correction).double() for parity in (0, 1))
    signal = float(h1 @ h2)
    noise = float((h1 - h2).square().sum()) / 4
    norms = float(h1.norm() * h2.norm())
    return {"diag/grad_cos_halves": signal / norms if norms > 0 else None,
            "diag/grad_noise_scale": num_responses * noise / signal if signal > 0 else None}


@torch.no_grad()
def importance_ess(policy: Policy, batch: Any, *, temperature: float) -> dict[str, float]:
    """Normalized ESS of the sequence-level ratios pi_theta / pi_old (see module doc)."""
    r = batch.rollouts
    logp, _ = policy.logprobs(r.prompt_ids, r.response_ids, r.context_mask, group_size=r.group_size,
                              temperature=temperature)
    return {"diag/ratio_ess_frac": float(ess_fraction(sequence_logprob(logp - r.logprobs, r.mask)))}


def ess_fraction(log_weights: Tensor) -> Tensor:
    """log w (N,) -> (sum w)^2 / (N sum w^2), computed stably."""
    w = (log_weights - log_weights.max()).exp()
    return w.sum().square() / (w.numel() * w.square().sum())
