"""Our transformer as a policy: the reference decoder (policies/decoder.py) + the character tokenizer,
running the fast paths chosen once when the policy is built (``TransformerFastPaths``; build_policy
maps the config onto it). Each fast path lives in its own module and computes what the reference
computes (tests/test_fast_paths.py):

    training pass     grouped.py       one tree-masked pass per group    | Transformer.response_logits
    decode step       fused_decode.py  fused ops, preallocated slots      | Transformer.forward + head
    decode rows       decode_rows.py   shared-prefix rows, compaction     | every row to the end
    scoring           distinct.py      each distinct response once        | every row (all LM policies)

Shapes: B prompts, G group size, N responses, U decode rows, P prompt width, T response tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.policies.base import POLICIES, Policy, check_task_kind
from rlvr.policies.decode_rows import DecodeRows
from rlvr.policies.decoder import KVCache, Transformer, TransformerConfig
from rlvr.policies.fused_decode import FusedDecoder, FusedDecoding
from rlvr.policies.grouped import grouped_training_logits
from rlvr.policies.llama_format import load_llama, save_llama
from rlvr.policies.lm import LMConfig, LMPolicy
from rlvr.policies.tokens import positions_of
from rlvr.tasks import Task, TextTask
from rlvr.tokenizer import CharTokenizer

__all__ = ["Transformer", "TransformerConfig", "TransformerFastPaths", "TransformerPolicy",
           "TransformerPolicyConfig"]


@dataclass(frozen=True)
class TransformerFastPaths:
    """Which fast paths the policy runs; fixed when it is built (all on by default). Off, each falls
    back to the reference's way of computing the same numbers."""

    grouped_training_pass: bool = True  # training log-probs: each group's prompt + responses in one
    #                                     tree-masked pass on the real tokens (config: policy.shared_prefix)
    fused_decode: bool = True           # sampling: FusedDecoder, else the module's cached forward
    shared_decode_rows: bool = True     # sampling: responses equal so far share one decode row
    compact_below: float = 0.75         # sampling: drop finished rows once fewer than this share are live


def per_row_training_logits(net: Transformer, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                            prompt_of: Tensor, pad_id: int) -> Tensor:
    """The reference's training pass, one per row over prompt + response (``mask`` unused: the
    padding after <eos> is computed too)."""
    return net.response_logits(prompt_ids, response_ids, prompt_of, pad_id)


def repeat_cache(cache: KVCache, group_size: int) -> KVCache:
    """Each prompt's keys and values repeated G times: (B, ...) -> (B * G, ...), a group's rows adjacent."""
    return [(k.repeat_interleave(group_size, 0), v.repeat_interleave(group_size, 0)) for k, v in cache]


class CachedRows:
    """The plain decode step: ``Transformer.forward`` on one new token per row against its KV cache."""

    def __init__(self, net: Transformer, cache: KVCache) -> None:
        self.net, self.cache = net, cache

    def select(self, rows: Tensor) -> CachedRows:
        """Continue with the given rows (index (U,); a repeated row is copied: a split)."""
        self.cache = [(k[rows], v[rows]) for k, v in self.cache]
        return self

    def step(self, ids: Tensor, positions: Tensor, key_mask: Tensor) -> Tensor:
        """ids, positions (U,); key_mask (U, K) over cached + this token -> logits (U, V)."""
        hidden, self.cache = self.net(ids[:, None], positions[:, None], key_mask, self.cache)
        return self.net.lm_head(hidden[:, -1])


class CachedDecoding:
    """The decode strategy without the fused step: the prompt cache repeated, stepped by the module."""

    def start(self, net: Transformer, prompt_cache: KVCache, group_size: int, capacity: int) -> CachedRows:
        return CachedRows(net, repeat_cache(prompt_cache, group_size))


