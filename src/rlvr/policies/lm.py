"""Autoregressive language-model policies: shared sampling and scoring on top of a model's hooks.

Prompts are strings; the policy's tokenizer (``codec``) turns them into ids, left-padded with
<pad> to a (B, P) tensor, so the last prompt token of every row sits at column P - 1 and the
prompt mask is recovered from the ids (leading pads). Positions count real tokens only.
Responses are (N, T) ids with a mask that is 1 up to and including the first <eos>, N = B * G.

A model kind implements three hooks:
    prefill(ids (B, P), key_mask (B, P))                     -> last logits (B, V), cache
    decode(ids (N, 1), positions (N, 1), key_mask (N, S), cache) -> logits (N, V), cache
    expand(cache, G)                                          -> the cache of each prompt repeated G times
plus ``full_logits(ids, key_mask)`` (no cache: the reference path) and optionally a faster
``response_logits`` for training. Training scores take ``prompt_of`` (N,), the prompt row of each
response, rather than a group size: ``logprobs`` scores each distinct (prompt, response) once --
a confident policy samples the same response many times per group -- and copies the result to its
duplicates, which gives every duplicate the same log-probs and, through the copy, the same gradient.

Sampling: each prompt is prefilled once, its cache expanded G times (the G responses of a group
share the prompt; with ``share_prefixes`` responses stay on one decode row until their tokens
differ), then one token per step for all N rows; a row stops at <eos>. The recorded
log-prob of a token is log softmax(logits / temperature): the same quantity ``logprobs`` computes
in training (top-p < 1 samples from the truncated distribution, a slightly off-policy choice that
the ratio of a clipped loss then sees).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.logprobs import token_entropy, token_logprobs
from rlvr.policies.base import Policy, Samples
from rlvr.tasks.text import Completion
from rlvr.tokenizer import Codec


def prompt_mask(prompt_ids: Tensor, pad_id: int) -> Tensor:
    """(B, P) left-padded ids -> bool mask of real tokens (everything from the first non-pad on)."""
    return (prompt_ids != pad_id).long().cumsum(-1) > 0


def positions_of(key_mask: Tensor) -> Tensor:
    """(B, S) bool -> (B, S) position of each token among the real tokens of its row (pads: 0)."""
    return (key_mask.long().cumsum(-1) - 1).clamp(min=0)


def distinct_rows(response_ids: Tensor, mask: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """(N, T) responses of G-row groups -> (U,) one row of each distinct (prompt, response), in row
    order, and (N,) the index into those U of each row. Two rows are the same response when they
    belong to the same prompt and have the same length and the same tokens under the mask."""
    n = response_ids.shape[0]
    key = torch.cat([(torch.arange(n) // group_size)[:, None], mask.sum(-1, keepdim=True).long(),
                     response_ids * (mask > 0)], 1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)                 # (N,) sorted-unique index
    first = torch.full((int(inverse.max()) + 1,), n).scatter_reduce(0, inverse, torch.arange(n), "amin")
    order = first.argsort()                                                     # unique rows in row order
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
    return first[order], rank[inverse]


def top_p_filter(probs: Tensor, top_p: float) -> Tensor:
    """(N, V) probabilities -> the smallest set of tokens with mass >= top_p, renormalised (nucleus)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs          # mass of the strictly more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(-1, keepdim=True)


