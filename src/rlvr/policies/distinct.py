"""Distinct-row scoring: each distinct (prompt, response) of a batch scored once, the result copied to
its duplicates. A confident policy samples the same response many times per group; the copy gives
every duplicate the same log-probs and, through the copy's backward (a sum), the same gradient as
scoring every row (tests/test_fast_paths.py compares the two).
Shapes: G group size, N responses, U distinct ones, T response tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# (prompt_ids (B, P), response_ids (N, T), mask (N, T), temperature, prompt_of (N,)) -> log-probs, entropies (N, T)
Scorer = Callable[[Tensor, Tensor, Tensor, float, Tensor], tuple[Tensor, Tensor]]


def distinct_rows(response_ids: Tensor, mask: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """(N, T) responses of G-row groups -> (U,) one row of each distinct (prompt, response), in row
    order, and (N,) the index into those U of each row. Two rows are the same response when they
    belong to the same prompt and have the same length and the same tokens under the mask."""
    n = response_ids.shape[0]
    key = torch.cat([(torch.arange(n) // group_size)[:, None], mask.sum(-1, keepdim=True).long(),
                     response_ids * (mask > 0)], 1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)                 # (N,) sorted-unique index
    first = torch.full((int(inverse.max()) + 1,), n).scatter_reduce(0, inverse, torch.arange(n), "amin")
    order = first.argsort()                                                     # unique rows in row order
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
    return first[order], rank[inverse]


def score_every_row(score: Scorer, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *,
                    group_size: int, temperature: float) -> tuple[Tensor, Tensor]:
    """``score`` on all N rows, row n answering prompt n // G (the plain path)."""
    return score(prompt_ids, response_ids, mask, temperature, torch.arange(response_ids.shape[0]) // group_size)


def score_distinct(score: Scorer, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *,
                   group_size: int, temperature: float) -> tuple[Tensor, Tensor]:
    """What ``score_every_row`` returns, with ``score`` run on the distinct rows only."""
    rows, inverse = distinct_rows(response_ids, mask, group_size)
    if rows.numel() < response_ids.shape[0]:
        logp, entropy = score(prompt_ids, response_ids[rows], mask[rows], temperature, rows // group_size)
        return logp.index_select(0, inverse), entropy.index_select(0, inverse)
    return score_every_row(score, prompt_ids, response_ids, mask, group_size=group_size, temperature=temperature)
