"""One outer step's batch, and slices of it whose losses add up to the whole batch's loss.

A slice is some of the batch's prompts with all their responses: groups stay whole, because the toy
policy and the language models' group-packed pass score a prompt's G responses together
(``policy.logprobs(..., group_size=G)``). Every aggregation (``algorithms/aggregation.py``) is
linear in the per-token loss l, so with w = d aggregate(l) / d l taken over the WHOLE batch's mask
(``aggregation_weights``)

    aggregate(l) = sum_it w_it l_it = sum_S loss_S,        loss_S = sum_{(i,t) in S} w_it l_it

for any cut of the rows into slices S, whatever their sizes and token counts: the slices' losses,
and so their gradients, add up to the whole batch's. A slice carries its rows of w (``Batch.share``)
and ``Batch.aggregate`` uses them. Two users: micro-batches (gradient accumulation,
``train.micro_batch_size``, below) and a data-parallel rank's rows (``distributed/ddp.py``, which
scales the share by the number of ranks because DDP averages gradients). A slice of a slice keeps
the outer share, so a rank's micro-batches add up to the rank's loss. This needs each token's loss
to depend on its own response only: a rollout correction's weight, a constant of the token or of its
response (``Batch.correction``), and the tokens the entropy selection picked over the whole batch
(``Batch.selection``) are cut along with it; a loss that selects tokens by statistics of
the whole batch (clip-cov, kl-cov: ``whole_batch`` in its registry entry) is refused with
micro-batches; a DDP rank computes those statistics over its own rows.

Metrics add up too: the aggregated ones (loss/*, policy/kl, policy/entropy) are shares, and the
loss's token means (approx_kl, ratio_mean, clip_frac) are weighted by the slice's part of the
batch's loss tokens (``Batch.token_share``); a per-sequence mean (seq_ratio_mean) only roughly.

Shapes: B prompts, G responses per prompt, N = B*G responses, T response tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms import aggregate
from rlvr.algorithms.aggregation import masked
from rlvr.rollout import Rollouts, as_json, select_prompts
from rlvr.tasks import Task


@dataclass
class Batch:
    """One outer step's rollouts and the constants the inner loop needs (or a slice of them)."""

    rollouts: Rollouts
    deltas: Tensor               # (B, G)
    advantages: Tensor           # (N, T) delta broadcast over each response's tokens (or per-token credit)
    ref_logprobs: Tensor | None  # (N, T) under the frozen reference, or None without KL
    loss_mask: Tensor            # (N, T) the tokens the loss sees (mask, minus filtered responses)
    kl_loss_coef: float = 0.0    # beta of the KL term in the loss (0 when the KL is in the reward)
    share: Tensor | None = None  # (N, T) a slice's weight of each token in the whole batch's aggregate
    token_share: float = 1.0     # a slice's weight in token-mean metrics (its part of the loss tokens)
    old_logprobs: Tensor | None = None  # (N, T) the learner's own log-probs before the inner loop
                                        # (algo.rollout_correction), or None: the sampler's are pi_old
    correction: Tensor | None = None    # (N, T) the rollout correction's constant weight on each token's
                                        # loss, or None: 1 (algorithms/correction.py)
    selection: Tensor | None = None     # (N, T) 0/1: the tokens the policy-gradient term trains on
                                        # (algo.top_entropy_quantile), or None: all (algorithms/selection.py)

    @property
    def proximal_logprobs(self) -> Tensor:
        """pi_old of the loss's ratio (N, T): the learner's own with a rollout correction, else the sampler's."""
        return self.old_logprobs if self.old_logprobs is not None else self.rollouts.logprobs

    def aggregate(self, values: Tensor, mode: str, *, constant: float) -> Tensor:
        """values (N, T) -> the batch's aggregate by ``mode``; for a slice, its share of the whole's."""
        if self.share is None:
            return aggregate(values, self.loss_mask, mode, constant=constant)
        return masked(values, self.share).sum()


def aggregation_weights(mask: Tensor, mode: str, *, constant: float) -> Tensor:
    """mask (N, T) -> w (N, T) with aggregate(l, mask) = sum_it w_it l_it for every l (w = its gradient)."""
    values = torch.zeros_like(mask, dtype=torch.float, requires_grad=True)
    with torch.enable_grad():
        aggregate(values, mask, mode, constant=constant).backward()
    assert values.grad is not None
    return values.grad


