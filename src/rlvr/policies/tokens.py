"""Token-level pieces that the reference decoder and the fast paths share: the masks and positions of
left-padded prompts, a prompt joined to its responses, and drawing one token per row.

Prompts are (B, P) ids left-padded with <pad>, so the last prompt token of every row sits at column
P - 1 and the prompt mask is recovered from the ids (leading pads); positions count real tokens only.
Responses are (N, T) ids with a mask that is 1 up to and including the first <eos>.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.policies.base import Samples


def prompt_mask(prompt_ids: Tensor, pad_id: int) -> Tensor:
    """(B, P) left-padded ids -> bool mask of real tokens (everything from the first non-pad on)."""
    return (prompt_ids != pad_id).long().cumsum(-1) > 0


def positions_of(key_mask: Tensor) -> Tensor:
    """(B, S) bool -> (B, S) position of each token among the real tokens of its row (pads: 0)."""
    return (key_mask.long().cumsum(-1) - 1).clamp(min=0)


def joined(prompt_ids: Tensor, response_ids: Tensor, prompt_of: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Each response after its prompt (``prompt_of`` (N,) names it): ids (N, P + T) and the key mask
    (left pads off)."""
    pmask = prompt_mask(prompt_ids, pad_id)[prompt_of]
    ids = torch.cat([prompt_ids[prompt_of], response_ids], 1)
    return ids, torch.cat([pmask, torch.ones_like(response_ids, dtype=torch.bool)], 1)


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


def draw(logits: Tensor, done: Tensor, *, pad_id: int, temperature: float, top_p: float,
         generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """logits (N, V) -> the next token of each row (N,) and its log-prob log softmax(logits / temperature)
    (N,): the quantity training's ``logprobs`` computes. generator None: greedy. A finished row
    (``done``) gets <pad>. Top-p < 1 samples from the truncated distribution (slightly off-policy)."""
    scaled = logits.float() / temperature
    logp_all = torch.log_softmax(scaled, -1)
    if generator is None:
        token = scaled.argmax(-1)
    else:
        token = inverse_cdf_sample(top_p_filter(logp_all.exp(), top_p), generator)
    token = token.masked_fill(done, pad_id)
    return token, logp_all.gather(-1, token[:, None]).squeeze(-1)


def stacked(tokens: list[Tensor], logps: list[Tensor], live: list[Tensor]) -> Samples:
    """One (N,) tensor per step of drawn tokens, their log-probs and whether the row was still live ->
    ``Samples`` (N, T)."""
    mask = torch.stack(live, 1).float()
    return Samples(response_ids=torch.stack(tokens, 1), mask=mask, logprobs=masked(torch.stack(logps, 1), mask))
