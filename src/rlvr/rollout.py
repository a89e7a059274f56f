"""Rollouts: sample G responses for each of B prompts and score them with the task's verifier; refill
a batch whose groups have no reward spread with new prompts (dynamic sampling), or sample the same
prompts again until their pools have a spread (adaptive sampling); the rollouts' per-token rewards and
length shaping.

Shapes as in ``rlvr.algorithms``: rewards (B, G); response_ids, mask, logprobs (N, T), N = B * G,
responses of one prompt contiguous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms.adaptive import ExitRule, balanced_selection, pool_statistics
from rlvr.algorithms.shaping import overlong_penalty
from rlvr.policies import Policy
from rlvr.policies.base import response_lists
from rlvr.rewards import RewardRunner
from rlvr.tasks import Prompt, Task


@dataclass
class Rollouts:
    prompts: list[Prompt]    # B task prompts
    prompt_ids: Tensor       # (B, P)
    response_ids: Tensor     # (N, T)
    mask: Tensor             # (N, T)
    logprobs: Tensor         # (N, T) recorded by the sampler: pi_old, a constant
    rewards: Tensor          # (B, G)
    group_size: int
    truncated: Tensor | None = None  # (N,) bool, from the sampler (None: nothing truncated)
    decoded: list[Any] | None = None  # N responses as the verifier read them (token lists or Completions)
    prompt_pad_id: int = 0           # the id left-padding prompt_ids (the policy's <pad>)
    source_rewards: Tensor | None = None  # (B, G, S) each reward source's own (unweighted) reward; None:
                                          # scored without a reward runner (rewards.source_weights: S weights)
    # adaptive sampling: each prompt's whole pool of responses (the G above are some of them)
    pool_mean: Tensor | None = None  # (B,) the pool's mean reward (as the deltas see rewards)
    pool_std: Tensor | None = None   # (B,) its standard deviation
    pool_size: Tensor | None = None  # (B,) responses sampled for the prompt
    # multi-turn episodes (rlvr.multiturn): the response is the whole episode after its first observation
    attended: Tensor | None = None       # (N, T) every episode token (policy and env turns); None: = mask
    token_rewards: Tensor | None = None  # (N, T) each turn's reward on the turn's last token

    @property
    def context_mask(self) -> Tensor:
        """(N, T) the tokens a training pass reads (``mask``, the tokens the loss sees, for single answers)."""
        return self.attended if self.attended is not None else self.mask

    def responses(self) -> list[list[int]]:
        return response_lists(self.response_ids, self.mask)


def select_prompts(rollouts: Rollouts, prompt_rows: Sequence[int]) -> Rollouts:
    """The rollouts of the given prompt rows b and their responses n = b * G + g, in that order."""
    group = rollouts.group_size
    return regroup(rollouts, prompt_rows, [int(b) * group + g for b in prompt_rows for g in range(group)],
                   group_size=group)


def regroup(rollouts: Rollouts, prompt_rows: Sequence[int], response_rows: Sequence[int], *,
            group_size: int) -> Rollouts:
    """New groups: prompt row ``prompt_rows[b]`` with the responses ``response_rows[b*G' : (b+1)*G']``
    (rows n of ``rollouts``, any of them), G' = ``group_size``. Every per-prompt field (B rows) and
    per-response field (N rows) is cut, tensors and lists alike; the fields laid out per group, (B, G,
    ...), as their responses'."""
    batch = len(rollouts.prompts)
    prompts, responses = [int(b) for b in prompt_rows], [int(n) for n in response_rows]
    cut: dict[str, Any] = {"group_size": group_size}
    for f in dataclasses.fields(rollouts):
        value = getattr(rollouts, f.name)
        if f.name in GROUPED and value is not None:  # (B, G, ...) -> its responses' (B', G', ...)
            flat = value.reshape(-1, *value.shape[2:])
            cut[f.name] = flat[responses].reshape(len(prompts), group_size, *value.shape[2:])
        elif isinstance(value, (Tensor, list)):
            rows = prompts if len(value) == batch else responses
            cut[f.name] = value[rows] if isinstance(value, Tensor) else [value[i] for i in rows]
    return dataclasses.replace(rollouts, **cut)


