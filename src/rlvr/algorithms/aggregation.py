"""How a per-token loss (N, T) becomes one scalar. Chosen independently of the loss itself.

- ``token-mean``           sum_it l_it m_it / sum_it m_it           (every token weighs the same; DAPO)
- ``seq-mean-token-mean``  mean_i [ sum_t l_it m_it / sum_t m_it ]   (every response weighs the same; GRPO paper)
- ``seq-mean-token-sum``   mean_i [ sum_t l_it m_it ]               (the sum of log-probs = log pi(response))
- ``seq-sum-constant``     mean_i [ sum_t l_it m_it ] / C           (Dr. GRPO: C a fixed constant,
                                                                     by default the maximum response length)
Padding (m = 0) never contributes to the value or the gradient.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from rlvr.registry import Registry

AGGREGATIONS: Registry[Callable[..., Tensor]] = Registry("aggregation")


@AGGREGATIONS.register("token-mean")
def token_mean(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return (loss * mask).sum() / mask.sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


@AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return (loss * mask).sum(-1).mean()


@AGGREGATIONS.register("seq-sum-constant")
def seq_sum_constant(loss: Tensor, mask: Tensor, *, constant: float) -> Tensor:
    return (loss * mask).sum(-1).mean() / constant


def aggregate(loss: Tensor, mask: Tensor, mode: str, *, constant: float = 1.0) -> Tensor:
    """loss (N, T), mask (N, T) -> scalar by the named mode (see ``AGGREGATIONS.names()``)."""
    return AGGREGATIONS.get(mode)(loss, mask.to(loss.dtype), constant=constant)
