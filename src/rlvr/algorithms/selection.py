"""Token selection: the tokens of a batch that the policy-gradient term trains on.

High-entropy minority tokens (Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens
Drive Effective Reinforcement Learning for LLM Reasoning", arXiv:2506.01939): in chain-of-thought
only a minority of tokens are "forks" where the policy is unsure what comes next; the paper trains
on the top 20 % of the batch's tokens by entropy and matches or beats training on all of them.
``algo.top_entropy_quantile`` = q is TRL's ``GRPOConfig.top_entropy_quantile``:

    H_it = -sum_v pi_old(v | x_i, y_i,<t) log pi_old(v | x_i, y_i,<t)      (N, T) entropy of each position
    tau  = Quantile_{1-q}( {H_it : m_it = 1} )                              one threshold for the batch
    s_it = 1[H_it >= tau] m_it                                              (N, T) the selected tokens
    J    = sum_it w_it s_it l_it          w = the aggregation's weights over m, the same as without selection

- pi_old is the learner before the inner loop (one no-grad forward per batch, the rollout correction's
  one when that is on), so the selection is a constant of the batch: every inner step, micro-batch and
  ``train.skip_flat_groups`` slice trains on the tokens the whole batch selected. TRL instead takes
  H from pi_theta in each loss call (per micro-batch, gathered over processes).
- The quantile is over the batch's valid (m = 1) tokens only; padding is never selected. Linear
  interpolation between order statistics (``torch.quantile``'s default, which TRL's
  ``get_high_entropy_mask`` calls): with the n valid entropies sorted h_(0) <= ... <= h_(n-1),
  p = (1 - q)(n - 1) and tau = h_(floor p) + (p - floor p)(h_(ceil p) - h_(floor p)). Without ties
  exactly n - ceil(p) >= 1 tokens are selected; tokens tied at tau are all selected (TRL's >=);
  q = 1 gives tau = min H, every valid token.
- Unselected tokens stay in the aggregation's denominator, with loss 0: TRL multiplies the per-token
  loss by the mask and divides by the completion mask (``get_high_entropy_mask``), and the paper's
  objective keeps 1 / sum_i |o_i| over all tokens. The gradient is then about q times the full
  one's in size (token-mean). Only the policy-gradient term is selected; the KL and entropy terms
  see every token (TRL adds the KL after the mask).

Shapes as in ``rlvr.algorithms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.options import opt


@dataclass
class SelectionParams:
    """The token selection's setting (``algo.top_entropy_quantile``)."""

    top_entropy_quantile: float = opt(1.0, "train the policy-gradient term only on the tokens whose entropy "
                                      "under pi_old is in the top q fraction of the batch's valid tokens "
                                      "(Wang et al. 2025: 0.2; 1: every token); the others keep their place "
                                      "in the aggregation's denominator", gt=0.0, le=1.0)


def at_least_float32(entropy: Tensor) -> Tensor:
    """Detached, and in float32 unless finer (a bf16 forward's entropies are compared in float32)."""
    return entropy.detach().to(torch.promote_types(entropy.dtype, torch.float32))


def entropy_threshold(entropy: Tensor, mask: Tensor, *, top_quantile: float) -> Tensor:
    """tau (a scalar): the (1 - q) quantile of ``entropy`` (N, T) over the positions where ``mask`` is
    not 0, by linear interpolation between order statistics; +inf when there is none."""
    values = at_least_float32(entropy)[mask != 0].sort().values               # (n,) valid tokens only
    if values.numel() == 0:
        return torch.tensor(math.inf)
    position = (1.0 - top_quantile) * (values.numel() - 1)
    low, high = values[math.floor(position)], values[math.ceil(position)]
    # never above h_(ceil p), so rounding cannot drop the order statistic the formula keeps
    return torch.minimum(low + (position - math.floor(position)) * (high - low), high)


def high_entropy_tokens(entropy: Tensor, mask: Tensor, *, top_quantile: float) -> Tensor:
    """s (N, T): 1 on the valid tokens whose entropy is >= tau = ``entropy_threshold``, 0 elsewhere
    (padding always 0), in the mask's dtype. Detached: a constant of the batch."""
    tau = entropy_threshold(entropy, mask, top_quantile=top_quantile)
    selected = (mask != 0) & (at_least_float32(entropy) >= tau)
    return selected.to(mask.dtype)


def selection_metrics(selection: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """``policy/selected_token_frac``: the share of the loss tokens (``mask``) that are selected."""
    return {"policy/selected_token_frac": masked(selection, mask).sum() / mask.sum().clamp(min=1)}
