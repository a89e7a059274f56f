"""The reference decoder: a small Llama-style transformer (RMSNorm, rotary positions, SwiGLU,
optionally tied embeddings) with a KV cache, and what it computes for RL -- ``generate`` (sampling
that recomputes every step) and ``logprobs`` (one pass over prompt + response per row).

This file is the definition; the fast paths compute the same numbers differently and are tested
against it (tests/test_fast_paths.py): grouped.py (training: one tree-masked pass per group),
fused_decode.py (sampling: one fused step over preallocated key/value slots), decode_rows.py
(sampling: rows equal so far decoded once, finished rows dropped), distinct.py (training: each
distinct response scored once). transformer.py builds the policy from this model and the fast
paths chosen in config; llama_format.py saves and loads it as a Hugging Face Llama folder.

Module and parameter names follow ``transformers.LlamaForCausalLM`` (model.embed_tokens,
model.layers.i.self_attn.q_proj, ..., lm_head), so the HF export is a renaming-free copy of the
state dict and ``AutoModelForCausalLM`` reproduces our logits exactly (tests/test_transformer.py).
Shapes: B prompts, G group size, N = B * G responses, S new tokens, K = cached + new tokens,
T response tokens, D hidden, nh heads, hs = D / nh, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlvr.algorithms.logprobs import token_entropy, token_logprobs
from rlvr.policies.base import Samples
from rlvr.policies.tokens import draw, joined, positions_of, prompt_mask, stacked

KVCache = list[tuple[Tensor, Tensor]]   # per layer: keys, values (B, nh, K, hs)


@dataclass
class TransformerConfig:
    vocab_size: int
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 64
    tie_embeddings: bool = True
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    init_std: float = 0.02


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x32.to(x.dtype)


def rotary(positions: Tensor, head_size: int, theta: float) -> tuple[Tensor, Tensor]:
    """positions (B, S) -> cos, sin (B, 1, S, hs), the Llama (rotate-half) layout."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float) / head_size)
    freqs = positions.float()[..., None] * inv_freq                       # (B, S, hs/2)
    emb = torch.cat([freqs, freqs], -1)[:, None]                          # (B, 1, S, hs)
    return emb.cos(), emb.sin()


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)

class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, allowed: Tensor,
                past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Any]:
        """x (B, S, D) -> (B, S, D), the keys and values (B, nh, K, hs)."""
        B, S, D = x.shape
        heads = lambda t: t.view(B, S, self.num_heads, D // self.num_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))       # (B, nh, S, hs)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)                  # (B, nh, K, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)                      # (B, nh, S, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, S, D)), (k, v)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, allowed: Tensor,
                past: Any) -> tuple[Tensor, Any]:
        attn, kv = self.self_attn(self.input_layernorm(x), cos, sin, allowed, past)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Decoder(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():   # GPT-2: scale the residual projections by depth
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=cfg.init_std / math.sqrt(2 * cfg.num_layers))
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        table = torch.arange(2 * cfg.max_positions)[None]                  # positions 0..2M-1, computed once
        cos, sin = rotary(table, cfg.hidden_size // cfg.num_heads, cfg.rope_theta)
        self.register_buffer("rope_cos", cos[0, 0], persistent=False)       # (2M, hs)
        self.register_buffer("rope_sin", sin[0, 0], persistent=False)

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions (B, S) -> cos, sin (B, 1, S, hs): rows of the precomputed table (same values as
        ``rotary``), computed afresh only past its end."""
        if positions.numel() and int(positions.max()) >= self.rope_cos.shape[0]:
            c = self.config
            return rotary(positions, c.hidden_size // c.num_heads, c.rope_theta)
        return self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)

    def forward(self, ids: Tensor, positions: Tensor, key_mask: Tensor,
                cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """ids, positions (B, S); key_mask (B, K) bool over cached + new tokens -> hidden (B, S, D), cache.
        The one forward: prefill (no cache), a decode step (S = 1 against the cache) or a whole pass."""
        S, K = ids.shape[1], key_mask.shape[1]
        q_index = torch.arange(K - S, K)[:, None]
        k_index = torch.arange(K)[None]
        # causal, no attention to padding; a padded query attends to itself (keeps softmax finite)
        allowed = ((k_index <= q_index) & key_mask[:, None, None, :]) | (k_index == q_index)  # (B, 1, S, K)
        cos, sin = self.rope(positions)
        x = self.model.embed_tokens(ids)                                            # (B, S, D)
        new_cache: KVCache = []
        for i, layer in enumerate(self.model.layers):
            x, kv = layer(x, cos, sin, allowed, None if cache is None else cache[i])
            new_cache.append(kv)
        x = self.model.norm(x)
        return x, new_cache

    def logits(self, ids: Tensor, key_mask: Tensor) -> Tensor:
        """ids (N, S), key_mask (N, S) bool (left pads off) -> logits (N, S, V): one causal pass, no cache."""
        hidden, _ = self(ids, positions_of(key_mask), key_mask)
        return self.lm_head(hidden)

    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor,
                        pad_id: int) -> Tensor:
        """Logits predicting each response token (N, T, V): one pass over prompt + response per row,
        ``prompt_of`` (N,) the prompt row of each response."""
        ids, key_mask = joined(prompt_ids, response_ids, prompt_of, pad_id)
        return self.logits(ids, key_mask)[:, prompt_ids.shape[1] - 1: -1]

    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor, *, pad_id: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Per-token log pi(y_t | prompt, y_<t) and entropies (N, T) at ``temperature``."""
        logits = self.response_logits(prompt_ids, response_ids, prompt_of, pad_id).float() / temperature
        return token_logprobs(logits, response_ids), token_entropy(logits)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, group_size: int, *, max_new_tokens: int, pad_id: int,
                 eos_id: int, generator: torch.Generator | None, temperature: float = 1.0,
                 top_p: float = 1.0) -> Samples:
        """G responses per prompt (generator None: greedy), each step one pass over the whole sequence
        so far; a row stops at <eos>. Returns ids, mask and the sampled tokens' log-probs (N, T)."""
        seq = prompt_ids.repeat_interleave(group_size, 0)                    # (N, P)
        key_mask = prompt_mask(prompt_ids, pad_id).repeat_interleave(group_size, 0)
        done = torch.zeros(seq.shape[0], dtype=torch.bool)
        tokens, logps, live = [], [], []
        for _ in range(max_new_tokens):
            token, logp = draw(self.logits(seq, key_mask)[:, -1], done, pad_id=pad_id,
                               temperature=temperature, top_p=top_p, generator=generator)
            tokens.append(token)
            logps.append(logp)
            live.append(~done)
            done = done | (token == eos_id)
            if bool(done.all()):
                break
            seq = torch.cat([seq, token[:, None]], 1)
            key_mask = torch.cat([key_mask, torch.ones_like(done)[:, None]], 1)
        return stacked(tokens, logps, live)
