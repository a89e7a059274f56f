"""How a per-token loss (N, T) becomes one scalar. Chosen independently of the loss itself.

- ``token-mean``           sum_it l_it m_it / sum_it m_it           (every token weighs the same; DAPO)
- ``seq-mean-token-mean``  mean_i [ sum_t l_it m_it / sum_t m_it ]   (every response weighs the same; GRPO paper)
- ``seq-mean-token-sum``   mean_i [ sum_t l_it m_it ]               (the sum of log-probs = log pi(response))
- ``seq-sum-constant``     mean_i [ sum_t l_it m_it ] / C           (Dr. GRPO: C a fixed constant,
                                                                     by default the maximum response length)
Padding (m = 0) never contributes to the value or the gradient, whatever the loss holds there
(inf and NaN included): padded positions are selected away (``torch.where``) before any product,
because masking by multiplication turns ``inf * 0`` into NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.options import opt
from rlvr.registry import Registry

AGGREGATIONS: Registry[Callable[..., Tensor]] = Registry("aggregation")


@dataclass
class ConstantParams:
    """The setting of ``seq-sum-constant``."""

    aggregation_constant: float | None = opt(None, "seq-sum-constant divisor (default: response length)", gt=0.0)


def masked(values: Tensor, mask: Tensor) -> Tensor:
    """values (..., T) with every position where ``mask`` is 0 set to exactly 0, and the rest weighted
    by the mask. A selection, not a product: garbage (inf, NaN) on padding never reaches the value,
    and the gradient there is exactly 0."""
    return torch.where(mask != 0, values, torch.zeros((), dtype=values.dtype)) * mask


@AGGREGATIONS.register("token-mean")
def token_mean(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return masked(loss, mask).sum() / mask.sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    per_seq = masked(loss, mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


@AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return masked(loss, mask).sum(-1).mean()


@AGGREGATIONS.register("seq-sum-constant", params=ConstantParams)
def seq_sum_constant(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return masked(loss, mask).sum(-1).mean() / constant


def aggregate(loss: Tensor, mask: Tensor, mode: str, *, constant: float = 1.0) -> Tensor:
    """loss (N, T), mask (N, T) -> scalar by the named mode (see ``AGGREGATIONS.names()``)."""
    return AGGREGATIONS.get(mode)(loss, mask.to(loss.dtype), constant=constant)
