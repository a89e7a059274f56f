"""User code (custom tasks, custom rewards), loaded only from a module path the user names.

    --task.name mypackage.tasks:make_task        factory(task_config) -> rlvr.tasks.Task
    --task.reward mypackage.rewards:my_reward    function(prompt, response) -> float

``module.path:attribute`` is imported with ``importlib`` from the Python path (the current directory
is searched last, so a file there never shadows an installed module). Nothing else ever imports or
runs user code: no entry points, no code stored in run directories, checkpoints or model folders.
Resuming a run re-imports the module its saved config.yaml names -- resume run directories you trust.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from typing import Any

from rlvr.errors import ConfigError

SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_spec(value: object) -> bool:
    """True for ``module.path:attribute`` (registry names never contain ':'; a name its config field
    accepts, such as ``rg:NAME``, is checked before this)."""
    return isinstance(value, str) and ":" in value


def import_object(spec: str, *, field: str) -> Any:
    """The callable named by ``module.path:attribute``; a ConfigError naming ``field`` otherwise."""
    if not SPEC.match(spec):
        raise ConfigError(f"{field}: {spec!r} is not of the form module.path:attribute")
    module_name, attribute = spec.split(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module failed while importing
        raise ConfigError(f"{field}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{field}: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{field}: {spec!r} is a {type(obj).__name__}, not a function or class")
    return obj


def call_user_code(fn: Any, *args: Any, field: str) -> Any:
    """``fn(*args)``; an exception in the user's code becomes one line naming ``field`` and the
    place it was raised."""
    try:
        return fn(*args)
    except ConfigError:
        raise
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(f"{field}: {getattr(fn, '__qualname__', fn)} raised {type(exc).__name__}: {exc} "
                          f"(at {where.filename}:{where.lineno})") from None


def check_task(task: Any) -> None:
    """Before any work: a task (built-in or the user's) must yield non-empty prompts, for training and
    for evaluation. Draws from its own generator, so the run's prompt stream is untouched."""
    import numpy as np

    name = getattr(task, "name", type(task).__name__)
    rng = np.random.default_rng(0)
    try:
        drawn = list(task.fixed_prompts) if task.fixed_prompts is not None else [task.random_prompt(rng) for _ in range(4)]
        for prompt in drawn:
            if prompt is None or len(prompt) == 0:
                raise ConfigError(f"task.name: task {name!r} yields an empty prompt {prompt!r}")
        task.train_prompt(rng)
        held_out = task.eval_prompts()
    except ConfigError:
        raise
    except Exception as exc:  # the user's task code failed
        raise ConfigError(f"task.name: task {name!r} failed to produce prompts ({type(exc).__name__}: {exc})") from None
    if not held_out:
        raise ConfigError(f"task.name: task {name!r} yields no evaluation prompts")
