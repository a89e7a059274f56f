"""Environments for multi-turn RL (issue 18): the interface and the shipped environments."""

from rlvr.envs.base import Env, EnvFactory, Step
from rlvr.envs.guard import EnvFault, EnvRunner

__all__ = ["Env", "EnvFactory", "EnvFault", "EnvRunner", "Step"]
