"""Which rows a sampling step decodes: responses equal so far share one decode row (shared-prefix
decode), and finished responses leave the decode batch (compaction). Both change only which rows are
computed, never a token or a random draw: ``LMPolicy.generate`` with any ``DecodeRows`` samples what
the reference ``Transformer.generate`` samples (tests/test_fast_paths.py). They are one strategy
because they act through one selection: a split copies a shared row's cache, and that re-selection
drops the finished rows at no extra cost.
Shapes: N responses, U decode rows, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DecodeRows:
    """``shared``: one decode row per prompt after the prefill; a response that samples another token
    than its partners splits off with a copy of the shared cache (a confident policy's groups stay
    mostly shared). ``compact_below``: re-select the decode batch once fewer than that share of its
    rows are still needed (0: never). Either needs the policy's ``select``."""

    shared: bool = False
    compact_below: float = 0.0

    def regroup(self, rows_of: Tensor, token: Tensor, done: Tensor,
                vocab: int) -> tuple[Tensor | None, Tensor, Tensor]:
        """The decode rows of the next step. ``rows_of`` (N,): the decode row each response read its
        logits from; ``token`` (N,) what it drew; ``done`` (N,) finished. Returns the rows of the
        current cache to continue with (U,) (None: keep the cache as it is), the new ``rows_of`` and
        the response that stands for each decode row (its token, position and key mask; a row no live
        response needs stands on response 0)."""
        live = (~done).nonzero().squeeze(-1)                                  # (L,)
        key = rows_of[live] * vocab + token[live] if self.shared else rows_of[live]
        needed, inverse = torch.unique(key, return_inverse=True)              # (U,), (L,)
        parent = needed // vocab if self.shared else needed                   # the row each continues
        computed = int(rows_of.max()) + 1
        split = needed.numel() > torch.unique(parent).numel()
        keep: Tensor | None = None
        if split or needed.numel() < self.compact_below * computed:
            rows_of = torch.zeros_like(rows_of).index_copy(0, live, inverse)
            keep = parent
        stand = torch.zeros(int(rows_of.max()) + 1, dtype=torch.long).scatter_reduce(
            0, rows_of[live], live, "amin", include_self=False)
        return keep, rows_of, stand


EVERY_ROW = DecodeRows()  # no sharing, no compaction: a policy without ``select``
