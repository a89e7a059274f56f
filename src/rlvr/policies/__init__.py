"""Policies by kind. ``build_policy(cfg, task)`` is the one way in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rlvr.policies.base import Policy, Samples
from rlvr.policies.toy import ToyPolicy
from rlvr.registry import Registry

if TYPE_CHECKING:
    from rlvr.config import PolicyConfig
    from rlvr.tasks import Task

POLICIES: Registry[Callable[[PolicyConfig, Task], Policy]] = Registry("policy kind")


@POLICIES.register("toy")
def _toy(cfg: PolicyConfig, task: Task) -> Policy:
    return ToyPolicy(vocab_size=task.vocab_size, embedding_dim=cfg.embedding_dim,
                     prompt_length=task.prompt_length, response_length=task.response_length,
                     init_scale=cfg.init_scale)


def build_policy(cfg: PolicyConfig, task: Task) -> Policy:
    return POLICIES.get(cfg.kind)(cfg, task)


__all__ = ["POLICIES", "Policy", "Samples", "ToyPolicy", "build_policy"]
