"""Policies by kind. ``build_policy(cfg, task)`` is the one way in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rlvr.errors import ConfigError
from rlvr.policies.base import Policy, Samples
from rlvr.policies.toy import ToyPolicy
from rlvr.registry import Registry

if TYPE_CHECKING:
    from rlvr.config import PolicyConfig
    from rlvr.tasks import Task

POLICIES: Registry[Callable[[PolicyConfig, Task], Policy]] = Registry("policy kind")


def check_task_kind(kind: str, task: Task, *, text: bool) -> None:
    from rlvr.tasks.text import TextTask

    if isinstance(task, TextTask) != text:
        wanted = "a text task (sort-text, arith, countdown, rg:NAME)" if text else "a token task (sort)"
        raise ConfigError(f"policy.kind: {kind!r} needs {wanted}; task.name is {task.name!r}")


@POLICIES.register("toy")
def _toy(cfg: PolicyConfig, task: Task) -> Policy:
    check_task_kind("toy", task, text=False)
    return ToyPolicy(vocab_size=task.vocab_size, embedding_dim=cfg.embedding_dim,
                     prompt_length=task.prompt_length, response_length=task.response_length,
                     init_scale=cfg.init_scale)


@POLICIES.register("transformer")
def _transformer(cfg: PolicyConfig, task: Task) -> Policy:
    from rlvr.policies.decoder import Transformer, TransformerConfig
    from rlvr.policies.transformer import TransformerFastPaths, TransformerPolicy
    from rlvr.tokenizer import CharTokenizer

    check_task_kind("transformer", task, text=True)
    max_new = cfg.max_new_tokens or task.max_new_tokens  # type: ignore[attr-defined]
    # the fast paths, chosen here once; policy.shared_prefix is the user-facing name of the grouped pass
    fast = TransformerFastPaths(grouped_training_pass=cfg.shared_prefix)
    if cfg.model is not None:
        path = Path(cfg.model)
        if not (path / "config.json").is_file():
            raise ConfigError(f"policy.model: {cfg.model!r} is not a model folder (no config.json)")
        return TransformerPolicy.load_hf(path, max_new_tokens=max_new, top_p=cfg.top_p, fast=fast)
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"policy.num_heads: {cfg.num_heads} does not divide policy.hidden_size {cfg.hidden_size}")
    texts = task.alphabet_texts()  # type: ignore[attr-defined]
    tokenizer = CharTokenizer.from_texts(texts)
    context = max(len(t) for t in texts) + 1 + max_new  # context length follows the task
    net = Transformer(TransformerConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, max_positions=max(64, context),
        tie_embeddings=cfg.tie_embeddings, init_std=cfg.init_std))
    return TransformerPolicy(net, tokenizer, max_new_tokens=max_new, top_p=cfg.top_p, fast=fast)


@POLICIES.register("hf")
def _hf(cfg: PolicyConfig, task: Task) -> Policy:
    from rlvr.policies.hf import HFPolicy

    check_task_kind("hf", task, text=True)
    if cfg.model is None:
        raise ConfigError("policy.model: the hf policy needs a local model folder (--policy.model PATH)")
    return HFPolicy.from_folder(Path(cfg.model), max_new_tokens=cfg.max_new_tokens or task.max_new_tokens,  # type: ignore[attr-defined]
                                top_p=cfg.top_p, trust_remote_code=cfg.trust_remote_code,
                                chat_template=cfg.chat_template)


def build_policy(cfg: PolicyConfig, task: Task) -> Policy:
    policy = POLICIES.get(cfg.kind)(cfg, task)
    if cfg.prompt_template != "{prompt}":
        if "{prompt}" not in cfg.prompt_template:
            raise ConfigError(f"policy.prompt_template: {cfg.prompt_template!r} has no {{prompt}} placeholder")
        policy.prompt_template = cfg.prompt_template  # type: ignore[assignment]
    return policy


__all__ = ["POLICIES", "Policy", "Samples", "ToyPolicy", "build_policy"]
