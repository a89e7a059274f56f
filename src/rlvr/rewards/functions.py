"""TRL-compatible reward functions: ``rewards.functions``, batched user code with dataset columns.

    rewards:
      functions: [my_rewards:reward_len, my_rewards:reward_format]   # module.path:function
      function_weights: [0.1, 1.0]                                    # default: 1.0 each

A function has the signature of TRL's ``GRPOTrainer`` reward functions::

    def reward_len(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]:
        return [-abs(20 - len(c)) for c in completions]

called once per batch of responses with keyword arguments ``prompts`` and ``completions`` (plain
strings: the response's text decoded without special tokens, as TRL decodes a completion; for a
chat model TRL would pass a list of messages, rlvr passes the text), ``completion_ids`` (each
response's token ids, <eos> included), and one keyword list per column of the task's rows
(``task.columns(prompt)``, e.g. ``answer`` and ``a``, ``b`` of examples/addition.jsonl), all of the
same length. It returns one value per completion.

Semantics (TRL's): the reward of a response is ``sum_k weight_k * r_k``, over the verifier and
``rewards.sources`` (rlvr.rewards.sources) and these functions; ``None`` means "not applicable" and
that function adds nothing to that response (and is left out of its ``reward/<name>`` mean, which
is over the responses it scored). Each function's mean is logged as ``reward/<function name>``.

Guarded like every reward (rlvr.rewards.runner): a call that raises, runs past ``rewards.timeout``,
returns something that is not a list of numbers-or-None of the right length, or holds NaN or +-inf
(or, in a worker process, kills it) gives every response of that call ``rewards.fallback`` and
counts one failure per response in ``fault/reward_failures*`` and the failure rate that stops a run.
Where they run: ``rewards.workers 0``, in the training process (the timeout is SIGALRM, which
interrupts Python code but not a long call inside a C extension); ``rewards.workers > 0``, each
function in a worker process of its own (one batched call per step needs no more), killed and
replaced when its call hangs past the timeout or crashes the process. The function must then be
importable in a new process (a module-level function of an importable module, as TRL's are).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rlvr.errors import ConfigError
from rlvr.plugins import import_object
from rlvr.rewards.runner import Pool, RewardTimeout, alarm

Outcome = tuple[str, list[float | None] | str]  # ('ok', values) or (failure kind, description)


def check_functions(functions: list[str] | None, weights: list[float] | None) -> None:
    """Config validation: each entry imports as a callable; weights (if given) match in number."""
    if functions is None:
        if weights is not None:
            raise ConfigError("rewards.function_weights: given without rewards.functions")
        return
    if not isinstance(functions, list) or not functions:
        raise ConfigError(f"rewards.functions: expected a non-empty list of module.path:function, got {functions!r}")
    names: set[str] = set()
    for i, spec in enumerate(functions):
        if not isinstance(spec, str):
            raise ConfigError(f"rewards.functions[{i}]: expected module.path:function, got {spec!r}")
        name = function_name(import_object(spec, field=f"rewards.functions[{i}]"))
        if name in names:
            raise ConfigError(f"rewards.functions[{i}]: a second function named {name!r}; each is logged as "
                              "reward/<name>, so names must differ")
        names.add(name)
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != len(functions):
            raise ConfigError(f"rewards.function_weights: {weights!r} must be a list of {len(functions)} numbers, "
                              "one per rewards.functions entry")
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(float(w)):
                raise ConfigError(f"rewards.function_weights[{i}]: {w!r} must be a finite number")


def function_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__))


def completion_text(response: Any) -> str:
    """What TRL passes as a completion: the text without special tokens (a string stays as it is)."""
    if isinstance(response, str):
        return response
    if hasattr(response, "text"):
        return str(response.text)
    return " ".join(str(int(t)) for t in response)


def completion_ids(response: Any) -> list[int]:
    ids = getattr(response, "token_ids", None)
    if ids is not None:
        return list(ids)
    return [] if isinstance(response, str) else [int(t) for t in response]


def check_values(values: Any, count: int) -> Outcome:
    if not isinstance(values, list | tuple):
        return "type", f"returned {type(values).__name__} {values!r:.60}, not a list"
    if len(values) != count:
        return "type", f"returned {len(values)} values for {count} completions"
    out: list[float | None] = []
    for value in values:
        if value is None:
            out.append(None)
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            return "type", f"returned a {type(value).__name__} {value!r:.60} in its list, not a number or None"
        elif not math.isfinite(float(value)):
            return "nonfinite", f"returned {float(value)}"
        else:
            out.append(float(value))
    return "ok", out


def call_batch(fn: Callable[..., Any], kwargs: dict[str, Any], count: int, timeout: float | None) -> Outcome:
    """One guarded call ``fn(**kwargs)``: interrupted after ``timeout`` seconds (main thread only)."""
    try:
        with alarm(timeout):
            values = fn(**kwargs)
    except RewardTimeout:
        return "timeout", f"took longer than {timeout:g}s"
    except Exception as exc:  # user code: any exception becomes the fallback reward
        return "error", f"raised {type(exc).__name__}: {exc}"
    return check_values(values, count)


class RewardFunction:
    """A user's TRL-style reward function, called on batches with the task's columns, guarded."""

    def __init__(self, spec: str, task: Any, *, fallback: float, timeout: float | None, workers: int = 0) -> None:
        self.fn = import_object(spec, field="rewards.functions")
        self.name = function_name(self.fn)
        self.task = task
        self.fallback = fallback
        self.timeout = timeout
        # workers > 0: its own process (the pool's timeout kills a hung call; no SIGALRM inside)
        self.pool = Pool(partial(call_batch, self.fn, timeout=None), 1, timeout) if workers > 0 else None
        self.step_failures: Counter[str] = Counter()
        self.last_error = ""
        self.scored = 0  # responses this step with a value (not None, not failed)

    def arguments(self, prompts: Sequence[Any], responses: Sequence[Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"prompts": list(prompts), "completions": [completion_text(r) for r in responses],
                                  "completion_ids": [completion_ids(r) for r in responses]}
        columns = getattr(self.task, "columns", None)
        if columns is not None and prompts:
            rows = [columns(p) for p in prompts]
            for key in rows[0]:
                if key not in kwargs:
                    kwargs[key] = [row.get(key) for row in rows]
        return kwargs

    def __call__(self, prompts: Sequence[Any], responses: Sequence[Any], *,
                 counted: bool = True) -> list[float | None]:
        """One value per response (None: not applicable); a failed call gives each the fallback."""
        kwargs, count = self.arguments(prompts, responses), len(responses)
        if self.pool is not None:
            kind, result = self.pool.map([(kwargs, count)])[0]
        else:
            kind, result = call_batch(self.fn, kwargs, count, self.timeout)
        if kind == "ok":
            assert isinstance(result, list)
            return result
        self.last_error = f"reward function {self.name}: {kind}: {result}"
        if counted:
            self.step_failures[kind] += len(responses)
        return [self.fallback] * len(responses)

    def pop_failures(self) -> Counter[str]:
        failures, self.step_failures = self.step_failures, Counter()
        return failures

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def build_functions(rw: Any, task: Any, *, workers: int = 0) -> list[tuple[float, RewardFunction]]:
    """(weight, function) per ``rewards.functions`` entry; workers > 0: each in a process of its own."""
    if not rw.functions:
        return []
    weights = rw.function_weights if rw.function_weights is not None else [1.0] * len(rw.functions)
    return [(float(w), RewardFunction(spec, task, fallback=rw.fallback, timeout=rw.timeout, workers=workers))
            for spec, w in zip(rw.functions, weights, strict=True)]
