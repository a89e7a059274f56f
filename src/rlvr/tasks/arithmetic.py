"""Arithmetic text tasks.

- ``arith``: "47+385=" -> "432" (multi-digit addition, subtraction, multiplication; operands of up
  to ``digits`` digits). Reward 1 if the strict body is exactly the decimal result, else 0.
- ``countdown``: "3 7 25 50->175:" -> any expression over the given numbers (each used at most
  once, + - * / and parentheses) whose exact value is the target; reward 1, else 0. The answer is
  read with the safe parser of ``rlvr.tasks.expr`` (never eval).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.tasks.base import TASKS, Task, TaskConfig
from rlvr.tasks.expr import ExprError, evaluate_expression
from rlvr.tasks.text import TextTask


class ArithTask(TextTask):
    name = "arith"

    def __init__(self, *, digits: int, operations: str, **kwargs: Any) -> None:
        ops = [op for op in operations if op in "+-*"]
        if not ops:
            raise ConfigError(f"task.operations: {operations!r} holds none of + - *")
        kwargs.setdefault("max_new_tokens", 2 * digits + 2)
        super().__init__(**kwargs)
        self.digits = digits
        self.ops = ops

    def random_prompt(self, rng: np.random.Generator) -> str:
        high = 10 ** self.digits
        a, b = (int(x) for x in rng.integers(0, high, size=2))
        op = self.ops[int(rng.integers(len(self.ops)))]
        return f"{a}{op}{b}="

    def solution(self, prompt: str) -> str:
        value, _ = evaluate_expression(prompt.rstrip("="))
        return str(int(value))

    def score_text(self, prompt: str, answer: str) -> float:
        return float(answer.strip() == self.solution(prompt))

    def alphabet_texts(self) -> list[str]:
        return ["0123456789-=" + "".join(self.ops)]

    def flawed_solution(self, prompt: str, rng: np.random.Generator) -> str:
        return str(int(self.solution(prompt)) + int(rng.choice([-1, 1])))


class CountdownTask(TextTask):
    name = "countdown"

    def __init__(self, *, count: int, digits: int, **kwargs: Any) -> None:
        kwargs.setdefault("max_new_tokens", count * (digits + 3) + 4)
        super().__init__(**kwargs)
        self.count = count
        self.digits = digits
        self._solutions: dict[str, str] = {}

    def random_prompt(self, rng: np.random.Generator) -> str:
        """Numbers 1..9 plus one of up to ``digits`` digits; the target is a random expression over all
        of them whose intermediate values stay positive integers (so it is reachable)."""
        while True:
            numbers = [int(x) for x in rng.integers(1, 10, size=self.count - 1)]
            numbers.append(int(rng.integers(1, 10 ** self.digits)))
            order = [numbers[i] for i in rng.permutation(self.count)]
            expression, value = str(order[0]), order[0]
            for x in order[1:]:
                op = "+-*/"[int(rng.integers(4))]
                if op == "/" and (x == 0 or value % x):
                    op = "+"
                if op == "-" and value - x <= 0:
                    op = "+"
                value = {"+": value + x, "-": value - x, "*": value * x, "/": value // x}[op]
                expression = f"({expression}){op}{x}" if op in "*/" and any(c in expression for c in "+-") \
                    else f"{expression}{op}{x}"
            if 0 < value < 1000:
                prompt = " ".join(str(n) for n in sorted(numbers)) + f"->{value}:"
                self._solutions.setdefault(prompt, expression)
                return prompt

    def parse(self, prompt: str) -> tuple[list[int], int]:
        numbers, target = prompt.rstrip(":").split("->")
        return [int(n) for n in numbers.split()], int(target)

    def solution(self, prompt: str) -> str:
        if prompt not in self._solutions:
            self._solutions[prompt] = self.search(prompt)
        return self._solutions[prompt]

    def search(self, prompt: str) -> str:
        """Some expression reaching the target (for prompts this task did not generate itself)."""
        numbers, target = self.parse(prompt)
        items = [(str(n), n) for n in numbers]
        found = _search(items, target)
        return found if found is not None else ""

    def score_text(self, prompt: str, answer: str) -> float:
        numbers, target = self.parse(prompt)
        try:
            value, used = evaluate_expression(answer)
        except ExprError:
            return 0.0
        if Counter(used) - Counter(numbers):  # a number not given, or used more often than given
            return 0.0
        return float(value == target)

    def alphabet_texts(self) -> list[str]:
        return ["0123456789 +-*/()->:"]


def _search(items: list[tuple[str, int]], target: int) -> str | None:
    for text, value in items:
        if value == target:
            return text
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            (ta, a), (tb, b) = items[i], items[j]
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            options = [(f"({ta}+{tb})", a + b), (f"({ta}*{tb})", a * b)]
            if a > b:
                options.append((f"({ta}-{tb})", a - b))
            if b and a % b == 0:
                options.append((f"({ta}/{tb})", a // b))
            for option in options:
                found = _search(rest + [option], target)
                if found is not None:
                    return found
    return None


@dataclass
class ArithConfig(TaskConfig):
    digits: int = opt(2, "digits per operand", ge=1)
    operations: str = opt("+*", "operations drawn from (any of + - *)")


@TASKS.register("arith", config=ArithConfig)
def build_arith(cfg: ArithConfig) -> Task:
    return ArithTask(digits=cfg.digits, operations=cfg.operations, **cfg.split_args())


@dataclass
class CountdownConfig(TaskConfig):
    count: int = opt(4, "how many numbers are given", ge=2)
    digits: int = opt(2, "the largest number has this many digits", ge=1)


@TASKS.register("countdown", config=CountdownConfig)
def build_countdown(cfg: CountdownConfig) -> Task:
    return CountdownTask(count=cfg.count, digits=cfg.digits, **cfg.split_args())
