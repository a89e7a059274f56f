"""Verifiable tasks, by name. ``build_task(cfg.task)`` is the one way in.

Each task module registers its factory with its config class next to its code
(``@TASKS.register("arith", config=ArithConfig)``); ``task_config_class(name)`` is how the config
layer finds the fields of the task a run names. The tasks played as episodes live with their envs
(rlvr.envs.guess, rlvr.envs.calc_arith) and are registered by importing them here.
"""

from __future__ import annotations

from typing import Any

from rlvr.envs.calc_arith import CalcArithConfig, CalcArithTask
from rlvr.envs.guess import GuessConfig, GuessTask
from rlvr.errors import ConfigError
from rlvr.plugins import call_user_code, import_object, is_import_spec
from rlvr.tasks.arithmetic import ArithConfig, ArithTask, CountdownConfig, CountdownTask
from rlvr.tasks.base import RG_PREFIX, TASKS, Prompt, Response, Task, TaskConfig, is_reasoning_gym
from rlvr.tasks.dataset import DatasetConfig, DatasetTask
from rlvr.tasks.sort_text import SortTextConfig, SortTextTask
from rlvr.tasks.sorting import SortConfig, SortTask
from rlvr.tasks.text import Completion, TextTask


def task_config_class(name: str) -> type[TaskConfig]:
    """The config class of the task ``name``: a registered task's own; TaskConfig (the split
    fields) for ``rg:NAME``; for ``module.path:factory``, the class the factory declares as
    ``factory.config`` (a TaskConfig subclass), else SortConfig (what plugins received before
    tasks had classes of their own)."""
    if is_reasoning_gym(name):
        return TaskConfig
    if is_import_spec(name):
        declared = getattr(import_object(name, field="task.name"), "config", None)
        if declared is None:
            return SortConfig
        if not (isinstance(declared, type) and issubclass(declared, TaskConfig)):
            raise ConfigError(f"task.name: {name!r} declares config {declared!r}, not a TaskConfig subclass")
        return declared
    cls = TASKS.meta(name).get("config", TaskConfig)
    assert isinstance(cls, type) and issubclass(cls, TaskConfig)
    return cls


def build_task(cfg: TaskConfig) -> Task:
    """A registered task by name, ``rg:NAME`` (reasoning-gym), or the user's ``module.path:factory``
    (rlvr.plugins)."""
    if is_reasoning_gym(cfg.name):
        from rlvr.tasks.reasoning_gym import ReasoningGymTask
        return ReasoningGymTask(cfg.name.removeprefix(RG_PREFIX), **cfg.split_args())
    if not is_import_spec(cfg.name):
        return TASKS.get(cfg.name)(cfg)
    task: Any = call_user_code(import_object(cfg.name, field="task.name"), cfg, field="task.name")
    if not isinstance(task, Task):
        raise ConfigError(f"task.name: {cfg.name!r} returned a {type(task).__name__}, not an rlvr.tasks.Task")
    return task


__all__ = ["RG_PREFIX", "TASKS", "ArithConfig", "ArithTask", "CalcArithConfig", "CalcArithTask", "Completion",
           "CountdownConfig", "CountdownTask", "DatasetConfig", "DatasetTask", "GuessConfig", "GuessTask",
           "Prompt", "Response", "SortConfig", "SortTask", "SortTextConfig", "SortTextTask", "Task", "TaskConfig",
           "TextTask", "build_task", "is_reasoning_gym", "task_config_class"]
