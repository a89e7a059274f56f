"""Tools: plain Python functions with type hints, called by the policy from its turns (issue 18).

A tool is any function whose first parameter is typed ``str``, ``int`` or ``float`` (no hint: str)
and whose result reads as text (``str(result)``). The policy calls one with a turn that is exactly
``<name>ARGS</name>`` (surrounding spaces ignored): the env converts ARGS by that hint, calls the
tool, and shows ``str(result)`` as the next observation. ``tool_signature`` documents a tool from
its hints (for docs and prompts: ``calc(expression: str) -> str``).

Mistakes are the policy's and come back as observations, never exceptions: an unknown tool name
("error: unknown tool NAME"; "error: no tools" in an env that offers none), arguments that do not
convert ("error: cannot read ARGS as int"), and, for ``calc``, a malformed expression ("error:
<reason>"). A tool that *raises* is a bug of the tool, not of the policy: ``ToolEnv.step`` lets
the exception through, and the runner that guards envs (rlvr.envs.guard) ends that episode as a
fault, with ``env.fallback_reward``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from rlvr.envs.base import Env, Step
from rlvr.tasks.expr import ExprError, evaluate_expression

NO_TOOLS = "error: no tools"  # any call in an env offering none (calc-arith's tools: false)
ARGUMENT_TYPES: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float}
_CALL = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>(.*)</\1>", re.DOTALL)


def calc(expression: str) -> str:
    """The exact value of an expression over whole numbers with + - * / and parentheses.

    An integer reads "1517" (or "-5"), a fraction "7/2" (lowest terms); anything else returns
    "error: <reason>" (parsed by rlvr.tasks.expr, never evaluated as code)."""
    try:
        value, _ = evaluate_expression(expression)
    except ExprError as exc:
        return f"error: {exc}"
    return str(value)  # Fraction: "1517", "-5", "7/2"


def _first_parameter(fn: Callable[..., Any]) -> tuple[str, Any]:
    """(name, type hint) of the tool's first parameter; the hint is str when absent."""
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TypeError(f"tool {getattr(fn, '__name__', fn)!r} takes no argument; a tool takes one (str, int or float)")
    hints = typing.get_type_hints(fn)
    return params[0].name, hints.get(params[0].name, str)


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def tool_signature(fn: Callable[..., Any], name: str | None = None) -> str:
    """``name(param: type) -> type`` and the first line of the docstring: a tool as a prompt or the
    docs list it, read from its hints (``name``: the tag it is called by; default its ``__name__``)."""
    param, hint = _first_parameter(fn)
    returns = typing.get_type_hints(fn).get("return")
    text = f"{name or fn.__name__}({param}: {_hint_name(hint)})"
    if returns is not None:
        text += f" -> {_hint_name(returns)}"
    doc = inspect.getdoc(fn)
    return f"{text}: {doc.splitlines()[0]}" if doc else text


def parse_call(action: str) -> tuple[str, str] | None:
    """(tool name, ARGS) when the turn is exactly ``<name>ARGS</name>`` (after strip), else None."""
    match = _CALL.fullmatch(action.strip())
    return (match.group(1), match.group(2)) if match else None


class ToolEnv(Env):
    """A question, tools to call, one final answer.

    reset() -> the question. A turn ``<name>ARGS</name>`` with a known tool: the observation is the
    tool's result (reward 0, not done); an unknown name ("error: unknown tool NAME"; "error: no
    tools" when ``tools`` is empty) or unconvertible ARGS: an "error: ..." observation. Any other
    turn is the final answer: reward 1 if it equals ``answer`` (both stripped) else 0, done. The
    ``max_turns``-th turn ends the episode in any case (0 unless it is the right answer; a tool
    call there is not run). metrics: ``success`` (0/1), ``tool_calls`` (times a tool function ran).
    A tool that raises propagates its exception (the guard counts the episode as a fault)."""

    def __init__(self, question: str, answer: str, *, tools: Mapping[str, Callable[..., Any]], max_turns: int) -> None:
        if max_turns < 1:
            raise ValueError(f"tool env: max_turns must be >= 1, got {max_turns}")
        self.question, self.answer, self.max_turns = question, answer.strip(), max_turns
        self.tools = dict(tools)
        self.converters: dict[str, tuple[str, Callable[[str], Any]]] = {}
        for name, fn in self.tools.items():
            _, hint = _first_parameter(fn)
            if hint not in ARGUMENT_TYPES:
                raise TypeError(f"tool {name!r}: first parameter typed {_hint_name(hint)}; a tool takes str, int or float")
            self.converters[name] = (_hint_name(hint), ARGUMENT_TYPES[hint])
        self.turns, self.tool_calls, self.success, self.over = 0, 0, False, False

    def reset(self) -> str:
        return self.question

    def step(self, action: str) -> Step:
        if self.over:
            raise RuntimeError("tool env: step after the episode ended")
        self.turns += 1
        last = self.turns >= self.max_turns
        call = parse_call(action)
        if call is None:  # the final answer
            self.success, self.over = action.strip() == self.answer, True
            return Step(None, float(self.success), True)
        if last:  # out of turns: the call is not run, its result could never be read
            self.over = True
            return Step(None, 0.0, True)
        return Step(self.call(*call), 0.0, False)

    def call(self, name: str, args: str) -> str:
        """One tool call's observation; a tool's own exception propagates."""
        if not self.tools:
            return NO_TOOLS
        if name not in self.tools:
            return f"error: unknown tool {name}"
        type_name, convert = self.converters[name]
        try:
            argument = convert(args)
        except ValueError:
            return f"error: cannot read {args} as {type_name}"
        self.tool_calls += 1
        return str(self.tools[name](argument))

    def metrics(self) -> dict[str, float]:
        return {"success": float(self.success), "tool_calls": float(self.tool_calls)}
