"""LoRA adapters on a Hugging Face policy through peft (``policy.lora.rank > 0``; the ``lora`` extra).

Only the adapters train: peft freezes every base weight, so ``Policy.trainable_parameters()`` yields the
adapters' A and B. The base weights stay in the policy's ``state_dict`` (a checkpoint resumes exactly);
``merged_copy`` folds the adapters into a plain model for ``save_hf`` (RUN_DIR/final/ loads without peft).

The reference policy is not a second model: ``LoraReference`` runs the policy's own model with its own
snapshot of the adapter weights, under no_grad. While that snapshot is the initial one (every B zero,
so the adapters add exactly 0) it runs the base model with the adapters disabled; after a refresh or
an SFT warm start (``load_state_dict`` from the policy) it swaps its adapter weights in for the pass
and back (exact copies of a few small tensors).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rlvr.errors import ConfigError, UserError
from rlvr.options import opt


@dataclass
class LoraConfig:
    """``policy.lora``: low-rank adapters instead of training every weight."""

    rank: int = opt(0, "LoRA rank r (0: off, every weight trains)", ge=0)
    alpha: float = opt(16.0, "LoRA scale numerator: the update is alpha / r * B A", gt=0.0)
    dropout: float = opt(0.0, "dropout on the adapters' input in training", ge=0.0, le=1.0)
    target_modules: list[str] = opt(["q_proj", "k_proj", "v_proj", "o_proj"],
                                    "names of the linear layers that get adapters")

    def check(self) -> None:
        if self.rank and not self.target_modules:
            raise ConfigError("policy.lora.target_modules: LoRA needs at least one module name")


def import_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise UserError("policy.lora.rank > 0 needs the lora extra: pip install 'rlvr[lora]'") from None
    return peft


def add_adapters(model: nn.Module, cfg: LoraConfig) -> Any:
    """Adapters injected into ``model`` in place (its base weights frozen); returns peft's wrapper,
    which the policy keeps for disabling and merging. Errors name the missing module."""
    peft = import_peft()
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(cfg.target_modules) - names)
    if missing:
        raise ConfigError(f"policy.lora.target_modules: the model has no module named {missing[0]!r}")
    config = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                             target_modules=list(cfg.target_modules), bias="none")
    with warnings.catch_warnings():  # peft 0.21 asks transformers 5.2x the deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return peft.get_peft_model(model, config)


def merged_copy(peft_model: Any) -> nn.Module:
    """A plain model with W + alpha / r * B A in every adapted layer (the training model untouched)."""
    return copy.deepcopy(peft_model).merge_and_unload()


def adapter_parameters(model: nn.Module) -> dict[str, Tensor]:
    return {name: p for name, p in model.named_parameters() if "lora_" in name}


class LoraReference(nn.Module):
    """The frozen reference of a LoRA policy: the policy's model with this object's adapter weights
    (``snapshot``), no gradient. Only the snapshot is state (``state_dict``); loading a policy's
    ``state_dict`` takes its adapters."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = [policy]                 # a list: the shared model is not this module's child
        self.names = list(adapter_parameters(policy.model))
        self.snapshot = nn.ParameterList(nn.Parameter(p.detach().clone(), requires_grad=False)
                                         for p in adapter_parameters(policy.model).values())

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {f"model.{name}": p.detach().clone() for name, p in zip(self.names, self.snapshot, strict=True)}

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        with torch.no_grad():
            for name, p in zip(self.names, self.snapshot, strict=True):
                p.copy_(state[f"model.{name}"])

    @property
    def at_base(self) -> bool:
        """Every B of the snapshot zero: the adapters add nothing, the base model is the reference."""
        return all(not bool(p.any()) for name, p in zip(self.names, self.snapshot, strict=True) if "lora_B" in name)

    @contextmanager
    def applied(self) -> Iterator[None]:
        policy = self.policy[0]
        training = policy.model.training
        policy.model.eval()
        try:
            if self.at_base:
                with policy.peft.disable_adapter():
                    yield
                return
            live = adapter_parameters(policy.model)
            saved = [live[name].detach().clone() for name in self.names]
            with torch.no_grad():
                for name, p in zip(self.names, self.snapshot, strict=True):
                    live[name].copy_(p)
            try:
                yield
            finally:
                with torch.no_grad():
                    for name, p in zip(self.names, saved, strict=True):
                        live[name].copy_(p)
        finally:
            policy.model.train(training)

    @torch.no_grad()
    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        with self.applied():
            return self.policy[0].logprobs(prompt_ids, response_ids, mask, group_size=group_size,
                                           temperature=temperature)
