"""Policies by kind. ``build_policy(cfg, task)`` is the one way in.

Each kind registers its factory with its config class next to its code
(``@POLICIES.register("hf", config=HFConfig)``); ``policy_config_class(kind)`` is how the config
layer finds the fields of the kind a run names.
"""

from __future__ import annotations

from rlvr.errors import ConfigError
from rlvr.policies.base import POLICIES, Policy, PolicyConfig, Samples, check_task_kind
from rlvr.policies.hf import HFConfig, HFPolicy
from rlvr.policies.lm import LMConfig, LMPolicy
from rlvr.policies.toy import ToyConfig, ToyPolicy
from rlvr.policies.transformer import TransformerPolicyConfig
from rlvr.tasks import Task, TextTask


def policy_config_class(kind: str) -> type[PolicyConfig]:
    cls = POLICIES.meta(kind).get("config", PolicyConfig)
    assert isinstance(cls, type) and issubclass(cls, PolicyConfig)
    return cls


def build_policy(cfg: PolicyConfig, task: Task) -> Policy:
    policy = POLICIES.get(cfg.kind)(cfg, task)
    system = task.system_prompt if isinstance(task, TextTask) else None
    if system:  # a dataset's system message: a chat model's first turn
        if not isinstance(policy, HFPolicy):
            raise ConfigError(f"task.system_prompt: policy.kind {cfg.kind!r} has no chat template to put it "
                              "in; write it into policy.prompt_template instead")
        policy.codec.system_prompt = system
    if isinstance(cfg, LMConfig) and isinstance(policy, LMPolicy) and cfg.prompt_template != "{prompt}":
        policy.prompt_template = cfg.prompt_template
    return policy


__all__ = ["POLICIES", "HFConfig", "LMConfig", "Policy", "PolicyConfig", "Samples", "ToyConfig", "ToyPolicy",
           "TransformerPolicyConfig", "build_policy", "check_task_kind", "policy_config_class"]
