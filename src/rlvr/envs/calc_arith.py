"""``calc-arith``: multiplication with a calculator tool (issue 18's tool-use environment).

Rows are questions "437*58=" (a ``digits_a``-digit times a ``digits_b``-digit number). The episode
is a ``ToolEnv``: the policy may call ``<calc>437*58</calc>`` (the observation is the result,
"25346"), then answers "25346" (reward 1, else 0) within ``max_turns`` turns. ``tools: false``
is the same task without the calculator (a call then reads "error: no tools"): the
comparison of learning with and without the tool. The demonstrator calls the tool on a
``tool_rate`` share of the rows and answers directly on the rest.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlvr.envs.task import EnvTask
from rlvr.envs.tools import ToolEnv, calc
from rlvr.options import opt
from rlvr.tasks.base import TASKS, Task, TaskConfig

TOOL = "calc"


class CalcArithTask(EnvTask):
    name = "calc-arith"

    def __init__(self, *, digits_a: int, digits_b: int, max_turns: int, tools: bool, tool_rate: float,
                 **kwargs: Any) -> None:
        # the longest policy turn is the tool call (the same limit without the tool, for the comparison)
        kwargs.setdefault("max_new_tokens", len(f"<{TOOL}>{'9' * digits_a}*{'9' * digits_b}</{TOOL}>") + 1)
        super().__init__(**kwargs)
        self.digits_a, self.digits_b, self.max_turns = digits_a, digits_b, max_turns
        self.tools, self.tool_rate = tools, tool_rate

    def random_prompt(self, rng: np.random.Generator) -> str:
        a = int(rng.integers(10 ** (self.digits_a - 1), 10 ** self.digits_a))
        b = int(rng.integers(10 ** (self.digits_b - 1), 10 ** self.digits_b))
        return f"{a}*{b}="

    def solution(self, prompt: str) -> str:
        a, b = prompt.rstrip("=").split("*")
        return str(int(a) * int(b))

    def make_env(self, prompt: str) -> ToolEnv:
        return ToolEnv(prompt, self.solution(prompt), tools={TOOL: calc} if self.tools else {},
                       max_turns=self.max_turns)

    def demonstration(self, prompt: str, rng: np.random.Generator) -> list[str]:
        use_tool = rng.random() < self.tool_rate  # drawn either way: one draw per demonstration
        answer = self.solution(prompt)
        if self.tools and use_tool and self.max_turns >= 2:
            return [f"<{TOOL}>{prompt.rstrip('=')}</{TOOL}>", answer]
        return [answer]

    def alphabet_texts(self) -> list[str]:
        # questions, answers and calls; calc's results ("-5", "7/2") and every "error: ..." message
        # (ExprError's reasons quote the offending character with repr: ' or ")
        return [string.digits + "+-*/()=<> ", string.ascii_lowercase, ":'\""]


@dataclass
class CalcArithConfig(TaskConfig):
    digits_a: int = opt(3, "digits of the first factor", ge=1)
    digits_b: int = opt(2, "digits of the second factor", ge=1)
    max_turns: int = opt(3, "policy turns per episode, tool calls and the answer (the env's own limit)", ge=1)
    tools: bool = opt(True, "offer the calculator (false: the same task without it, for the comparison)")
    tool_rate: float = opt(0.5, "share of the demonstrations that call the calculator", ge=0.0, le=1.0)


@TASKS.register("calc-arith", config=CalcArithConfig)
def build_calc_arith(cfg: CalcArithConfig) -> Task:
    return CalcArithTask(digits_a=cfg.digits_a, digits_b=cfg.digits_b, max_turns=cfg.max_turns, tools=cfg.tools,
                         tool_rate=cfg.tool_rate, **cfg.split_args())