def select(batch: Batch, prompt_rows: Sequence[int]) -> Batch:
    """The given prompts' rows of every field: (B, ...) by prompt, (N, ...) by response."""
    group, prompts = batch.rollouts.group_size, [int(b) for b in prompt_rows]
    rows = [b * group + g for b in prompts for g in range(group)]

    def cut(value: Tensor | None) -> Tensor | None:
        return None if value is None else value[rows]
    return dataclasses.replace(
        batch, rollouts=select_prompts(batch.rollouts, prompts), deltas=batch.deltas[prompts],
        advantages=batch.advantages[rows], ref_logprobs=cut(batch.ref_logprobs),
        loss_mask=batch.loss_mask[rows], share=cut(batch.share), old_logprobs=cut(batch.old_logprobs),
        correction=cut(batch.correction), selection=cut(batch.selection))


def slices(batch: Batch, parts: Sequence[Sequence[int]], *, mode: str, constant: float) -> list[Batch]:
    """``batch`` cut into slices of the given prompt rows whose losses add up to the batch's."""
    weights = batch.share if batch.share is not None else aggregation_weights(
        batch.loss_mask, mode, constant=constant)
    tokens = float(batch.loss_mask.sum())
    out = []
    for rows in parts:
        part = select(dataclasses.replace(batch, share=weights), rows)
        part.token_share = batch.token_share * float(part.loss_mask.sum()) / max(tokens, 1.0)
        out.append(part)
    return out


def groups_with_gradient(batch: Batch, *, mode: str, constant: float) -> Batch | None:
    """The groups of ``batch`` with a nonzero advantage on some loss token, as one slice (its share of
    the whole batch's loss), or None when every group is flat. Every policy loss is 0 with zero
    gradient where the advantage is 0 (``tests/test_skip_flat_groups.py`` checks the registry), so
    without a KL term in the loss and an entropy bonus the slice's gradient is the whole batch's."""
    group = batch.rollouts.group_size
    live = masked(batch.advantages, batch.loss_mask).ne(0).reshape(-1, group * batch.advantages.shape[-1])
    rows = live.any(-1).nonzero().flatten().tolist()
    if not rows:
        return None
    return slices(batch, [rows], mode=mode, constant=constant)[0]


def trained_group_metrics(metrics: dict[str, Tensor], parts: Sequence[Batch], *, mode: str,
                          constant: float) -> dict[str, Tensor]:
    """Metrics summed over ``parts`` (some of a batch's groups, with their shares of the whole) ->
    those groups' own: the losses stay the batch's (the left-out groups add 0); an aggregated metric
    (policy/entropy) becomes the aggregate over the parts' tokens alone (every aggregation's weights
    differ from the whole batch's shares by one factor); a token mean (approx_kl, clip_frac, ...) is
    divided by the parts' share of the loss tokens."""
    if not parts:
        return metrics
    own = float(aggregation_weights(torch.cat([p.loss_mask for p in parts]), mode, constant=constant).sum())
    shared = sum(float(p.share.sum()) for p in parts if p.share is not None)
    factor = own / shared if shared else 1.0
    token_share = sum(p.token_share for p in parts)

    def scaled(key: str, value: Tensor) -> Tensor:
        if key.startswith("loss/"):
            return value
        return value * factor if key in ("policy/entropy", "policy/kl") else value / token_share
    return {k: scaled(k, v) for k, v in metrics.items()}


def micro_batches(batch: Batch, size: int | None, *, mode: str, constant: float) -> list[Batch]:
    """``batch`` in micro-batches of ``size`` responses, rounded down to whole groups (at least one);
    ``[batch]`` itself when size is None or 0 or holds the whole batch."""
    prompts = len(batch.rollouts.prompts)
    per = max(1, (size or 0) // batch.rollouts.group_size)
    if not size or per >= prompts:
        return [batch]
    parts = [range(start, min(start + per, prompts)) for start in range(0, prompts, per)]
    return slices(batch, parts, mode=mode, constant=constant)


def reward_metrics(rewards: Tensor, deltas: Tensor) -> dict[str, float]:
    """rewards, deltas (B, G) -> batch statistics, incl. the share of groups with one reward value."""
    same = (rewards.max(-1).values == rewards.min(-1).values).float()
    return {
        "train/reward_mean": float(rewards.mean()),
        "train/reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "train/zero_std_frac": float(same.mean()),
        "train/delta_abs_mean": float(deltas.abs().mean()),
    }


def sample_records(step: int, batch: Batch, task: Task, *, prompts: int) -> list[dict[str, Any]]:
    """The first ``prompts`` groups of the batch as samples.jsonl records: prompt, solution, responses,
    rewards and deltas."""
    r = batch.rollouts
    responses = [as_json(x) for x in (r.decoded if r.decoded is not None else r.responses())]
    group = r.group_size
    return [{"step": step, "prompt": as_json(prompt), "solution": as_json(task.solution(prompt)),
             "responses": responses[i * group:(i + 1) * group],
             "rewards": r.rewards[i].tolist(), "deltas": batch.deltas[i].tolist()}
            for i, prompt in enumerate(r.prompts[:prompts])]
