"""Environments for multi-turn RL (issue 18): the interface and the shipped environments."""

from rlvr.envs.base import Env, EnvFactory, Step

__all__ = ["Env", "EnvFactory", "Step"]
