"""Each component owns its settings: a task's, a policy kind's, a reward source's fields live in its
config class; a loss's, a deltas mode's, an aggregation's in the parameter block it registered."""

import dataclasses
import typing

import pytest
import yaml

from rlvr.config import ROLLOUT_BACKENDS, Config, field_help, load_config, to_dict
from rlvr.errors import ConfigError, UserError
from rlvr.policies import HFConfig, ToyConfig, TransformerPolicyConfig
from rlvr.rewards.sources import ModelSourceConfig, SourceConfig
from rlvr.tasks import ArithConfig, CountdownConfig, SortConfig, SortTextConfig, TaskConfig


def error(overrides, path=None, **kw):
    with pytest.raises((ConfigError, UserError)) as info:
        load_config(path, overrides, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_each_section_is_the_class_of_the_chosen_kind():
    assert type(Config().task) is SortConfig and type(Config().policy) is ToyConfig
    cfg = load_config(None, {"task.name": "arith", "task.digits": 3, "policy.kind": "transformer"})
    assert type(cfg.task) is ArithConfig and cfg.task.digits == 3 and cfg.task.operations == "+*"
    assert type(cfg.policy) is TransformerPolicyConfig and cfg.policy.hidden_size == 128
    assert type(load_config(None, {"task.name": "countdown"}).task) is CountdownConfig
    assert type(load_config(None, {"task.name": "sort-text"}).task) is SortTextConfig
    assert type(load_config(None, {"task.name": "rg:chain_sum"}).task) is TaskConfig
    assert type(load_config(None, {"policy.kind": "hf"}).policy) is HFConfig
    assert not hasattr(Config().task, "digits") and not hasattr(Config().policy, "hidden_size")


def test_a_key_of_another_kind_is_one_line_naming_the_chosen_kinds_fields():
    message = error({"task.digits": 3})
    assert message.startswith("task.digits: unknown key for task.name 'sort'; valid keys here: ")
    assert "task.length" in message and "task.prompts" in message and "task.operations" not in message
    message = error({"policy.hidden_size": 64})
    assert message.startswith("policy.hidden_size: unknown key for policy.kind 'toy'")
    assert "policy.embedding_dim" in message
    assert "did you mean 'task.digits'" in error({"task.name": "arith", "task.digit": 3})


def test_a_later_layer_that_changes_the_kind_drops_the_earlier_layers_settings_of_the_old_kind(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"task": {"name": "arith", "digits": 3}, "algo": {"loss": "clipped",
                                                                                      "clip_eps_low": 0.1}}))
    cfg = load_config(path, {"task.name": "sort-text", "algo.loss": "naive"})
    assert type(cfg.task) is SortTextConfig and cfg.algo.clip_eps_low == 0.2  # the YAML's value went
    assert load_config(path, {"algo.loss": "dual-clip"}).algo.clip_eps_low == 0.1  # kept: dual-clip has it
    # the same layer may not set a setting of a kind it did not choose
    assert error({"task.name": "sort-text", "task.digits": 3}).startswith("task.digits: unknown key")
    # a recipe's clip range goes when the user picks a loss without one
    assert load_config(None, {"algo.loss": "naive"}, recipe="grpo").algo.loss == "naive"


