"""Sorting as text (workloads.md, W1): prompt "3 1 4 1 5>", correct completion "1 1 3 4 5" + <eos>.

Reward = (positions matching sorted(prompt)) / n, read from the strict body of the completion
(``Completion.body``: exactly one final <eos>, no other special token). Lenient spacing: spaces are
ignored; any other character, or more than n digits, earns 0.

Process reward (``token_rewards``, for ``--algo.credit process``): 1/n on each response token whose
digit is the right one of its position, and on the last token the correction that makes a
response's token rewards sum to its (strict) outcome reward: a malformed response loses its matches
where it ends, so emitting <eos> after good digits is what keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.options import opt
from rlvr.tasks.base import TASKS, Task, TaskConfig
from rlvr.tasks.text import Completion, TextTask


def parse_digits(prompt: str) -> list[int]:
    return [int(ch) for ch in prompt.rstrip(">").split()]


class SortTextTask(TextTask):
    name = "sort-text"

    def __init__(self, *, length: int, max_digit: int = 9, copy_weight: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("max_new_tokens", 2 * length + 2)
        super().__init__(**kwargs)
        self.length = length
        self.max_digit = max_digit
        self.copy_weight = copy_weight  # shaping: share of the reward for digits copied from the prompt

    def random_prompt(self, rng: np.random.Generator) -> str:
        digits = rng.integers(0, self.max_digit + 1, size=self.length)
        return " ".join(str(int(d)) for d in digits) + ">"

    def solution(self, prompt: str) -> str:
        return " ".join(str(d) for d in sorted(parse_digits(prompt)))

    def score_text(self, prompt: str, answer: str) -> float:
        compact = answer.replace(" ", "")
        if not compact.isdigit() or len(compact) > self.length:
            return 0.0
        return sum(self.digit_values(prompt, [int(ch) for ch in compact])) / self.length

    def digit_values(self, prompt: str, digits: list[int]) -> list[float]:
        """Each answer digit's share (x n): (1 - w) [right digit of its position] + w [still unused in the
        prompt's digits] (w = copy_weight; 0 is W1's reward). Digit k's value depends on digits <= k only."""
        target = sorted(parse_digits(prompt))
        unused = list(target)
        values = []
        for k, d in enumerate(digits):
            copied = d in unused
            if copied:
                unused.remove(d)
            values.append((1 - self.copy_weight) * float(k < len(target) and d == target[k]) + self.copy_weight * copied)
        return values

    def token_rewards(self, prompt: str, response: Completion) -> list[float]:  # type: ignore[override]
        """Per token: the value / n of the digits it writes (``digit_values``: known once the token is
        written), plus, on the last token, the correction (outcome reward - those values): a malformed
        response takes them back where it ends. Each value depends only on tokens up to its own, and
        they sum to the reward."""
        digits_of = [[int(ch) for ch in response.decode((t,)) if ch.isdigit()] for t in response.token_ids]
        values = self.digit_values(prompt, [d for ds in digits_of for d in ds])
        out, k = [], 0
        for ds in digits_of:
            out.append(sum(values[k: k + len(ds)]) / self.length)
            k += len(ds)
        if out:
            out[-1] += self.reward(prompt, response) - sum(out)
        return out

    def alphabet_texts(self) -> list[str]:
        return ["0123456789 >"]

    def flawed_solution(self, prompt: str, rng: np.random.Generator) -> str:
        """The sorted answer with one adjacent pair of different digits swapped (if there is one)."""
        digits = sorted(parse_digits(prompt))
        pairs = [i for i in range(len(digits) - 1) if digits[i] != digits[i + 1]]
        if pairs:
            i = int(rng.choice(pairs))
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
        return " ".join(str(d) for d in digits)


@dataclass
class SortTextConfig(TaskConfig):
    length: int = opt(3, "numbers per prompt (and per answer)", ge=1)
    copy_weight: float = opt(0.0, "share of the reward for answer digits taken from the prompt's digits "
                             "(shaping towards copying; 0: W1's position reward)", ge=0.0, le=1.0)


@TASKS.register("sort-text", config=SortTextConfig)
def build_sort_text(cfg: SortTextConfig) -> Task:
    return SortTextTask(length=cfg.length, copy_weight=cfg.copy_weight, **cfg.split_args())
