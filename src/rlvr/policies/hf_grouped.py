"""The Hugging Face policy's training pass, two ways: the plain reference (one pass per row over prompt
+ response) and the shared-prompt pass (each distinct prompt prefilled once, its KV cache handed to its
responses), chosen once when the policy is built (``HFPolicy(shared_prefix=...)``, config
``policy.shared_prefix``). tests/test_hf_policy.py compares the two: log-probs and gradients.

Shared-prompt pass: the prompts (B, P) run once with ``use_cache`` and *with gradient*; their cache is
indexed to the N responses (``prompt_of``: an index, so its backward sums each response's gradient into
its prompt's keys and values), then one pass over the response inputs (N, T - 1) attends to it. A
response token sees its prompt's keys and values and its own earlier tokens: what it sees in the
reference's pass over prompt + response, so the numbers agree up to summation order (fp32: ~1e-6).
This is our transformer's grouped pass (grouped.py) built from what any HF causal LM offers: a cache
that can be re-indexed along the batch (``Cache.batch_select_indices``) and extended by a forward.
Shapes: B prompts, N responses, P prompt width, T response tokens, V vocab.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlvr.policies.tokens import joined, positions_of, prompt_mask


def per_row_response_logits(model: Any, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor, *,
                            pad_id: int, keeps_logits: bool) -> Tensor:
    """The reference: one causal pass per row over prompt + response (N, P + T); only the T positions
    that predict response tokens are projected onto the vocabulary when the model takes
    ``logits_to_keep``. Returns logits (N, T, V)."""
    ids, key_mask = joined(prompt_ids, response_ids, prompt_of, pad_id)
    length = response_ids.shape[1]
    if not keeps_logits:
        logits = model(input_ids=ids, attention_mask=key_mask.long(), position_ids=positions_of(key_mask),
                       use_cache=False).logits
        return logits[:, prompt_ids.shape[1] - 1: -1]
    logits = model(input_ids=ids, attention_mask=key_mask.long(), position_ids=positions_of(key_mask),
                   use_cache=False, logits_to_keep=length + 1).logits
    return logits[:, :length]


def shared_prompt_response_logits(model: Any, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor, *,
                                  pad_id: int, cache_arg: str) -> Tensor:
    """Each prompt prefilled once (with gradient), its cache indexed to its responses, then one pass
    over the response inputs against it. Returns logits (N, T, V), equal to the reference's."""
    pmask = prompt_mask(prompt_ids, pad_id)                                   # (B, P)
    out = model(input_ids=prompt_ids, attention_mask=pmask.long(), position_ids=positions_of(pmask),
                use_cache=True, **{cache_arg: None})
    first = out.logits[:, -1].index_select(0, prompt_of)[:, None]             # (N, 1, V) predicts token 0
    rows, length = response_ids.shape
    if length == 1:
        return first
    cache = out[cache_arg]
    cache.batch_select_indices(prompt_of)                                     # (B, ...) -> (N, ...)
    key_mask = torch.cat([pmask.index_select(0, prompt_of),
                          torch.ones(rows, length - 1, dtype=torch.bool)], 1)  # (N, P + T - 1)
    positions = pmask.sum(1).index_select(0, prompt_of)[:, None] + torch.arange(length - 1)[None]
    rest = model(input_ids=response_ids[:, :-1], attention_mask=key_mask.long(), position_ids=positions,
                 use_cache=True, **{cache_arg: cache}).logits                 # (N, T - 1, V)
    return torch.cat([first, rest], 1)