def inverse_cdf_sample(probs: Tensor, generator: torch.Generator) -> Tensor:
    """One draw per row of (N, V) probabilities (unnormalised is fine): the first token whose cumulative
    mass exceeds u * total, u ~ U[0, 1). A zero-probability token is never drawn (its cumulative mass
    equals its predecessor's). Four small ops where ``torch.multinomial`` costs ~5x as much here."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return (cdf <= u).sum(-1)


class LMPolicy(Policy):
    """A causal LM with a tokenizer. Subclasses provide the model hooks."""

    codec: Codec
    max_new_tokens: int
    top_p: float = 1.0
    use_cache: bool = True      # False: recompute the whole sequence each step (the reference path)
    compact_below: float = 0.0  # decode only unfinished rows once they fall below this share of the rows
    #                             computed (0: never; needs ``select``)
    share_prefixes: bool = False  # responses equal so far share one decode row (needs ``select``)
    prompt_template: str = "{prompt}"   # how a task prompt is shown to the model
    score_distinct: bool = True  # training scores: each distinct (prompt, response) once, copied to duplicates

    @property
    def prompt_pad_id(self) -> int:
        return self.codec.pad_id

    @property
    def response_length(self) -> int:  # type: ignore[override]
        return self.max_new_tokens

    # ---------------------------------------------------------------- hooks
    @abstractmethod
    def prefill(self, ids: Tensor, key_mask: Tensor) -> tuple[Tensor, Any]: ...

    @abstractmethod
    def decode(self, ids: Tensor, positions: Tensor, key_mask: Tensor, cache: Any) -> tuple[Tensor, Any]: ...

    @abstractmethod
    def expand(self, cache: Any, group_size: int) -> Any: ...

    def select(self, cache: Any, rows: Tensor) -> Any:
        """The cache of the given rows (index (M,), repeats allowed): for ``compact_below`` and
        ``share_prefixes``."""
        raise NotImplementedError(f"{type(self).__name__} cannot compact its cache")

    def regrouped(self, cache: Any, rows_of: Tensor, token: Tensor, done: Tensor,
                  vocab: int) -> tuple[Any, Tensor, Tensor]:
        """The decode rows of the next step. ``rows_of`` (N,): the decode row each response reads its
        logits from. With ``share_prefixes``, responses equal so far (same prompt, same tokens) share
        one decode row; one that samples another token than its partners splits off with a copy of
        the shared cache. Finished responses need no decode row; the decode batch is re-selected when
        a split forces it anyway or when fewer than ``compact_below`` of its rows are still needed.
        Returns the cache, the new ``rows_of`` and the response that stands for each decode row (its
        token, position and key mask; a row no live response needs stands on response 0)."""
        live = (~done).nonzero().squeeze(-1)                                  # (L,)
        key = rows_of[live] * vocab + token[live] if self.share_prefixes else rows_of[live]
        needed, inverse = torch.unique(key, return_inverse=True)              # (U,), (L,)
        parent = needed // vocab if self.share_prefixes else needed           # the row each continues
        computed = int(rows_of.max()) + 1
        split = needed.numel() > torch.unique(parent).numel()
        if split or needed.numel() < self.compact_below * computed:
            rows_of = torch.zeros_like(rows_of).index_copy(0, live, inverse)
            cache = self.select(cache, parent)
        stand = torch.zeros(int(rows_of.max()) + 1, dtype=torch.long).scatter_reduce(
            0, rows_of[live], live, "amin", include_self=False)
        return cache, rows_of, stand

    @abstractmethod
    def full_logits(self, ids: Tensor, key_mask: Tensor) -> Tensor:
        """(N, S) ids, (N, S) bool key mask -> logits (N, S, V) in one causal pass."""

    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor) -> Tensor:
        """Logits predicting each response token (N, T, V): one pass over prompt + response per row."""
        ids, key_mask = self.joined(prompt_ids, response_ids, prompt_of)
        return self.full_logits(ids, key_mask)[:, prompt_ids.shape[1] - 1: -1]

    def live_response_logits(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                             prompt_of: Tensor) -> Tensor:
        """``response_logits`` where only the positions under ``mask`` (N, T) matter: a model may skip
        the padding after each response's end (logits there are then arbitrary but finite)."""
        return self.response_logits(prompt_ids, response_ids, prompt_of)

    def joined(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor) -> tuple[Tensor, Tensor]:
        """Each response after its prompt: ids (N, P + T) and the key mask (left pads off)."""
        pmask = prompt_mask(prompt_ids, self.codec.pad_id)[prompt_of]
        ids = torch.cat([prompt_ids[prompt_of], response_ids], 1)
        return ids, torch.cat([pmask, torch.ones_like(response_ids, dtype=torch.bool)], 1)

    # ---------------------------------------------------------------- text <-> ids
    def encode_prompts(self, prompts: list[Any]) -> Tensor:
        rows = [self.codec.encode_prompt(self.prompt_template.replace("{prompt}", p)) for p in prompts]
        width = max(len(r) for r in rows)
        return torch.tensor([[self.codec.pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)

    def decode_responses(self, response_ids: Tensor, mask: Tensor) -> list[Any]:
        codec = self.codec
        out = []
        for row, row_mask in zip(response_ids.tolist(), mask.tolist(), strict=True):
            ids = tuple(t for t, m in zip(row, row_mask, strict=True) if m > 0)
            out.append(Completion(ids, codec.eos_id, codec.special_ids, codec.decode))
        return out

    # ---------------------------------------------------------------- the Policy interface
    @torch.no_grad()
    def sample(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator,
               temperature: float = 1.0) -> Samples:
        return self.generate(prompt_ids, group_size, generator=generator, temperature=temperature)

    @torch.no_grad()
    def greedy(self, prompt_ids: Tensor) -> tuple[Tensor, Tensor]:
        samples = self.generate(prompt_ids, 1, generator=None, temperature=1.0)
        return samples.response_ids, samples.mask

    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        if self.score_distinct:
            rows, inverse = distinct_rows(response_ids, mask, group_size)
            if rows.numel() < response_ids.shape[0]:
                logp, entropy = self.scores(prompt_ids, response_ids[rows], mask[rows], temperature,
                                            rows // group_size)
                return logp.index_select(0, inverse), entropy.index_select(0, inverse)
        return self.scores(prompt_ids, response_ids, mask, temperature,
                           torch.arange(response_ids.shape[0]) // group_size)

    def scores(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, temperature: float,
               prompt_of: Tensor) -> tuple[Tensor, Tensor]:
        """Per-token log-probs and entropies (N, T) of every row as given (no de-duplication)."""
        logits = self.live_response_logits(prompt_ids, response_ids, mask, prompt_of).float() / temperature
        return token_logprobs(logits, response_ids), token_entropy(logits)

    def generate(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator | None,
                 temperature: float) -> Samples:
        """G responses per prompt (generator None: greedy). Returns ids, mask, recorded log-probs (N, T)."""
        pad, eos = self.codec.pad_id, self.codec.eos_id
        pmask = prompt_mask(prompt_ids, pad)
        seq = prompt_ids.repeat_interleave(group_size, 0)                   # (N, P) only for no-cache
        key_mask = pmask.repeat_interleave(group_size, 0)                   # (N, S)
        next_pos = key_mask.sum(-1, keepdim=True)                           # (N, 1)
        cache = None
        n = seq.shape[0]
        rows_of = torch.arange(n)                                           # decode row of each response
        if self.use_cache:
            logits, cache = self.prefill(prompt_ids, pmask)                 # once per prompt
            if self.share_prefixes:                                         # one decode row per prompt
                rows_of, cache = rows_of // group_size, self.expand(cache, 1)
            else:
                logits, cache = logits.repeat_interleave(group_size, 0), self.expand(cache, group_size)
        done = torch.zeros(n, dtype=torch.bool)
        tokens, logps, masks = [], [], []
        for _ in range(self.max_new_tokens):
            if not self.use_cache:
                logits = self.full_logits(seq, key_mask)[:, -1]
            scaled = logits[rows_of].float() / temperature                  # (N, V)
            logp_all = torch.log_softmax(scaled, -1)
            if generator is None:
                token = scaled.argmax(-1)
            else:
                probs = top_p_filter(logp_all.exp(), self.top_p)
                token = inverse_cdf_sample(probs, generator)
            token = token.masked_fill(done, pad)
            tokens.append(token)
            logps.append(logp_all.gather(-1, token[:, None]).squeeze(-1))
            masks.append(~done)
            done = done | (token == eos)
            if bool(done.all()):
                break
            if not self.use_cache:                                          # the cache holds the rest
                seq = torch.cat([seq, token[:, None]], 1)
            key_mask = torch.cat([key_mask, torch.ones_like(done)[:, None]], 1)
            if self.use_cache:
                cache, rows_of, stand = self.regrouped(cache, rows_of, token, done, logits.shape[-1])
                logits, cache = self.decode(token[stand, None], next_pos[stand], key_mask[stand], cache)
            next_pos = next_pos + 1
        mask = torch.stack(masks, 1).float()
        return Samples(response_ids=torch.stack(tokens, 1), mask=mask,
                       logprobs=masked(torch.stack(logps, 1), mask))
