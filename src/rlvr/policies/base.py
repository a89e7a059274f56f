"""The Policy interface every model kind implements (toy, transformer, Hugging Face).

Shapes: prompt_ids (B, P); responses of one prompt are contiguous, so response row n belongs to
prompt n // G; response_ids, masks and log-probs are (N, T) with N = B * G.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.registry import Registry
from rlvr.tasks import Task, TextTask


@dataclass
class PolicyConfig:
    """What every policy kind has: which one it is. A kind's own settings live in a subclass next
    to its code (``ToyConfig`` in toy.py, ``LMConfig`` in lm.py and its subclasses), registered with
    it: ``POLICIES.register("toy", config=ToyConfig)``."""

    kind: str = opt("toy", "policy architecture", choices=lambda: POLICIES.names())


# kind -> factory(config, task) -> Policy; each entry declares its config class (``config=``)
POLICIES: Registry[Callable[[Any, Task], Policy]] = Registry("policy kind")


def check_task_kind(kind: str, task: Task, *, text: bool) -> None:
    """A language model needs a text task, the toy policy a token task: one line when they differ."""
    if isinstance(task, TextTask) != text:
        wanted = "a text task (sort-text, arith, countdown, rg:NAME)" if text else "a token task (sort)"
        raise ConfigError(f"policy.kind: {kind!r} needs {wanted}; task.name is {task.name!r}")


def response_lists(response_ids: Tensor, mask: Tensor) -> list[list[int]]:
    """(N, T) ids and mask -> N python lists of the real tokens."""
    return [[int(t) for t, m in zip(row, row_mask, strict=True) if m > 0]
            for row, row_mask in zip(response_ids.tolist(), mask.tolist(), strict=True)]


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

    @property
    def prompt_pad_id(self) -> int:
        """The id that left-pads prompt rows (LM policies: their tokenizer's <pad>)."""
        return 0

    @abstractmethod
    def sample(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator,
               temperature: float = 1.0) -> Samples:
        """Draw G responses per prompt (no gradient)."""

    @abstractmethod
    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Per-token log pi(y_t | prompt, y_<t) (N, T) with gradient, and per-token entropy (N, T)."""

    def score_norms(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                    temperature: float = 1.0) -> Tensor:
        """Per token (N, T), no gradient: the squared norm of the score of y_t at its position's logits,
        ``algorithms.logprobs.logit_score_norm`` (what ``--algo.credit optimal-token-baseline`` weighs by)."""
        raise ConfigError(f"policy.kind: {type(self).__name__} does not give per-token score norms "
                          "(Policy.score_norms), which algo.credit 'optimal-token-baseline' needs")

    def encode_prompts(self, prompts: Sequence[Any]) -> Tensor:
        """Task prompts -> prompt_ids (B, P). Token-tuple prompts as they are; LM policies tokenize text."""
        return torch.tensor([list(p) for p in prompts], dtype=torch.long)

    def decode_responses(self, response_ids: Tensor, mask: Tensor) -> list[Any]:
        """(N, T) ids and mask -> what the task's verifier reads: token lists here, ``Completion``s for LMs."""
        return response_lists(response_ids, mask)

    @abstractmethod
    def greedy(self, prompt_ids: Tensor) -> tuple[Tensor, Tensor]:
        """The most likely response per prompt: (response_ids (B, T), mask (B, T))."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimizer updates: every parameter that takes a gradient (a LoRA policy: its adapters)."""
        return (p for p in self.parameters() if p.requires_grad)

    def frozen_reference(self) -> nn.Module:
        """The frozen reference policy (no gradient, eval mode): a deep copy. It needs ``logprobs``,
        ``state_dict`` / ``load_state_dict`` (of this policy's ``state_dict``); a LoRA policy returns a
        view of its own base model instead of a copy (policies/lora.py)."""
        ref = copy.deepcopy(self)
        ref.requires_grad_(False)
        return ref.eval()


def autocast(policy: nn.Module, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on the policy's device (matrix products in bf16, log-softmax and the loss in
    float32: ``LMPolicy.scores`` casts the logits up); a no-op when not enabled."""
    device = next(policy.parameters(), torch.empty(0)).device.type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)
