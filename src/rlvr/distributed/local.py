"""Rollouts sampled by the learner's own policy, in this process.

Alone, the process samples every shard (one by default: exactly the plain single-process run).
Under torchrun each rank samples the shards s with s % world_size == rank, and the ranks exchange
them (``all_gather_object``), so every rank holds the whole batch in shard order: rewards, deltas,
metrics and samples are computed on the whole batch everywhere, and each rank's learner then
differentiates its share of the batch's rows (``ddp.py``).
"""

from __future__ import annotations

import torch.distributed as dist

from rlvr.config import Config
from rlvr.multiturn import EpisodeSampler
from rlvr.policies import Policy
from rlvr.rewards import RewardRunner
from rlvr.rollout import PromptSource, Rollouts
from rlvr.tasks import Task

from .backend import RolloutBackend, ShardResult
from .shards import Shard, sample_shard


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class LocalRollouts(RolloutBackend):
    def __init__(self, cfg: Config, task: Task, policy: Policy, prompts: PromptSource,
                 rewards: RewardRunner | None = None, episodes: EpisodeSampler | None = None) -> None:
        self.rank, self.world_size = rank_and_world()
        super().__init__(cfg, prompts, self.world_size)
        self.task = task
        self.policy = policy
        self.rewards = rewards
        self.episodes = episodes

    def owned(self, shard: int) -> bool:
        return shard % self.world_size == self.rank

    def sample(self, shards: list[Shard]) -> Rollouts:
        train = self.cfg.train
        results: list[ShardResult] = [
            (shard.index, *sample_shard(self.policy, self.task, shard, self.cfg.seed,
                                        group_size=train.group_size, temperature=train.temperature,
                                        rewards=self.rewards, episodes=self.episodes))
            for shard in shards if self.owned(shard.index)]
        if self.world_size > 1:
            gathered: list[list[ShardResult] | None] = [None] * self.world_size
            dist.all_gather_object(gathered, results)
            results = [result for part in gathered for result in (part or [])]
        return self.assemble(results)
