"""Our transformer: a small Llama-style decoder in one file (RMSNorm, rotary positions, SwiGLU,
optionally tied embeddings), with a KV cache, exportable to the Hugging Face Llama format.

Module and parameter names follow ``transformers.LlamaForCausalLM`` (model.embed_tokens,
model.layers.i.self_attn.q_proj, ..., lm_head), so the HF export is a renaming-free copy of the
state dict and ``AutoModelForCausalLM`` reproduces our logits exactly (tests/test_transformer.py).
Shapes: B rows, S new tokens, K = cached + new tokens, D hidden, nh heads, hs = D / nh, V vocab.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from rlvr.policies.lm import LMPolicy, positions_of, prompt_mask
from rlvr.runs.rundir import atomic_write_text
from rlvr.tokenizer import CharTokenizer

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


def packed(x: Tensor, rows: Tensor) -> Tensor:
    """(B, S, ...) -> (M, ...): the positions where ``rows`` (B, S) is True, in row-major order (an
    index_select: its backward is an index_add, where boolean indexing's is a slow index_put)."""
    return x.flatten(0, 1).index_select(0, rows.flatten().nonzero().squeeze(-1))


def unpacked(x: Tensor, rows: Tensor) -> Tensor:
    """(M, D) -> (B, S, D), zeros where ``rows`` is False (the inverse of ``packed``)."""
    index = rows.flatten().nonzero().squeeze(-1)
    return x.new_zeros(rows.numel(), x.shape[-1]).index_copy(0, index, x).view(*rows.shape, -1)


def repeat_cache(cache: KVCache, group_size: int) -> KVCache:
    """Each prompt's keys and values repeated G times: (B, ...) -> (B * G, ...), a group's rows adjacent."""
    return [(k.repeat_interleave(group_size, 0), v.repeat_interleave(group_size, 0)) for k, v in cache]


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
        (Training's shared-prefix log-probs run ``grouped`` instead: packed, one pass per group.)"""
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

    def grouped(self, ids: Tensor, layout: GroupLayout) -> Tensor:
        """One pass over group-packed tokens: ids (L,) in ``layout``'s flat order -> hidden (L, D).
        Each group's prompt and responses form one sequence under the tree mask, so the prompt runs
        once per group, every projection runs on the L real tokens only, and the whole batch is one
        pass (not a prompt pass plus a response pass reading its cache). Rotary as one complex product
        on each (x_i, x_{i + hs/2}) pair, which leaves q and k in the interleaved layout (the same
        permutation on both: attention unchanged); q k and v scattered into the (B, Lg) grid, the
        attention output gathered back."""
        c = self.config
        nh, hs, d = c.num_heads, c.hidden_size // c.num_heads, c.hidden_size
        cos, sin = self.rope(layout.positions[None])                              # (1, 1, L, hs)
        rot = torch.complex(cos[0, 0, :, : hs // 2], sin[0, 0, :, : hs // 2])[:, None]  # (L, 1, hs/2)
        b, length = layout.groups, layout.length
        x = self.model.embed_tokens(ids)                                          # (L, D)
        n, eps = x.shape[0], c.rms_norm_eps
        for block in self.model.layers:
            attn, mlp = block.self_attn, block.mlp
            h = F.rms_norm(x, (d,), block.input_layernorm.weight, eps)
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
            halves = torch.stack([q, k], 1).view(n, 2 * nh, 2, hs // 2).float()  # (complex: no bf16)
            qk = torch.view_as_real(torch.complex(halves[:, :, 0], halves[:, :, 1]) * rot).reshape(n, 2 * d).to(v.dtype)
            qk = qk.new_zeros(b * length, 2 * d).index_copy(0, layout.slot, qk)
            v = v.new_zeros(b * length, d).index_copy(0, layout.slot, v)
            q, k = qk.view(b, length, 2, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, Lg, hs)
            y = F.scaled_dot_product_attention(q, k, v.view(b, length, nh, hs).transpose(1, 2),
                                               attn_mask=layout.allowed)
            x = x + attn.o_proj(y.transpose(1, 2).reshape(-1, d).index_select(0, layout.slot))
            h = F.rms_norm(x, (d,), block.post_attention_layernorm.weight, eps)
            x = x + mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        return F.rms_norm(x, (d,), self.model.norm.weight, eps)

    # ---------------------------------------------------------------- Hugging Face Llama format
    def hf_config(self, tokenizer: CharTokenizer | None = None) -> dict[str, Any]:
        c = self.config
        tok = tokenizer or CharTokenizer("")
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
            "num_key_value_heads": c.num_heads, "head_dim": c.hidden_size // c.num_heads,
            "max_position_embeddings": c.max_positions, "rms_norm_eps": c.rms_norm_eps,
            "rope_theta": c.rope_theta, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            "tie_word_embeddings": c.tie_embeddings, "initializer_range": c.init_std,
            "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
            "torch_dtype": "float32", "use_cache": True, "rlvr": asdict(c),
        }

    def save_hf(self, path: Path, tokenizer: CharTokenizer) -> None:
        """config.json + model.safetensors (+ the tokenizer's files): a LlamaForCausalLM folder."""
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_embeddings:
            state.pop("lm_head.weight")
        tmp = path / ".model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.replace(path / "model.safetensors")
        atomic_write_text(path / "config.json", json.dumps(self.hf_config(tokenizer), indent=1))
        atomic_write_text(path / "generation_config.json", json.dumps(
            {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}))
        tokenizer.save(path)

    @classmethod
    def load_hf(cls, path: Path) -> Transformer:
        cfg = TransformerConfig(**json.loads((path / "config.json").read_text())["rlvr"])
        model = cls(cfg)
        state = load_file(str(path / "model.safetensors"))
        model.load_state_dict(state, strict=not cfg.tie_embeddings)
        if cfg.tie_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        return model


@dataclass
class GroupLayout:
    """Where each token of a group-packed pass sits. Flat order (L tokens): the B prompts' P slots,
    then the responses' live inputs in row-major order. Group b's sequence (Lg slots): its prompt, then
    the inputs of each of its responses one after another, then empty slots."""

    slot: Tensor        # (L,) index of each flat token in the (B * Lg) grid
    positions: Tensor   # (L,) rotary position of each flat token
    allowed: Tensor     # (B, 1, Lg, Lg) bool: query attends to key
    groups: int         # B
    length: int         # Lg


def offsets_in_group(prompt_of: Tensor, counts: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Responses laid out one after another behind their prompt: each one's start within its group
    (N,) and each group's total (B,), for ``counts`` (N,) tokens per response, in row order."""
    totals = torch.zeros(groups, dtype=torch.long).index_add_(0, prompt_of, counts)
    order = torch.argsort(prompt_of, stable=True)                             # rows grouped by prompt
    before = torch.cumsum(counts[order], 0) - counts[order] - (torch.cumsum(totals, 0) - totals)[prompt_of[order]]
    return torch.empty_like(counts).index_copy_(0, order, before), totals


def split_groups(prompt_of: Tensor, counts: Tensor, groups: int, budget: int) -> tuple[Tensor, Tensor]:
    """Cut each prompt's responses into sequences of about ``budget`` response tokens: a sequence's
    tree-mask attention is dense, so its cost grows with its length squared, which a large group of
    long responses would blow up. A response goes to the sequence its start falls in (so a sequence
    can run past the budget by one response). Returns the prompt of each sequence (C,) and the
    sequence of each response (N,); prompts without responses get none."""
    offset, _ = offsets_in_group(prompt_of, counts, groups)
    part = offset // max(budget, 1)
    stride = int(part.max()) + 1 if part.numel() else 1
    keys, sequence_of = torch.unique(prompt_of * stride + part, return_inverse=True)
    return keys // stride, sequence_of


def group_layout(pmask: Tensor, live: Tensor, prompt_of: Tensor) -> GroupLayout:
    """pmask (B, P) bool (left padding off); live (N, T1) bool, the response inputs to compute (each
    row's live inputs first); prompt_of (N,). The tree mask: a prompt token sees its prompt's earlier
    tokens, a response token its prompt and its own earlier tokens -- what each sees in a separate pass
    over prompt + response -- and a slot nothing else may see (padding, empty) sees only itself."""
    groups, width = pmask.shape
    rows, t1 = live.shape
    offset, totals = offsets_in_group(prompt_of, live.sum(1), groups)         # (N,), (B,)
    length = width + int(totals.max()) if rows else width
    t = torch.arange(t1)[None]
    response_slot = (prompt_of[:, None] * length + width + offset[:, None] + t)[live]       # (M,)
    prompt_slot = (torch.arange(groups)[:, None] * length + torch.arange(width)[None]).flatten()
    slot = torch.cat([prompt_slot, response_slot])
    start = pmask.sum(1)
    positions = torch.cat([positions_of(pmask).flatten(), (start[prompt_of][:, None] + t)[live]])
    segment = torch.full((groups * length,), -1, dtype=torch.long)            # 0 prompt, n + 1 response n
    segment[response_slot] = torch.arange(1, rows + 1)[:, None].expand(rows, t1)[live]
    segment[prompt_slot] = 0
    visible = torch.zeros(groups * length, dtype=torch.bool)                   # keys anyone may see
    visible[prompt_slot] = pmask.flatten()
    visible[response_slot] = True
    segment, visible = segment.view(groups, length), visible.view(groups, length)
    i = torch.arange(length)
    causal = i[:, None] >= i[None, :]                                          # query slot >= key slot
    related = (segment[:, :, None] == segment[:, None, :]) | (segment[:, None, :] == 0)
    allowed = (causal & related & visible[:, None, :]) | (i[:, None] == i[None, :])
    return GroupLayout(slot, positions, allowed[:, None], groups, length)


def fused_weights(net: Transformer) -> tuple[list[dict[str, Tensor]], Tensor]:
    """The weights ``FusedDecoder`` multiplies by (no gradient), transposed for ``x @ W``: per layer,
    [q k v] as one matrix whose columns run head by head (q_h, k_h, v_h), with q scaled by 1 / sqrt(hs)
    and q's and k's dims in the interleaved rotary layout (x0 y0 x1 y1 ... for the rotate-half pairs);
    [gate up] as one; each RMSNorm's weight folded into the product after it (norm(x) W = (x r)(w W)).
    Also the head, with the final norm's weight folded in. Returns (layers, head)."""
    c = net.config
    nh, hs, d = c.num_heads, c.hidden_size // c.num_heads, c.hidden_size
    perm = rotary_interleave(hs)
    with torch.no_grad():
        layers = []
        for b in net.model.layers:
            a = b.self_attn
            qkv = torch.stack([a.q_proj.weight.view(nh, hs, d)[:, perm] / math.sqrt(hs),
                               a.k_proj.weight.view(nh, hs, d)[:, perm], a.v_proj.weight.view(nh, hs, d)], 1)
            layers.append({
                "qkv": (qkv.reshape(3 * d, d) * b.input_layernorm.weight).t(),            # (D, nh*3*hs)
                "o": a.o_proj.weight.detach().t(), "down": b.mlp.down_proj.weight.detach().t(),
                "gate_up": (torch.cat([b.mlp.gate_proj.weight, b.mlp.up_proj.weight])
                            * b.post_attention_layernorm.weight).t()})
        head = (net.lm_head.weight * net.model.norm.weight).t()                            # (D, V)
    return layers, head


def rotary_interleave(head_size: int) -> Tensor:
    """The permutation of a head's dims that puts each rotate-half pair side by side: 0, h/2, 1, h/2 + 1, ..."""
    half = head_size // 2
    return torch.stack([torch.arange(half), torch.arange(half, head_size)], 1).flatten()


class SlotPool:
    """Key/value slot buffers kept from one sampling call to the next: the same shapes come back every
    step, and reusing memory skips the page faults of fresh megabyte allocations (which cost as much as
    the decode's matrix products on a busy machine). Buffers start as zeros and only ever hold finite
    keys and values, so a slot not yet written this call is finite and masked out by the -inf bias."""

    def __init__(self) -> None:
        self.buffers: dict[tuple, Tensor] = {}

    def get(self, name: tuple, rows: int, *shape: int) -> Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape[1:] != shape or buf.shape[0] < rows:
            buf = self.buffers[name] = torch.zeros(rows, *shape)
        return buf[:rows]


class FusedDecoder:
    """Sampling's decode step (one new token per row, no gradient) in as few operations as it takes:
    q, k, v from one matrix product, gate and up from another, the norms' weights and the attention
    scale folded into them, and the logits from the head with the final norm folded in
    (``fused_weights``); rotary positions as one in-place complex product on q and k together (their
    dims in the interleaved layout -- the same permutation on both leaves every dot product, hence
    attention, unchanged); keys and values side by side in preallocated slots (N*nh, capacity, 2, hs)
    from a ``SlotPool``, so one copy writes both, a group's shared prompt written once per prompt, and
    an additive mask over the slots; the residual adds fused into the output products (addmm).
    Computes what ``Transformer.forward`` + the head compute (tests/test_fast_paths.py)."""

    def __init__(self, net: Transformer, weights: tuple[list[dict[str, Tensor]], Tensor],
                 prompt_cache: KVCache, group_size: int, capacity: int, pool: SlotPool) -> None:
        b, nh, length, hs = prompt_cache[0][0].shape
        n = b * group_size
        self.net, (self.weights, self.head), self.n, self.nh, self.hs = net, weights, n, nh, hs
        self.capacity, self.pool, self.side = capacity, pool, 0          # compaction copies to the other side
        perm = rotary_interleave(hs)
        self.slots = []
        for i, (k, v) in enumerate(prompt_cache):                         # (B, nh, P, hs) each
            slots = pool.get(("kv", i, 0), n * nh, capacity, 2, hs)
            view = slots.view(b, group_size, nh, capacity, 2, hs)
            view[:, :, :, :length, 0] = k[..., perm][:, None]
            view[:, :, :, :length, 1] = v[:, None]
            self.slots.append(slots)
        self.bias = torch.full((n * nh, 1, capacity), float("-inf"))        # closed slots: -inf
        self.length, self.opened = length, 0                            # slots filled, slots unmasked
        self.eps = net.config.rms_norm_eps

    def select(self, rows: Tensor) -> FusedDecoder:
        """Continue with the given rows (index (M,); a repeated row is copied: a split), in place."""
        heads = (rows[:, None] * self.nh + torch.arange(self.nh)).flatten()
        self.side = 1 - self.side
        for i, src in enumerate(self.slots):
            self.slots[i] = torch.index_select(src, 0, heads, out=self.pool.get(
                ("kv", i, self.side), heads.numel(), *src.shape[1:]))
        self.bias, self.n = self.bias[heads], rows.numel()
        return self

    def step(self, ids: Tensor, positions: Tensor, key_mask: Tensor) -> Tensor:
        """ids, positions (n,); key_mask (n, K) over cached + this token (K = cached + 1) -> logits (n, V)."""
        t, n, nh, hs = self.length, self.n, self.nh, self.hs
        if key_mask.shape[1] != t + 1:
            raise ValueError(f"key mask covers {key_mask.shape[1]} keys, the decoder holds {t} + 1")
        new = slice(self.opened, t + 1)                                    # slots whose mask is not written yet
        self.bias.view(n, nh, -1)[:, :, new] = torch.zeros(n, 1, t + 1 - self.opened).masked_fill(
            ~key_mask[:, None, new], float("-inf"))
        self.opened = t + 1
        cos, sin = self.net.rope(positions[:, None])                        # (n, 1, 1, hs)
        rot = torch.complex(cos[:, :, 0, : hs // 2], sin[:, :, 0, : hs // 2])[:, :, None]  # (n, 1, 1, hs/2)
        x = self.net.model.embed_tokens(ids)                                # (n, D)
        d = x.shape[-1]
        for layer, slots in zip(self.weights, self.slots, strict=True):
            heads = (F.rms_norm(x, (d,), None, self.eps) @ layer["qkv"]).view(n, nh, 3, hs)
            torch.view_as_complex(heads[:, :, :2].unflatten(-1, (hs // 2, 2))).mul_(rot)  # q, k rotated in place
            cells = slots.view(n * nh, self.capacity, 2, hs)
            cells.view(n, nh, self.capacity, 2, hs)[:, :, t] = heads[:, :, 1:]  # this token's key and value
            scores = torch.baddbmm(self.bias, heads[:, :, 0].reshape(n * nh, 1, hs),
                                   cells[:, :, 0].transpose(1, 2))         # (n*nh, 1, cap)
            y = torch.bmm(torch.softmax(scores, -1), cells[:, :, 1]).view(n, d)  # (n*nh, 1, hs) -> (n, D)
            x = torch.addmm(x, y, layer["o"])
            gate, up = (F.rms_norm(x, (d,), None, self.eps) @ layer["gate_up"]).chunk(2, -1)
            x = torch.addmm(x, F.silu(gate) * up, layer["down"])
        self.length = t + 1
        return F.rms_norm(x, (d,), None, self.eps) @ self.head


class TransformerPolicy(LMPolicy):
    """Our transformer + the character tokenizer. ``shared_prefix``: training log-probs prefill each
    prompt once per group (B prompt passes, not N); False: one pass over prompt + response per row.
    ``pack``: training runs only the response positions before each <eos> (no compute on padding).
    ``fused_decode``: sampling decodes with ``FusedDecoder`` (preallocated key/value slots, fused ops).
    ``compact_below``: sampling stops computing finished rows once fewer than that share are live.
    ``share_prefixes``: sampling computes responses that are equal so far once (one decode row per
    prompt until the group's first tokens differ; a confident policy's groups stay mostly shared).
    Each fast path computes the same numbers as its plain path (tests/test_fast_paths.py)."""

    def __init__(self, net: Transformer, tokenizer: CharTokenizer, *, max_new_tokens: int,
                 top_p: float = 1.0, shared_prefix: bool = True, fused_decode: bool = True,
                 pack: bool = True, compact_below: float = 0.75, share_prefixes: bool = True) -> None:
        super().__init__()
        self.share_prefixes = share_prefixes
        self.pack = pack
        self.compact_below = compact_below
        self.fused_decode = fused_decode
        self.net = net
        self.codec = tokenizer
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.shared_prefix = shared_prefix
        self.group_tokens = 512  # group-packed pass: response tokens per sequence (see split_groups)
        self._slot_pool = SlotPool()

    def head(self, hidden: Tensor) -> Tensor:
        return self.net.lm_head(hidden)

    def prefill(self, ids: Tensor, key_mask: Tensor) -> tuple[Tensor, KVCache]:
        hidden, cache = self.net(ids, positions_of(key_mask), key_mask)
        return self.head(hidden[:, -1]), cache                               # only the last position

    def decode(self, ids: Tensor, positions: Tensor, key_mask: Tensor,
               cache: KVCache | FusedDecoder) -> tuple[Tensor, KVCache | FusedDecoder]:
        if isinstance(cache, FusedDecoder):
            return cache.step(ids[:, -1], positions[:, -1], key_mask), cache
        hidden, cache = self.net(ids, positions, key_mask, cache)
        return self.head(hidden[:, -1]), cache

    def expand(self, cache: KVCache, group_size: int) -> KVCache | FusedDecoder:
        """Sampling: each prompt's cache repeated G times, in a ``FusedDecoder`` with room for the
        response (``fused_decode``)."""
        if not self.fused_decode:
            return repeat_cache(cache, group_size)
        return FusedDecoder(self.net, fused_weights(self.net), cache, group_size,
                            cache[0][0].shape[2] + self.max_new_tokens, self._slot_pool)

    def select(self, cache: KVCache | FusedDecoder, rows: Tensor) -> KVCache | FusedDecoder:
        if isinstance(cache, FusedDecoder):
            return cache.select(rows)
        return [(k[rows], v[rows]) for k, v in cache]

    def full_logits(self, ids: Tensor, key_mask: Tensor) -> Tensor:
        hidden, _ = self.net(ids, positions_of(key_mask), key_mask)
        return self.head(hidden)

    def live_response_logits(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                             prompt_of: Tensor) -> Tensor:
        if not self.pack:
            return self.response_logits(prompt_ids, response_ids, prompt_of)
        return self.response_logits(prompt_ids, response_ids, prompt_of, live=mask[:, 1:] > 0)

    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor,
                        live: Tensor | None = None) -> Tensor:
        """(N, T, V). Shared prefix: one group-packed pass (``Transformer.grouped``) over each prompt
        followed by its responses' first T - 1 tokens (``prompt_of`` (N,) names each response's prompt),
        a group cut into sequences of about ``group_tokens`` response tokens (``split_groups``); with
        ``live`` (N, T - 1) only the inputs that predict a real response token (packed: no compute on
        the padding after <eos>; logits there are 0)."""
        if not self.shared_prefix:
            return super().response_logits(prompt_ids, response_ids, prompt_of)
        inputs = response_ids[:, :-1]                                         # (N, T-1)
        live = torch.ones_like(inputs, dtype=torch.bool) if live is None else live
        seq_prompt, seq_of = split_groups(prompt_of, live.sum(1), prompt_ids.shape[0], self.group_tokens)
        prompts = prompt_ids.index_select(0, seq_prompt)                      # (C, P) one per sequence
        layout = group_layout(prompt_mask(prompts, self.codec.pad_id), live, seq_of)
        c, p = prompts.shape
        hidden = self.net.grouped(torch.cat([prompts.flatten(), packed(inputs, live)]), layout)  # (L, D)
        last = self.head(hidden[: c * p].view(c, p, -1)[:, -1])                # (C, V) predicts token 0
        return torch.cat([last.index_select(0, seq_of)[:, None],
                          unpacked(self.head(hidden[c * p:]), live)], 1)

    def save_hf(self, path: Path) -> None:
        self.net.save_hf(path, self.codec)

    @classmethod
    def load_hf(cls, path: Path, *, max_new_tokens: int, top_p: float = 1.0) -> TransformerPolicy:
        return cls(Transformer.load_hf(path), CharTokenizer.load(path), max_new_tokens=max_new_tokens, top_p=top_p)
