"""Any local Hugging Face causal LM as a policy (``--policy hf --model PATH``), with its tokenizer.

Needs the ``hf`` extra (transformers). Prompts go through the tokenizer's chat template when it has
one (a single user turn, generation prompt added), else through the plain tokenizer (its own <bos>
rule). <eos> is the tokenizer's eos token (for chat models the end-of-turn token); <pad> its pad
token, or <eos> when it has none. ``trust_remote_code`` stays off unless the config turns it on.
Sampling prefills each prompt once and expands the model's cache G times, like our transformer.
The training pass is chosen when the policy is built (hf_grouped.py): one pass per row over prompt +
response (the reference, the default), or each prompt prefilled once per group and its cache shared by
its responses (``policy.shared_prefix``). ``policy.gradient_checkpointing`` recomputes each layer's
activations in the backward pass instead of keeping them (transformers' own checkpointing).

With LoRA the policy's ``state_dict`` is its adapters only: checkpoints, the reference refresh and the
weights Ray ships to its rollout workers each step carry the few MB that train, not the frozen base,
which every process loads from ``policy.model``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlvr.errors import ConfigError, UserError
from rlvr.options import opt, section
from rlvr.policies.base import POLICIES, Policy, check_task_kind
from rlvr.policies.hf_grouped import per_row_response_logits, shared_prompt_response_logits
from rlvr.policies.lm import LMConfig, LMPolicy
from rlvr.policies.lora import LoraConfig, LoraReference, add_adapters, merged_copy
from rlvr.policies.tokens import positions_of
from rlvr.safe_load import check_model_folder, check_tokenizer, pretrained_kwargs
from rlvr.tasks import Task, TextTask

CHECKPOINTING_WITH_SHARED_PREFIX = ("policy.gradient_checkpointing: not with policy.shared_prefix (a "
                                    "checkpointed layer runs without the prompt's KV cache the shared pass "
                                    "reads); turn one off")


def import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError("the hf policy needs the hf extra: pip install 'rlvr[hf]'") from None
    transformers.utils.logging.disable_progress_bar()  # rlvr shows its own progress; errors stay one line
    return transformers


class HFCodec:
    """A Hugging Face tokenizer behind the ``Codec`` interface."""

    def __init__(self, tokenizer: Any, *, chat_template: bool) -> None:
        self.tokenizer = tokenizer
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id)
        self.special_ids = frozenset(int(i) for i in tokenizer.all_special_ids)
        self.vocab_size = len(tokenizer)
        self.use_chat = chat_template and getattr(tokenizer, "chat_template", None) is not None
        self.system_prompt: str | None = None  # the task's (task.system_prompt), set by build_policy

    def encode_prompt(self, text: str) -> list[int]:
        """A chat model sees [system,] user turns and the generation prompt; without a chat template
        the system text goes first, a blank line before the prompt."""
        if self.use_chat:
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            text = self.tokenizer.apply_chat_template([*system, {"role": "user", "content": text}],
                                                      add_generation_prompt=True, tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False).input_ids)
        if self.system_prompt:
            text = f"{self.system_prompt}\n\n{text}"
        return list(self.tokenizer(text).input_ids)

    def encode_answer(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def save(self, path: Path) -> None:
        self.tokenizer.save_pretrained(path)


class HFPolicy(LMPolicy):
    def __init__(self, model: Any, codec: HFCodec, *, max_new_tokens: int, top_p: float = 1.0,
                 shared_prefix: bool = False, lora: LoraConfig | None = None) -> None:
        super().__init__()
        self.model = model
        # LoRA: adapters injected into ``model`` in place; peft's wrapper kept unregistered (its weights
        # are ``model``'s) for disabling and merging the adapters
        self.peft = add_adapters(model, lora) if lora is not None and lora.rank > 0 else None
        model.eval()  # peft's new dropout modules start in training mode: dropout only in training_pass
        self.codec = codec
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.shared_prefix = shared_prefix
        # the cache argument's name, read once: transformers >= 5.2x calls it ``cache`` (``past_key_values``
        # warns, then goes in 5.40); older versions only know ``past_key_values``
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.gradient_checkpointing = False

    def enable_gradient_checkpointing(self) -> None:
        """Layer activations recomputed in the backward pass (transformers' checkpointing, non-reentrant,
        so frozen embeddings under LoRA need no input-gradient hook). Not with the shared-prompt pass,
        whose responses read the prompt's cache: checkpointed layers run without one."""
        if self.shared_prefix:
            raise ConfigError(CHECKPOINTING_WITH_SHARED_PREFIX)
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise ConfigError(f"policy.gradient_checkpointing: the model class {type(self.model).__name__} "
                              "does not support it")
        enable = getattr(self.model, "activation_checkpointing_enable", None)  # transformers >= 5.2x
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # the older name, deprecated in 5.2x
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.gradient_checkpointing = True

    @contextmanager
    def training_pass(self) -> Iterator[None]:
        """The modes of a pass that takes gradients. The model stays in eval mode (no dropout: the
        sampler's and the learner's log-probs agree) except LoRA's dropout (``policy.lora.dropout``),
        and, under gradient checkpointing, the model itself (transformers checkpoints only a model in
        training mode), its other dropout modules still in eval mode."""
        if not torch.is_grad_enabled():
            yield
            return
        modes = [(m, m.training) for m in self.model.modules()]
        if self.gradient_checkpointing:
            self.model.train()
        for name, module in self.model.named_modules():
            if isinstance(module, nn.Dropout):
                module.train("lora_dropout" in name)
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training

    @classmethod
    def from_folder(cls, path: Path, *, max_new_tokens: int, top_p: float = 1.0, trust_remote_code: bool = False,
                    chat_template: bool = True, shared_prefix: bool = False,
                    lora: LoraConfig | None = None) -> HFPolicy:
        transformers = import_transformers()
        # a local folder only; one that ships its own code is refused unless trust_remote_code is on
        check_model_folder(path, field="policy.model", trust_remote_code=trust_remote_code)
        kwargs = pretrained_kwargs(path, trust_remote_code=trust_remote_code)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code)
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"policy.model: the tokenizer in {str(path)!r} has no eos token")
        check_tokenizer(len(tokenizer), model.get_input_embeddings().num_embeddings, field="policy.model")
        return cls(model, HFCodec(tokenizer, chat_template=chat_template), max_new_tokens=max_new_tokens, top_p=top_p,
                   shared_prefix=shared_prefix, lora=lora)

    def _run(self, ids: Tensor, positions: Tensor, key_mask: Tensor, cache: Any, use_cache: bool) -> Any:
        return self.model(input_ids=ids, attention_mask=key_mask.long(), position_ids=positions,
                          use_cache=use_cache, **{self.cache_arg: cache})

    def prefill(self, ids: Tensor, key_mask: Tensor) -> tuple[Tensor, Any]:
        out = self._run(ids, positions_of(key_mask), key_mask, None, True)
        return out.logits[:, -1], out[self.cache_arg]

    def decode(self, ids: Tensor, positions: Tensor, key_mask: Tensor, cache: Any) -> tuple[Tensor, Any]:
        out = self._run(ids, positions, key_mask, cache, True)
        return out.logits[:, -1], out[self.cache_arg]

    def expand(self, cache: Any, rows_per_prompt: int, *, room: int = 0) -> Any:
        cache.batch_repeat_interleave(rows_per_prompt)   # in place, per layer: repeat_interleave on the batch dim
        return cache

    def full_logits(self, ids: Tensor, key_mask: Tensor) -> Tensor:
        """(N, S) ids, (N, S) bool key mask -> logits (N, S, V) in one causal pass."""
        return self._run(ids, positions_of(key_mask), key_mask, None, False).logits

    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                        prompt_of: Tensor) -> Tensor:
        """The training pass chosen when the policy was built (hf_grouped.py); ``mask`` unused: the
        padding after <eos> is computed too."""
        with self.training_pass():
            if self.shared_prefix:
                return shared_prompt_response_logits(self.model, prompt_ids, response_ids, prompt_of,
                                                     pad_id=self.codec.pad_id, cache_arg=self.cache_arg)
            return per_row_response_logits(self.model, prompt_ids, response_ids, prompt_of,
                                           pad_id=self.codec.pad_id, keeps_logits=self.keeps_logits)

    @property
    def keeps_logits(self) -> bool:
        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "peft":                      # not a child module: its parameters are ``model``'s
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Every tensor; with LoRA only the adapters (the base is ``policy.model``'s, loaded by every process)."""
        state = super().state_dict(*args, **kwargs)
        if self.peft is not None:
            prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
            for key in [k for k in state if k.startswith(prefix) and "lora_" not in k]:
                del state[key]
        return state

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """With LoRA: exactly the adapters' tensors (a state that also holds base weights, as checkpoints
        written before adapters-only did, has them skipped: the base is loaded from ``policy.model``)."""
        if self.peft is None:
            return super().load_state_dict(state, strict=strict, assign=assign)
        adapters = {k: v for k, v in state.items() if "lora_" in k}
        own = set(self.state_dict())
        missing, unknown = sorted(own - set(adapters)), sorted(set(adapters) - own)
        if strict and (missing or unknown):
            raise UserError(f"policy.lora: the saved adapters do not match this policy's (missing "
                            f"{missing[:2]}, unexpected {unknown[:2]}); the same policy.lora settings are needed")
        return super().load_state_dict(adapters, strict=False, assign=assign)

    def frozen_reference(self) -> torch.nn.Module:
        """With LoRA, the shared base model run with the reference's adapters (policies/lora.py), not a copy."""
        return LoraReference(self) if self.peft is not None else super().frozen_reference()

    def save_hf(self, path: Path) -> None:
        """A plain HF folder (with LoRA: the adapters merged into the weights; loads without peft)."""
        path.mkdir(parents=True, exist_ok=True)
        (merged_copy(self.peft) if self.peft is not None else self.model).save_pretrained(path)
        self.codec.save(path)


def load_policy_folder(path: Path, *, max_new_tokens: int, top_p: float = 1.0,
                       trust_remote_code: bool = False, chat_template: bool = True) -> LMPolicy:
    """A saved policy: our transformer when the folder holds rlvr's character tokenizer, else HF."""
    from rlvr.policies.transformer import TransformerPolicy
    from rlvr.tokenizer import is_char_tokenizer

    if is_char_tokenizer(path):
        return TransformerPolicy.load_hf(path, max_new_tokens=max_new_tokens, top_p=top_p)
    return HFPolicy.from_folder(path, max_new_tokens=max_new_tokens, top_p=top_p,
                                trust_remote_code=trust_remote_code, chat_template=chat_template)


@dataclass
class HFConfig(LMConfig):
    model: str | None = opt(None, "a local Hugging Face model folder")
    trust_remote_code: bool = opt(False, "allow the model folder's own Python code to run")
    chat_template: bool = opt(True, "wrap prompts in the tokenizer's chat template when it has one")
    shared_prefix: bool = opt(False, "training log-probs prefill each prompt once per group and share its "
                              "KV cache with the group's responses (off: one pass per row)")
    max_prompt_length: int = opt(0, "prompt tokens allowed, template included (0: no limit); a longer "
                                 "prompt is an error unless truncate_prompts", ge=0)
    truncate_prompts: bool = opt(False, "cut a prompt longer than max_prompt_length from the left instead")
    stop: list[str] = opt([], "stop strings: a response also ends when its text gains one (kept in the response)")
    gradient_checkpointing: bool = opt(False, "recompute layer activations in the backward pass instead of "
                                       "keeping them (less memory, ~1 more forward); not with shared_prefix")
    lora: LoraConfig = section(LoraConfig, "LoRA adapters (rank 0: off, every weight trains)")

    def check(self) -> None:
        super().check()
        if self.truncate_prompts and not self.max_prompt_length:
            raise ConfigError("policy.truncate_prompts: needs policy.max_prompt_length > 0")
        if self.gradient_checkpointing and self.shared_prefix:
            raise ConfigError(CHECKPOINTING_WITH_SHARED_PREFIX)
        self.lora.check()


@POLICIES.register("hf", config=HFConfig)
def build_hf(cfg: HFConfig, task: Task) -> Policy:
    check_task_kind("hf", task, text=True)
    assert isinstance(task, TextTask)
    if cfg.model is None:
        raise ConfigError("policy.model: the hf policy needs a local model folder (--policy.model PATH)")
    policy = HFPolicy.from_folder(Path(cfg.model), max_new_tokens=cfg.max_new_tokens or task.max_new_tokens,
                                  top_p=cfg.top_p, trust_remote_code=cfg.trust_remote_code,
                                  chat_template=cfg.chat_template, shared_prefix=cfg.shared_prefix, lora=cfg.lora)
    policy.max_prompt_length, policy.truncate_prompts = cfg.max_prompt_length, cfg.truncate_prompts
    policy.stop = tuple(s for s in cfg.stop if s)
    if cfg.gradient_checkpointing:
        policy.enable_gradient_checkpointing()
    return policy
