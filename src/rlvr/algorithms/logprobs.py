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


def sequence_logprob(token_logp: Tensor, mask: Tensor) -> Tensor:
    """(N, T) per-token log-probs, (N, T) mask -> log pi(response) (N,): sum over real tokens."""
    return masked(token_logp, mask).sum(-1)
