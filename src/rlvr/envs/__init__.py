"""Environments for multi-turn RL (issue 18): the interface and the shipped environments.

Shipped: ``guess`` (rlvr.envs.guess: find a hidden number from higher/lower feedback) and
``calc-arith`` (rlvr.envs.calc_arith: multiplication with the ``calc`` tool of rlvr.envs.tools),
registered as tasks by rlvr.tasks.
"""

# rlvr.tasks first, whichever module of rlvr.envs is imported first: it registers the env tasks,
# whose modules subclass rlvr.tasks.text.TextTask (through rlvr.envs.task), so neither package
# ever meets the other half-imported.
import rlvr.tasks  # noqa: F401
from rlvr.envs.base import Env, EnvFactory, Step
from rlvr.envs.guard import EnvFault, EnvRunner

__all__ = ["Env", "EnvFactory", "EnvFault", "EnvRunner", "Step"]
