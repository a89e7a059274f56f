"""Reward shaping from the response's length, before the deltas. (N,) in, (N,) out.

DAPO's soft overlong punishment (Yu et al. 2025, "DAPO", eq. 13; verl ``overlong_buffer``), with
L_max the response-length limit and L_cache the buffer at its end:

    R_length(y) = 0                                   if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
                = -1                                   if the response was truncated (|y| > L_max)

times a factor, added to the task reward. |y| is counted from the response mask, truncation is the
sampler's flag. With fixed-length responses (the toy policy) every response gets the same value,
a constant shift that group-centred deltas remove. L_cache = 0 turns it off.
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, truncated: Tensor, *, max_length: int, buffer: int,
                     factor: float) -> Tensor:
    """lengths (N,) real tokens per response, truncated (N,) bool -> penalty (N,), <= 0."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float)
    expected = max_length - buffer
    soft = ((expected - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)
    return factor * torch.where(truncated, torch.full_like(soft, -1.0), soft)
