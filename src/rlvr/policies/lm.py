"""Autoregressive language-model policies: the Policy interface on top of a model's hooks.

Prompts are strings; the policy's tokenizer (``codec``) turns them into ids, left-padded with <pad>
to a (B, P) tensor (policies/tokens.py: masks, positions, drawing a token). Responses are (N, T) ids
with a mask that is 1 up to and including the first <eos>, N = B * G.

A model kind implements the hooks:
    prefill(ids (B, P), key_mask (B, P))                          -> last logits (B, V), cache
    expand(cache, R)                                              -> each prompt's cache repeated R times
    decode(ids (U, 1), positions (U, 1), key_mask (U, S), cache)  -> logits (U, V), cache
    select(cache, rows (U,))                                      -> the cache of those rows (optional)
    response_logits(prompt_ids, response_ids, mask, prompt_of)    -> logits predicting each token (N, T, V)
Training scores take ``prompt_of`` (N,), the prompt row of each response, rather than a group size:
``logprobs`` scores each distinct (prompt, response) once (policies/distinct.py).

Sampling: each prompt is prefilled once, its cache expanded to the decode rows (``decode_rows``: G
per prompt, or one shared by the responses equal so far), then one token per step; a row stops at
<eos>. The recorded log-prob of a token is log softmax(logits / temperature): the same quantity
``logprobs`` computes in training. The reference that all of this must equal is decoder.py's
``Transformer.generate`` and ``Transformer.logprobs``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.logprobs import logit_score_norm, token_entropy, token_logprobs
from rlvr.errors import ConfigError, UserError
from rlvr.options import opt
from rlvr.policies.base import Policy, PolicyConfig, Samples
from rlvr.policies.decode_rows import EVERY_ROW, DecodeRows
from rlvr.policies.distinct import score_distinct
from rlvr.policies.tokens import draw, joined, positions_of, prompt_mask, stacked
from rlvr.tasks.text import Completion
from rlvr.tokenizer import Codec

__all__ = ["LMConfig", "LMPolicy", "positions_of", "prompt_mask"]


@dataclass
class LMConfig(PolicyConfig):
    """What every language-model policy kind has: sampling limits and how a prompt is shown."""

    max_new_tokens: int = opt(0, "response length limit (0: the task's)", ge=0)
    top_p: float = opt(1.0, "nucleus sampling mass (1: plain sampling)", gt=0.0, le=1.0)
    prompt_template: str = opt("{prompt}", "how a task prompt is shown to the model, e.g. "
                               "'Compute {prompt} Reply with the number only.'")

    def check(self) -> None:
        if "{prompt}" not in self.prompt_template:
            raise ConfigError(f"policy.prompt_template: {self.prompt_template!r} has no {{prompt}} placeholder")


class LMPolicy(Policy):
    """A causal LM with a tokenizer. Subclasses provide the model hooks and set, once when built,
    ``decode_rows`` (which rows a sampling step computes; sharing and compaction need ``select``)."""

    codec: Codec
    max_new_tokens: int
    top_p: float = 1.0
    prompt_template: str = "{prompt}"   # how a task prompt is shown to the model
    decode_rows: DecodeRows = EVERY_ROW
    max_prompt_length: int = 0          # prompt tokens allowed (0: no limit); longer is an error ...
    truncate_prompts: bool = False      # ... or, when on, cut from the left (the prompt's end is kept)
    stop: tuple[str, ...] = ()          # a row also ends when its text gains one of these (kept in it)

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
    def expand(self, cache: Any, rows_per_prompt: int, *, room: int = 0) -> Any:
        """Each prompt's cache repeated R times, with room for ``room`` more tokens (0: max_new_tokens)."""

    @abstractmethod
    def decode(self, ids: Tensor, positions: Tensor, key_mask: Tensor, cache: Any) -> tuple[Tensor, Any]: ...

    def select(self, cache: Any, rows: Tensor) -> Any:
        """The cache of the given rows (index (U,), repeats allowed): for a ``decode_rows`` that
        shares or compacts."""
        raise NotImplementedError(f"{type(self).__name__} cannot select rows of its cache")

    @abstractmethod
    def response_logits(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor,
                        prompt_of: Tensor) -> Tensor:
        """Logits predicting each response token (N, T, V); only the positions under ``mask`` (N, T)
        matter (a model may skip the padding after each response's end: logits there are then
        arbitrary but finite)."""

    def joined(self, prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor) -> tuple[Tensor, Tensor]:
        """Each response after its prompt: ids (N, P + T) and the key mask (left pads off)."""
        return joined(prompt_ids, response_ids, prompt_of, self.codec.pad_id)

    # ---------------------------------------------------------------- text <-> ids
    def encode_prompts(self, prompts: list[Any]) -> Tensor:
        rows = [self.fitted(self.codec.encode_prompt(self.prompt_template.replace("{prompt}", p))) for p in prompts]
        width = max(len(r) for r in rows)
        return torch.tensor([[self.codec.pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)

    def fitted(self, ids: list[int]) -> list[int]:
        """A prompt's ids within ``max_prompt_length``: cut from the left when ``truncate_prompts``
        (what the model reads last, the question's end and the generation prompt, stays), else one error line."""
        limit = self.max_prompt_length
        if not limit or len(ids) <= limit:
            return ids
        if self.truncate_prompts:
            return ids[-limit:]
        raise UserError(f"policy.max_prompt_length: a prompt is {len(ids)} tokens, the limit is {limit} "
                        "(--policy.truncate_prompts true cuts prompts from the left)")

    def stop_hits(self, tokens: list[Tensor], drew: Tensor) -> Tensor:
        """(N,) True where a row that drew a token this step (``drew``) now has a stop string in its
        decoded text that this token completed (a stop string may end inside a token)."""
        ids = torch.stack(tokens, 1).tolist()
        longest = max(len(s) for s in self.stop)
        hit = torch.zeros(len(ids), dtype=torch.bool)
        for n in drew.nonzero().flatten().tolist():
            before, text = self.codec.decode(ids[n][:-1]), self.codec.decode(ids[n])
            hit[n] = any(s in text[max(0, len(before) - longest + 1):] for s in self.stop)
        return hit

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
        return score_distinct(self.scores, prompt_ids, response_ids, mask, group_size=group_size,
                              temperature=temperature)

    def scores(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, temperature: float,
               prompt_of: Tensor) -> tuple[Tensor, Tensor]:
        """Per-token log-probs and entropies (N, T) of every row as given (no de-duplication)."""
        logits = self.response_logits(prompt_ids, response_ids, mask, prompt_of).float() / temperature
        return token_logprobs(logits, response_ids), token_entropy(logits)

    @torch.no_grad()
    def score_norms(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                    temperature: float = 1.0) -> Tensor:
        prompt_of = torch.arange(response_ids.shape[0]) // group_size
        logits = self.response_logits(prompt_ids, response_ids, mask, prompt_of).float() / temperature
        return masked(logit_score_norm(logits, response_ids), mask)

    def generate(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator | None,
                 temperature: float) -> Samples:
        """G responses per prompt (generator None: greedy) with the KV cache. Returns ids, mask,
        recorded log-probs (N, T)."""
        pad, eos, rows = self.codec.pad_id, self.codec.eos_id, self.decode_rows
        pmask = prompt_mask(prompt_ids, pad)
        key_mask = pmask.repeat_interleave(group_size, 0)                   # (N, S)
        next_pos = key_mask.sum(-1, keepdim=True)                           # (N, 1)
        logits, cache = self.prefill(prompt_ids, pmask)                     # once per prompt
        rows_of = torch.arange(key_mask.shape[0])                          # decode row of each response
        if rows.shared:                                                     # one decode row per prompt
            rows_of, cache = rows_of // group_size, self.expand(cache, 1)
        else:
            logits, cache = logits.repeat_interleave(group_size, 0), self.expand(cache, group_size)
        done = torch.zeros(key_mask.shape[0], dtype=torch.bool)
        tokens, logps, live = [], [], []
        for _ in range(self.max_new_tokens):
            token, logp = draw(logits[rows_of], done, pad_id=pad, temperature=temperature, top_p=self.top_p,
                               generator=generator)
            tokens.append(token)
            logps.append(logp)
            live.append(~done)
            if self.stop:                                                   # a stop string ends a row like <eos>
                done = done | self.stop_hits(tokens, ~done & (token != eos))
            done = done | (token == eos)
            if bool(done.all()):
                break
            key_mask = torch.cat([key_mask, torch.ones_like(done)[:, None]], 1)
            keep, rows_of, stand = rows.regroup(rows_of, token, done, logits.shape[-1])
            if keep is not None:
                cache = self.select(cache, keep)
            logits, cache = self.decode(token[stand, None], next_pos[stand], key_mask[stand], cache)
            next_pos = next_pos + 1
        return stacked(tokens, logps, live)