GROUPED = ("rewards", "source_rewards")  # the Rollouts fields laid out (B, G, ...): one row per prompt


def concat_rollouts(parts: Sequence[Rollouts]) -> Rollouts:
    """Several batches of groups -> one, in order. Widths that differ are padded: prompt tensors on
    the left with ``prompt_pad_id``, response tensors on the right with 0 (mask 0: never counted)."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(parts[0]):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(values[0], Tensor):
            left = f.name.startswith("prompt")
            merged[f.name] = cat_padded(values, left=left, value=parts[0].prompt_pad_id if left else 0)
        elif isinstance(values[0], list):
            merged[f.name] = [item for value in values for item in value]
        else:
            if any(v != values[0] for v in values):
                raise ValueError(f"rollouts disagree on {f.name}: {values}")
            merged[f.name] = values[0]
    return type(parts[0])(**merged)


def cat_padded(tensors: Sequence[Tensor], *, left: bool, value: int = 0) -> Tensor:
    """Concatenate along rows, padding dim 1 to the widest (on the left or the right)."""
    if tensors[0].dim() < 2 or len({t.shape[1] for t in tensors}) == 1:
        return torch.cat(list(tensors))
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        pad = (width - t.shape[1], 0) if left else (0, width - t.shape[1])
        padded.append(torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + pad, value=value))
    return torch.cat(padded)


class PromptSource:
    """Training prompts in a reproducible order: a fixed list cycled in order, or seeded draws."""

    def __init__(self, task: Task, seed: int) -> None:
        self.task = task
        self.rng = np.random.default_rng([seed, 2])
        self.position = 0

    def next_batch(self, count: int) -> list[Prompt]:
        fixed = self.task.fixed_prompts
        if fixed is not None:
            batch = [fixed[(self.position + i) % len(fixed)] for i in range(count)]
        else:
            batch = [self.task.train_prompt(self.rng) for _ in range(count)]
        self.position += count
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]
        self.rng.bit_generator.state = state["rng"]


def score(task: Task, prompts: Sequence[Prompt], responses: Sequence[Any], group_size: int,
          *, rewards: RewardRunner | None = None) -> Tensor:
    """Rewards (B, G) of N = B * G responses, response n answering prompt n // G. With ``rewards``
    (a RewardRunner around ``task.reward``), a failing reward call gets its fallback instead of raising."""
    return score_sources(task, prompts, responses, group_size, rewards=rewards)[0]


def score_sources(task: Task, prompts: Sequence[Prompt], responses: Sequence[Any], group_size: int,
                  *, rewards: RewardRunner | None = None) -> tuple[Tensor, Tensor | None]:
    """``score``'s rewards (B, G), and each reward source's own reward (B, G, S) (``rewards.scored``;
    None without ``rewards``): the sum weighs them by ``rewards.source_weights``."""
    asked = [prompts[n // group_size] for n in range(len(responses))]
    if rewards is None:
        values = [task.reward(p, r) for p, r in zip(asked, responses, strict=True)]
        return torch.tensor(values, dtype=torch.float).reshape(len(prompts), group_size), None
    values, by_source = rewards.scored(asked, responses)
    count = len(rewards.source_weights)
    sources = torch.tensor(by_source, dtype=torch.float).reshape(len(prompts), group_size, count)
    return torch.tensor(values, dtype=torch.float).reshape(len(prompts), group_size), sources


def generate(policy: Policy, task: Task, prompts: list[Prompt], *, group_size: int,
             generator: torch.Generator, temperature: float, rewards: RewardRunner | None = None) -> Rollouts:
    prompt_ids = policy.encode_prompts(prompts)
    samples = policy.sample(prompt_ids, group_size, generator=generator, temperature=temperature)
    decoded = policy.decode_responses(samples.response_ids, samples.mask)
    scores, sources = score_sources(task, prompts, decoded, group_size, rewards=rewards)
    return Rollouts(prompts=prompts, prompt_ids=prompt_ids, response_ids=samples.response_ids,
                    mask=samples.mask, logprobs=samples.logprobs, rewards=scores, group_size=group_size,
                    truncated=samples.truncated, decoded=decoded, prompt_pad_id=policy.prompt_pad_id,
                    source_rewards=sources)


def as_json(value: Any) -> Any:
    """A prompt, solution or decoded response as JSON: token tuples as lists, Completions as text."""
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    if hasattr(value, "to_json"):  # an Episode (rlvr.multiturn)
        return value.to_json()
    if hasattr(value, "token_ids"):
        body = value.body()
        return body if body is not None else {"malformed": value.text, "ids": list(value.token_ids)}
    return value

# ---------------------------------------------------------------- dynamic sampling, per-token rewards, shaping
# Dynamic sampling (DAPO, Yu et al. 2025, sec. 3.2; verl ``filter_groups``): a group whose G rewards
# are all equal gets zero group-centred deltas, so it only dilutes the batch. Such groups are
# dropped and more prompts are drawn, at most ``max_refills`` times per step; then the step trains
# on the first B surviving groups, or on fewer when the refills ran out (DAPO itself raises
# instead). Counts go to the metrics: ``sampling/draws``, ``sampling/kept_groups``,
# ``sampling/dropped_groups``.


def has_signal(rewards: Tensor) -> Tensor:
    """rewards (B, G) -> (B,) bool: True where the group's rewards are not all equal."""
    return rewards.max(-1).values != rewards.min(-1).values


