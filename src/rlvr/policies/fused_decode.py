"""The fused decode step: sampling's one-token-per-row step (no gradient) in as few operations as it
takes, computing what the reference's cached forward + head compute (``Transformer.forward`` in
decoder.py; tests/test_fast_paths.py compares the samples to ``Transformer.generate``'s).
Shapes: B prompts, G group size, n decode rows, P prompt width, D hidden, nh heads, hs = D / nh, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from rlvr.policies.decoder import KVCache, Transformer


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
            filled = cells[:, : t + 1]                                      # only the slots written so far
            scores = torch.baddbmm(self.bias[:, :, : t + 1], heads[:, :, 0].reshape(n * nh, 1, hs),
                                   filled[:, :, 0].transpose(1, 2))        # (n*nh, 1, t + 1)
            y = torch.bmm(torch.softmax(scores, -1), filled[:, :, 1]).view(n, d)  # (n*nh, 1, hs) -> (n, D)
            x = torch.addmm(x, y, layer["o"])
            gate, up = (F.rms_norm(x, (d,), None, self.eps) @ layer["gate_up"]).chunk(2, -1)
            x = torch.addmm(x, F.silu(gate) * up, layer["down"])
        self.length = t + 1
        return F.rms_norm(x, (d,), None, self.eps) @ self.head



class FusedDecoding:
    """The policy's decode strategy with ``FusedDecoder``: one slot pool kept across sampling calls."""

    def __init__(self) -> None:
        self.pool = SlotPool()

    def start(self, net: Transformer, prompt_cache: KVCache, group_size: int, capacity: int) -> FusedDecoder:
        """A decoder over each prompt's cache (B, nh, P, hs) repeated G times, room for ``capacity`` keys."""
        return FusedDecoder(net, fused_weights(net), prompt_cache, group_size, capacity, self.pool)
