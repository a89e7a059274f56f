"""Text tasks: string prompts, string answers, strict verifiers that read token ids and text.

A language-model policy decodes each sampled response into a ``Completion``: its token ids, the
id of <eos> and the tokenizer's special ids. ``Completion.body()`` is the strict reading every text
verifier starts from: the text of a response that ends with exactly one <eos> and holds no other
special token; anything else (no <eos>, padding with special tokens, text after <eos>) is None and
earns reward 0. Lenient about spaces only where the task says so.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.tasks.base import Task


@dataclass(frozen=True)
class Completion:
    """One sampled response as the verifier sees it."""

    token_ids: tuple[int, ...]       # the response's real tokens (mask 1), <eos> included
    eos_id: int
    special_ids: frozenset[int]
    decode: Callable[[Sequence[int]], str]

    def body(self) -> str | None:
        """The answer text, or None unless the ids end with exactly one <eos> and hold no other special id."""
        ids = self.token_ids
        if not ids or ids[-1] != self.eos_id:
            return None
        if any(t in self.special_ids for t in ids[:-1]):
            return None
        return self.decode(ids[:-1])

    @property
    def text(self) -> str:
        return self.decode(self.token_ids)


class TextTask(Task):
    """A task whose prompts and answers are strings. Reward in [0, max_reward]; 0 for malformed output."""

    max_reward = 1.0
    system_prompt: str | None = None  # a chat model's system message (the dataset task's task.system_prompt)
    vocab_size = 0          # text tasks are tokenized by the policy's tokenizer
    prompt_length = 0
    response_length = 0

    def __init__(self, *, max_new_tokens: int, **split: Any) -> None:
        super().__init__(fixed_prompts=None, **split)
        self.max_new_tokens = max_new_tokens

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def random_prompt(self, rng: np.random.Generator) -> str:  # type: ignore[override]
        """One prompt string."""

    @abstractmethod
    def solution(self, prompt: str) -> str:  # type: ignore[override]
        """A correct answer (for demonstrations and exact match)."""

    @abstractmethod
    def score_text(self, prompt: str, answer: str) -> float:
        """Reward of a well-formed answer text."""

    def alphabet_texts(self) -> list[str]:
        """Strings whose characters a character tokenizer must cover (default: sample prompts/answers)."""
        rng = np.random.default_rng(12345)
        texts = []
        for _ in range(200):
            prompt = self.random_prompt(rng)
            texts += [prompt, self.solution(prompt)]
        return texts

    def flawed_solution(self, prompt: str, rng: np.random.Generator) -> str:
        """An imperfect demonstration (for SFT with flawed data); default: the solution itself."""
        return self.solution(prompt)

    # -- provided ----------------------------------------------------------------------------
    def reward(self, prompt: str, response: Completion) -> float:  # type: ignore[override]
        body = response.body()
        return 0.0 if body is None else float(self.score_text(prompt, body))

    def is_correct(self, prompt: str, response: Completion) -> bool:  # type: ignore[override]
        return self.reward(prompt, response) >= self.max_reward