def dynamic_sample(draw: Callable[[int], Rollouts], batch_size: int, *, max_refills: int,
                   enabled: bool) -> tuple[Rollouts, Tensor, dict[str, float]]:
    """Draw B groups; if ``enabled``, drop zero-variance groups and refill (at most M more draws of B
    prompts). Returns (rollouts to train on (<= B groups), the first draw's rewards (B, G) -- an
    unfiltered sample of the policy's reward, for the learning curves -- and the counts)."""
    first = draw(batch_size)
    if not enabled:
        return first, first.rewards, {}
    kept: list[Rollouts] = []
    count, draws, dropped, current = 0, 1, 0, first
    while True:
        signal = has_signal(current.rewards).tolist()
        keep = [g for g, ok in enumerate(signal) if ok][: batch_size - count]
        dropped += signal.count(False)
        if keep:
            kept.append(select_prompts(current, keep))
            count += len(keep)
        if count >= batch_size or draws > max_refills:
            break
        current = draw(batch_size)
        draws += 1
    rollouts = concat_rollouts(kept) if kept else select_prompts(first, [])
    stats = {"sampling/draws": float(draws), "sampling/kept_groups": float(count),
             "sampling/dropped_groups": float(dropped)}
    return rollouts, first.rewards, stats


# Adaptive sampling (Reinforce-Ada, Xiong et al. 2025, arXiv:2510.04996): where dynamic sampling
# replaces a flat group by a new prompt's, adaptive sampling keeps the prompt and samples it again:
# M responses per round for every prompt its exit rule has not retired yet, at most N rounds; then
# each prompt's pool is cut to a group of G (half correct, half incorrect where the pool allows) whose
# deltas use the statistics of the whole pool (rlvr.algorithms.adaptive). Counts go to the metrics:
# ``sampling/samples_per_prompt``, ``sampling/rounds``, ``sampling/resolved_prompts``,
# ``sampling/flat_groups``.


