"""Rollout shards: one outer step's B prompts cut into S pieces, each sampled with its own RNG stream.

The learner draws the prompts and cuts them into S contiguous shards whose sizes differ by at most
one (3 prompts in 2 shards: 2 + 1). Shard s is always sampled from stream s, a torch generator
seeded once per run -- stream 0 with the run's seed, exactly like the single generator of a plain
single-process run -- whose state travels with the shard and comes back advanced. Whoever samples
shard s (this process, a Ray actor, a torchrun rank, a retry after a crash) therefore draws the same
responses: a seed's metrics depend on S, never on the backend or the number of workers.

Shapes as in ``rlvr.rollout``: per shard, prompt rows (B_s, P) and response rows (N_s, T), N_s = B_s * G.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rlvr.multiturn import EpisodeSampler
from rlvr.policies import Policy
from rlvr.rewards import RewardRunner
from rlvr.rollout import Rollouts, generate
from rlvr.tasks import Prompt, Task


@dataclass
class Shard:
    """A piece of one outer step's rollout work: which prompts, how many responses each, and the
    stream that samples them."""

    index: int                 # s in 0..S-1: the stream it is sampled from
    prompts: list[Prompt]
    rng_state: Tensor | None   # the stream's generator state; None before its first use
    group_size: int | None = None  # responses per prompt (None: train.group_size; adaptive sampling's rounds: M)


def shard_sizes(count: int, shards: int) -> list[int]:
    """count prompts in `shards` contiguous pieces, the first count % shards one larger."""
    base, extra = divmod(count, shards)
    return [base + (s < extra) for s in range(shards)]


def split_prompts(prompts: list[Prompt], shards: int) -> list[list[Prompt]]:
    bounds = np.cumsum([0, *shard_sizes(len(prompts), shards)])
    return [prompts[bounds[s]:bounds[s + 1]] for s in range(shards)]


def stream_seed(seed: int, shard: int) -> int:
    """Stream 0 uses the run's seed (so one shard reproduces a plain run); others a derived seed."""
    if shard == 0:
        return seed
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ShardStreams:
    """The S generator states of a run, advanced as shards come back."""

    def __init__(self, seed: int, shards: int) -> None:
        self.seed = seed
        self.states: list[Tensor | None] = [None] * shards

    def cut(self, prompts: list[Prompt], *, group_size: int | None = None) -> list[Shard]:
        """S shards (fewer when there are fewer prompts: one each, from streams 0, 1, ...)."""
        pieces = split_prompts(prompts, min(len(self.states), len(prompts)))
        return [Shard(s, piece, self.states[s], group_size) for s, piece in enumerate(pieces)]

    def advance(self, shard: int, state: Tensor) -> None:
        self.states[shard] = state

    def state_dict(self) -> dict[str, object]:
        return {"seed": self.seed, "states": list(self.states)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.seed = int(state["seed"])  # type: ignore[arg-type]
        self.states = list(state["states"])  # type: ignore[arg-type]


def policy_device(policy: Policy) -> torch.device:
    return next(iter(policy.parameters()), torch.empty(0)).device


def sample_shard(policy: Policy, task: Task, shard: Shard, seed: int, *, group_size: int,
                 temperature: float, rewards: RewardRunner | None = None,
                 episodes: EpisodeSampler | None = None) -> tuple[Rollouts, Tensor]:
    """Sample and score one shard, ``shard.group_size`` responses per prompt if it names a size, else
    ``group_size``; returns its rollouts (on the CPU) and the stream's new state. With ``episodes`` (a
    multi-turn run) each response is an episode played with the shard's envs, scored by them."""
    generator = torch.Generator(policy_device(policy))
    if shard.rng_state is None:
        generator.manual_seed(stream_seed(seed, shard.index))
    else:
        generator.set_state(shard.rng_state)
    group = shard.group_size or group_size
    if episodes is not None:
        rollouts = episodes.rollouts(policy, shard.prompts, group_size=group, generator=generator,  # type: ignore[arg-type]
                                     temperature=temperature)
    else:
        rollouts = generate(policy, task, shard.prompts, group_size=group, generator=generator,
                            temperature=temperature, rewards=rewards)
    return to_cpu(rollouts), generator.get_state()


# ----------------------------------------------------------------------------- rollouts as rows


def to_cpu(rollouts: Rollouts) -> Rollouts:
    return dataclasses.replace(rollouts, **{
        f.name: value.cpu() for f in dataclasses.fields(rollouts)
        if isinstance(value := getattr(rollouts, f.name), Tensor)})


def response_rows(prompt_rows: Tensor, group_size: int) -> Tensor:
    """Rows of the responses (n = b * G + g) of the given prompt rows b, in that order."""
    return (prompt_rows.unsqueeze(1) * group_size + torch.arange(group_size)).reshape(-1)


def shard_prompt_rows(count: int, shards: int, owned: list[int]) -> Tensor:
    """Prompt row indices of the owned shards, in shard order."""
    bounds = np.cumsum([0, *shard_sizes(count, shards)])
    return torch.cat([torch.arange(bounds[s], bounds[s + 1]) for s in owned]) if owned else torch.zeros(0, dtype=torch.long)
