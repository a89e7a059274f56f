"""The Policy interface every model kind implements (toy, transformer, Hugging Face).

Shapes: prompt_ids (B, P); responses of one prompt are contiguous, so response row n belongs to
prompt n // G; response_ids, masks and log-probs are (N, T) with N = B * G.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Samples:
    """G sampled responses per prompt, and what the sampler saw while drawing them."""

    response_ids: Tensor  # (N, T) long
    mask: Tensor          # (N, T) float, 1 on real tokens
    logprobs: Tensor      # (N, T) log pi(token) under the sampling distribution, detached
    truncated: Tensor | None = None  # (N,) bool: stopped by the length limit, not an end token


class Policy(nn.Module, ABC):
    """A distribution over responses given a prompt, trainable by gradient."""

    response_length: int

    @abstractmethod
    def sample(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator,
               temperature: float = 1.0) -> Samples:
        """Draw G responses per prompt (no gradient)."""

    @abstractmethod
    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Per-token log pi(y_t | prompt, y_<t) (N, T) with gradient, and per-token entropy (N, T)."""

    @abstractmethod
    def greedy(self, prompt_ids: Tensor) -> tuple[Tensor, Tensor]:
        """The most likely response per prompt: (response_ids (B, T), mask (B, T))."""
