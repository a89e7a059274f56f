"""The group-packed training pass: log-probs of a batch of responses in one pass, each group's prompt
run once, under a tree mask, on the real tokens only.

Each group's prompt and responses form one sequence: the prompt, then the inputs of each of its
responses one after another. The tree mask lets a response token see its prompt and its own earlier
tokens -- exactly what it sees in the reference's separate pass over prompt + response
(``Transformer.response_logits`` in decoder.py; tests/test_fast_paths.py compares the two, values and
gradients). So the prompt runs once per group with gradient, every projection runs on the L real
tokens only (``live``: no compute on the padding after <eos>), and the batch is one pass. A group is
cut into sequences of about ``group_tokens`` response tokens (``split_groups``), which keeps the
dense (Lg, Lg) mask bounded for large groups of long responses.
Shapes: B prompts, N responses, P prompt width, T response tokens, L packed tokens, Lg slots per
sequence, D hidden, nh heads, hs = D / nh, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rlvr.policies.decoder import Transformer
from rlvr.policies.tokens import positions_of, prompt_mask

GROUP_TOKENS = 512  # response tokens per sequence of the pass (see split_groups)


def packed(x: Tensor, rows: Tensor) -> Tensor:
    """(B, S, ...) -> (M, ...): the positions where ``rows`` (B, S) is True, in row-major order (an
    index_select: its backward is an index_add, where boolean indexing's is a slow index_put)."""
    return x.flatten(0, 1).index_select(0, rows.flatten().nonzero().squeeze(-1))


def unpacked(x: Tensor, rows: Tensor) -> Tensor:
    """(M, D) -> (B, S, D), zeros where ``rows`` is False (the inverse of ``packed``)."""
    index = rows.flatten().nonzero().squeeze(-1)
    return x.new_zeros(rows.numel(), x.shape[-1]).index_copy(0, index, x).view(*rows.shape, -1)


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


def grouped_hidden(net: Transformer, ids: Tensor, layout: GroupLayout) -> Tensor:
    """``net``'s decoder over group-packed tokens: ids (L,) in ``layout``'s flat order -> hidden (L, D).
    Rotary as one complex product on each (x_i, x_{i + hs/2}) pair, which leaves q and k in the
    interleaved layout (the same permutation on both: attention unchanged); q k and v scattered into
    the (B, Lg) grid, the attention output gathered back."""
    c = net.config
    nh, hs, d = c.num_heads, c.hidden_size // c.num_heads, c.hidden_size
    cos, sin = net.rope(layout.positions[None])                              # (1, 1, L, hs)
    rot = torch.complex(cos[0, 0, :, : hs // 2], sin[0, 0, :, : hs // 2])[:, None]  # (L, 1, hs/2)
    b, length = layout.groups, layout.length
    x = net.model.embed_tokens(ids)                                          # (L, D)
    n, eps = x.shape[0], c.rms_norm_eps
    for block in net.model.layers:
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
    return F.rms_norm(x, (d,), net.model.norm.weight, eps)


def grouped_response_logits(net: Transformer, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor,
                            *, pad_id: int, live: Tensor | None = None,
                            group_tokens: int = GROUP_TOKENS) -> Tensor:
    """(N, T, V), what ``net.response_logits`` computes: one group-packed pass over each prompt
    followed by its responses' first T - 1 tokens (``prompt_of`` (N,) names each response's prompt);
    with ``live`` (N, T - 1) only the inputs that predict a real response token (logits elsewhere 0)."""
    inputs = response_ids[:, :-1]                                         # (N, T-1)
    live = torch.ones_like(inputs, dtype=torch.bool) if live is None else live
    seq_prompt, seq_of = split_groups(prompt_of, live.sum(1), prompt_ids.shape[0], group_tokens)
    prompts = prompt_ids.index_select(0, seq_prompt)                      # (C, P) one per sequence
    layout = group_layout(prompt_mask(prompts, pad_id), live, seq_of)
    c, p = prompts.shape
    hidden = grouped_hidden(net, torch.cat([prompts.flatten(), packed(inputs, live)]), layout)  # (L, D)
    last = net.lm_head(hidden[: c * p].view(c, p, -1)[:, -1])              # (C, V) predicts token 0
    return torch.cat([last.index_select(0, seq_of)[:, None],
                      unpacked(net.lm_head(hidden[c * p:]), live)], 1)


def grouped_training_logits(net: Transformer, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                            prompt_of: Tensor, pad_id: int) -> Tensor:
    """The policy's training pass: ``grouped_response_logits`` on the inputs before each <eos> (``mask``
    (N, T)); logits after a response's end are 0 (masked out of every loss)."""
    return grouped_response_logits(net, prompt_ids, response_ids, prompt_of, pad_id=pad_id, live=mask[:, 1:] > 0)