class TransformerPolicy(LMPolicy):
    """Our transformer + the character tokenizer, with the fast paths ``fast`` names."""

    def __init__(self, net: Transformer, tokenizer: CharTokenizer, *, max_new_tokens: int,
                 top_p: float = 1.0, fast: TransformerFastPaths = TransformerFastPaths()) -> None:
        super().__init__()
        self.net = net
        self.codec = tokenizer
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.fast = fast
        self.training_logits = grouped_training_logits if fast.grouped_training_pass else per_row_training_logits
        self.decoding = FusedDecoding() if fast.fused_decode else CachedDecoding()
        self.decode_rows = DecodeRows(shared=fast.shared_decode_rows, compact_below=fast.compact_below)

    def prefill(self, ids: Tensor, key_mask: Tensor) -> tuple[Tensor, KVCache]:
        hidden, cache = self.net(ids, positions_of(key_mask), key_mask)
        return self.net.lm_head(hidden[:, -1]), cache                          # only the last position

    def expand(self, cache: KVCache, rows_per_prompt: int, *, room: int = 0) -> FusedDecoder | CachedRows:
        """Each prompt's cache repeated, in the chosen decoder, with room for the response (or ``room``
        tokens: a whole episode)."""
        return self.decoding.start(self.net, cache, rows_per_prompt,
                                   cache[0][0].shape[2] + (room or self.max_new_tokens))

    def decode(self, ids: Tensor, positions: Tensor, key_mask: Tensor,
               cache: FusedDecoder | CachedRows) -> tuple[Tensor, FusedDecoder | CachedRows]:
        return cache.step(ids[:, -1], positions[:, -1], key_mask), cache

    def select(self, cache: FusedDecoder | CachedRows, rows: Tensor) -> FusedDecoder | CachedRows:
        return cache.select(rows)

    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                        prompt_of: Tensor) -> Tensor:
        return self.training_logits(self.net, prompt_ids, response_ids, mask, prompt_of, self.codec.pad_id)

    def save_hf(self, path: Path) -> None:
        save_llama(self.net, path, self.codec)

    @classmethod
    def load_hf(cls, path: Path, *, max_new_tokens: int, top_p: float = 1.0,
                fast: TransformerFastPaths = TransformerFastPaths()) -> TransformerPolicy:
        return cls(load_llama(path), CharTokenizer.load(path), max_new_tokens=max_new_tokens, top_p=top_p, fast=fast)


@dataclass
class TransformerPolicyConfig(LMConfig):
    hidden_size: int = opt(128, "hidden size D", ge=1)
    intermediate_size: int = opt(512, "SwiGLU inner size", ge=1)
    num_layers: int = opt(4, "decoder blocks", ge=1)
    num_heads: int = opt(4, "attention heads (must divide hidden_size)", ge=1)
    tie_embeddings: bool = opt(True, "share the input embedding and the output head")
    init_std: float = opt(0.02, "std of the initial weights", gt=0.0)
    shared_prefix: bool = opt(True, "training log-probs prefill each prompt once per group")
    model: str | None = opt(None, "start from this exported model folder instead of a random init")

    def check(self) -> None:
        super().check()
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"policy.num_heads: {self.num_heads} does not divide policy.hidden_size "
                              f"{self.hidden_size}")


@POLICIES.register("transformer", config=TransformerPolicyConfig)
def build_transformer(cfg: TransformerPolicyConfig, task: Task) -> Policy:
    check_task_kind("transformer", task, text=True)
    assert isinstance(task, TextTask)
    max_new = cfg.max_new_tokens or task.max_new_tokens
    # the fast paths, chosen here once; policy.shared_prefix is the user-facing name of the grouped pass
    fast = TransformerFastPaths(grouped_training_pass=cfg.shared_prefix)
    if cfg.model is not None:
        path = Path(cfg.model)
        if not (path / "config.json").is_file():
            raise ConfigError(f"policy.model: {cfg.model!r} is not a model folder (no config.json)")
        return TransformerPolicy.load_hf(path, max_new_tokens=max_new, top_p=cfg.top_p, fast=fast)
    texts = task.alphabet_texts()
    tokenizer = CharTokenizer.from_texts(texts)
    context = max(len(t) for t in texts) + 1 + max_new  # context length follows the task
    net = Transformer(TransformerConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, max_positions=max(64, context),
        tie_embeddings=cfg.tie_embeddings, init_std=cfg.init_std))
    return TransformerPolicy(net, tokenizer, max_new_tokens=max_new, top_p=cfg.top_p, fast=fast)