def adaptive_sample(draw: Callable[[int, int], Rollouts], resample: Callable[[list[Prompt], int], Rollouts],
                    batch_size: int, *, group_size: int, round_size: int, rounds: int, exit_rule: ExitRule,
                    correct: Callable[[Rollouts], Tensor], reward_of: Callable[[Rollouts], Tensor],
                    unbiased_std: bool) -> tuple[Rollouts, Tensor, dict[str, float]]:
    """Round 1 draws B new prompts with M = ``round_size`` responses each (``draw(B, M)``); each later
    round samples M more for the prompts ``exit_rule`` has not retired (``resample(prompts, M)``), up
    to ``rounds`` rounds. ``correct(rollouts)``: (B_r, M) bool, which responses count as correct;
    ``reward_of(rollouts)``: (B_r, M), the rewards the deltas will see. Returns (B groups of G, each
    with its pool's mean, std and size; the first G rewards of each prompt's first round, an unselected
    sample for the learning curves like a plain run's; the counts)."""
    parts: list[Rollouts] = []
    owners: list[Tensor] = []          # per round: the prompt rows it sampled (B_r,)
    hits: list[Tensor] = []            # per round: (B_r, M) correct
    right = torch.zeros(batch_size, dtype=torch.long)
    wrong = torch.zeros(batch_size, dtype=torch.long)
    done = torch.zeros(batch_size, dtype=torch.bool)
    for round_index in range(rounds):
        active = torch.arange(batch_size)[~done]
        if not len(active):
            break
        if round_index == 0:
            part = draw(batch_size, round_size)
        else:
            part = resample([parts[0].prompts[b] for b in active.tolist()], round_size)
        parts.append(part)
        owners.append(active)
        hits.append(correct(part).bool())
        right.index_add_(0, active, hits[-1].sum(1))
        wrong.index_add_(0, active, (~hits[-1]).sum(1))
        done = exit_rule(right, wrong, group_size=group_size)
    # the pools (B, R * M): a prompt is active in a prefix of the rounds, so its pool is a prefix of its row
    firsts = torch.tensor([0, *[len(a) for a in owners]]).cumsum(0)   # each part's first row, concatenated
    rows = [(first * round_size + torch.arange(len(a) * round_size)).reshape(len(a), round_size)
            for first, a in zip(firsts.tolist(), owners, strict=False)]
    sizes = right + wrong
    chosen = balanced_selection(as_pools(hits, owners, batch_size=batch_size), sizes, group_size=group_size)
    mean, std = pool_statistics(as_pools([reward_of(p).float() for p in parts], owners, batch_size=batch_size),
                                sizes, unbiased=unbiased_std)
    picked = as_pools(rows, owners, batch_size=batch_size).gather(1, chosen)              # (B, G)
    groups = regroup(concat_rollouts(parts), range(batch_size), picked.reshape(-1), group_size=group_size)
    groups = dataclasses.replace(groups, pool_mean=mean, pool_std=std, pool_size=sizes)
    stats = {"sampling/samples_per_prompt": float(sizes.float().mean()), "sampling/rounds": float(len(parts)),
             "sampling/resolved_prompts": float(done.float().mean()),
             "sampling/flat_groups": float((~has_signal(groups.rewards)).float().mean())}
    return groups, parts[0].rewards[:, :group_size], stats


def as_pools(values: Sequence[Tensor], owners: Sequence[Tensor], *, batch_size: int) -> Tensor:
    """Per-round values (B_r, M) of each round's prompt rows -> pools (B, R * M), round r in columns
    r*M .. (r+1)*M - 1 (zeros where a prompt was no longer sampled)."""
    round_size = values[0].shape[1]
    pools = torch.zeros(batch_size, len(values) * round_size, dtype=values[0].dtype)
    for r, (value, active) in enumerate(zip(values, owners, strict=True)):
        pools[active, r * round_size:(r + 1) * round_size] = value
    return pools


def token_reward_tensor(task: Task, rollouts: Rollouts) -> Tensor | None:
    """The task's per-token process rewards as (N, T) (0 on padding), or None if it has none; an
    episode's are its turns' rewards, on each turn's last token."""
    if rollouts.token_rewards is not None:
        return rollouts.token_rewards
    responses = rollouts.decoded if rollouts.decoded is not None else rollouts.responses()
    group = rollouts.group_size
    out = torch.zeros_like(rollouts.mask)
    for n, response in enumerate(responses):
        values = task.token_rewards(rollouts.prompts[n // group], response)
        if values is None:
            return None
        out[n, : len(values)] = torch.tensor(values, dtype=out.dtype)
    return out


def length_penalty(rollouts: Rollouts, *, max_length: int, buffer_frac: float, factor: float) -> Tensor:
    """DAPO's soft overlong punishment of each response (B, G), from the mask and the sampler's
    ``truncated`` flag (absent: nothing truncated). The buffer is a fraction of ``max_length``."""
    lengths = rollouts.mask.sum(-1)
    truncated = rollouts.truncated if rollouts.truncated is not None else torch.zeros_like(lengths, dtype=torch.bool)
    penalty = overlong_penalty(lengths, truncated.bool(), max_length=max_length,
                               buffer=round(buffer_frac * max_length), factor=factor)
    return penalty.reshape(rollouts.rewards.shape)