def test_a_registry_entrys_settings_are_refused_when_another_entry_is_chosen():
    assert error({"algo.dual_clip_c": 4.0}) == (
        "algo.dual_clip_c: a setting of algo.loss 'dual-clip', not of the chosen 'naive' "
        "(which has no settings of its own)")
    message = error({"algo.loss": "clipped", "algo.dual_clip_c": 4.0})
    assert "not of the chosen 'clipped' (which has algo.clip_eps_low, algo.clip_eps_high)" in message
    assert error({"algo.norm_eps": 1e-4}).startswith("algo.norm_eps: a setting of algo.deltas 'gdpo', 'grpo', "
                                                     "'normalized', 'reinforce++'")
    assert error({"algo.otb_leave_one_out": False}).startswith(
        "algo.otb_leave_one_out: a setting of algo.credit 'optimal-token-baseline', not of the chosen 'outcome'")
    assert error({"algo.aggregation_constant": 8.0}).startswith("algo.aggregation_constant: a setting of "
                                                                "algo.aggregation 'seq-sum-constant'")
    cfg = load_config(None, {"algo.loss": "dual-clip", "algo.dual_clip_c": 4.0, "algo.deltas": "grpo",
                             "algo.norm_eps": 1e-4, "algo.aggregation": "seq-sum-constant",
                             "algo.aggregation_constant": 8.0})
    assert (cfg.algo.dual_clip_c, cfg.algo.norm_eps, cfg.algo.aggregation_constant) == (4.0, 1e-4, 8.0)


def test_reward_sources_are_typed_entries_of_their_kind(tmp_path):
    cfg = load_config(None, {"rewards.sources": "[{kind: verifier, weight: 1}, {kind: format, weight: 0.5, "
                                                "name: fmt}]"})
    assert [type(s) for s in cfg.rewards.sources] == [SourceConfig, SourceConfig]
    assert [(s.label, s.weight) for s in cfg.rewards.sources] == [("verifier", 1.0), ("fmt", 0.5)]
    assert load_config(None, {"rewards.sources": "null"}).rewards.sources is None  # a flag clears the list
    assert error({"rewards.sources": "[{kind: verifier, path: x}]"}).startswith(
        "rewards.sources[0].path: unknown key for rewards.sources[0].kind 'verifier'")
    assert error({"rewards.sources": "[{kind: model, path: /nonexistent}]"}).startswith("rewards.sources[0].path")
    assert error({"rewards.sources": "[{kind: model, batch_size: 0, path: x}]"}).startswith(
        "rewards.sources[0].batch_size: 0 must be >= 1")
    assert ModelSourceConfig in [type(x) for x in [SourceConfig.kind_class("model")()]]


def test_a_saved_flat_config_from_before_kinds_still_loads(tmp_path):
    """A run directory's config.yaml written when every task field sat in one class: resume drops
    the fields of other kinds instead of refusing the run."""
    flat = to_dict(load_config(None, {"task.name": "arith"}))
    flat["task"].update({"length": 3, "vocab_size": 5, "count": 4, "copy_weight": 0.0, "prompts": None})
    flat["policy"].update({"hidden_size": 128, "model": None, "chat_template": True})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(flat))
    assert ": unknown key for task.name 'arith'" in error(None, path)
    cfg = load_config(path, saved=True)
    assert type(cfg.task) is ArithConfig and to_dict(cfg) == to_dict(load_config(None, {"task.name": "arith"}))


def test_help_lists_every_kinds_fields_with_its_owner():
    rows = dict(field_help())
    assert rows["--task.operations"].startswith("[task.name arith] ")
    assert rows["--policy.chat_template"].startswith("[policy.kind hf] ")
    assert rows["--algo.dual_clip_c"].startswith("[algo.loss dual-clip] ")
    flags = [flag for flag, _ in field_help()]
    for cls, prefix in [(ArithConfig, "task"), (CountdownConfig, "task"), (SortConfig, "task"),
                        (HFConfig, "policy"), (TransformerPolicyConfig, "policy"), (ToyConfig, "policy")]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):  # a nested section: its leaves are the flags
                assert any(flag.startswith(f"--{prefix}.{f.name}.") for flag in flags)
            else:
                assert f"--{prefix}.{f.name}" in flags
    assert "kind model: kind, weight, name, path, batch_size, trust_remote_code" in rows["--rewards.sources"]


def test_the_rollout_backends_the_config_accepts_are_the_registered_ones():
    from rlvr.distributed.backends import BACKENDS
    assert sorted(ROLLOUT_BACKENDS) == BACKENDS.names()
