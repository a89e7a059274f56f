"""Per-token log-probabilities and entropies of sampled responses.

The notes: "compute the log-probability of each sampled token sequence by indexing model logits at
the chosen token indices". The log-softmax is never materialised: log p(y_t) = z[y_t] - logsumexp(z).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """logits (..., T, V), tokens (..., T) -> log pi(token_t | context) (..., T)."""
    chosen = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: Tensor) -> Tensor:
    """logits (..., T, V) -> entropy of each position's distribution (..., T), in nats."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def logit_score_norm(logits: Tensor, tokens: Tensor) -> Tensor:
    """logits (..., T, V), tokens (..., T) -> the squared norm of each token's score at its logits
    (..., T), from the forward pass alone (the Logit-Gradient Proxy of Li et al. 2026, arXiv:2602.07078):

        ||d log softmax(z)[y] / d z||^2 = ||onehot(y) - p||^2 = 1 - 2 p_y + sum_v p_v^2
                                        = (1 - p_y)^2 + (sum_v p_v^2 - p_y^2)

    written as the last line, two terms >= 0, so rounding never makes it negative (p_y near 1)."""
    probs = torch.softmax(logits, dim=-1)
    chosen = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return (1 - chosen) ** 2 + ((probs ** 2).sum(-1) - chosen ** 2).clamp(min=0)


def sequence_logprob(token_logp: Tensor, mask: Tensor) -> Tensor:
    """(N, T) per-token log-probs, (N, T) mask -> log pi(response) (N,): sum over real tokens."""
    return masked(token_logp, mask).sum(-1)
