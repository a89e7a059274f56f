"""Verifiable tasks, by name. ``build_task(cfg.task)`` is the one way in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rlvr.errors import ConfigError
from rlvr.plugins import call_user_code, import_object, is_import_spec
from rlvr.registry import Registry
from rlvr.tasks.arithmetic import ArithTask, CountdownTask
from rlvr.tasks.base import Prompt, Response, Task
from rlvr.tasks.sort_text import SortTextTask
from rlvr.tasks.sorting import SortTask
from rlvr.tasks.text import Completion, TextTask

if TYPE_CHECKING:
    from rlvr.config import TaskConfig

TASKS: Registry[Callable[[TaskConfig], Task]] = Registry("task")


@TASKS.register("sort")
def _sort(cfg: TaskConfig) -> Task:
    return SortTask(length=cfg.length, vocab_size=cfg.vocab_size, reward=cfg.reward,
                    fixed_prompts=cfg.prompts, eval_fraction=cfg.eval_fraction,
                    num_eval_prompts=cfg.num_eval_prompts, split_seed=cfg.split_seed)


def split_args(cfg: TaskConfig) -> dict:
    return {"eval_fraction": cfg.eval_fraction, "num_eval_prompts": cfg.num_eval_prompts,
            "split_seed": cfg.split_seed}


@TASKS.register("sort-text")
def _sort_text(cfg: TaskConfig) -> Task:
    return SortTextTask(length=cfg.length, copy_weight=cfg.copy_weight, **split_args(cfg))


@TASKS.register("arith")
def _arith(cfg: TaskConfig) -> Task:
    return ArithTask(digits=cfg.digits, operations=cfg.operations, **split_args(cfg))


@TASKS.register("countdown")
def _countdown(cfg: TaskConfig) -> Task:
    return CountdownTask(count=cfg.count, digits=cfg.digits, **split_args(cfg))


RG_PREFIX = "rg:"  # a task-name namespace, not a module: rg:NAME is never imported as module:attribute


def is_reasoning_gym(name: str) -> bool:
    """``rg:NAME``: the reasoning-gym dataset NAME (rlvr.tasks.reasoning_gym)."""
    return name.startswith(RG_PREFIX)


def build_task(cfg: TaskConfig) -> Task:
    """A registered task by name, ``rg:NAME`` (reasoning-gym), or the user's ``module.path:factory``
    (rlvr.plugins)."""
    if is_reasoning_gym(cfg.name):
        from rlvr.tasks.reasoning_gym import ReasoningGymTask
        return ReasoningGymTask(cfg.name.removeprefix(RG_PREFIX), **split_args(cfg))
    if not is_import_spec(cfg.name):
        return TASKS.get(cfg.name)(cfg)
    task = call_user_code(import_object(cfg.name, field="task.name"), cfg, field="task.name")
    if not isinstance(task, Task):
        raise ConfigError(f"task.name: {cfg.name!r} returned a {type(task).__name__}, not an rlvr.tasks.Task")
    return task


__all__ = ["RG_PREFIX", "TASKS", "Completion", "Prompt", "Response", "SortTask", "SortTextTask", "Task", "TextTask",
           "build_task", "is_reasoning_gym"]
