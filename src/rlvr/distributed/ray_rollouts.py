"""Rollouts sampled and scored by Ray actors that own copies of the policy.

    rlvr train --config sort-toy --backend ray --rollout-workers 2

Each actor builds the task and the policy from the run's config (so reward functions run on the
workers too). Shard s of every batch goes to actor s % W with the ObjectRef of the latest weights
and its stream's state; the learner collects the shards, checks each came back exactly once, and
after each outer step puts its weights into Ray's object store once (``ray.put``) -- every actor
reads that one object, and only when its version is newer than what it holds. The weights are the
policy's ``state_dict``: for an HF policy with LoRA only its adapters (``rollout/weight_sync_mb``
logs the size), since every actor loads the frozen base model itself.

Fault tolerance: the actors are created with ``max_restarts`` / ``max_task_retries``. An actor
that dies mid-rollout is restarted by Ray and its shard re-run; the task carries everything it
needs (weights ref, prompts, stream state), so the retried shard is the same shard with the same
responses -- no group lost or duplicated, the metrics as if nothing happened. If the restarts are
exhausted, the shard is resubmitted to another actor.

One-step-off-policy (``distributed.off_policy``): right after batch k is collected, batch k+1 is
submitted with the weights the learner holds *before* training on batch k, and sampled while the
learner trains. Batch k+1 is then one optimizer phase stale; the recorded sampler log-probs are the
behaviour policy's, so the ratio and clipped losses weight by pi_theta / pi_behaviour
(docs/scaling.md), or, with ``algo.rollout_correction``, by pi_theta / pi_old around the learner's
own log-probs with a truncated or masked weight for pi_old / pi_behaviour (algorithms/correction.py).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from rlvr.config import Config
from rlvr.errors import UserError
from rlvr.multiturn import build_episodes
from rlvr.policies import Policy, build_policy
from rlvr.rewards import RewardRunner
from rlvr.rewards.sources import build_rewards
from rlvr.rollout import PromptSource, Rollouts
from rlvr.tasks import Task, build_task

from .backend import RolloutBackend, ShardResult
from .shards import Shard, sample_shard

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError:  # the `ray` extra is optional
    ray = None


@dataclass
class Pending:
    """Shards in flight, and the weights (object ref, version) they are sampled with."""

    shards: list[Shard]
    weights: Any
    version: int
    count: int  # prompts
    refs: list[Any] = field(default_factory=list)

    @property
    def group_size(self) -> int | None:
        return self.shards[0].group_size if self.shards else None


class RolloutWorker:
    """A Ray actor: one copy of the policy and the task; samples and scores shards."""

    def __init__(self, cfg: Config) -> None:
        torch.set_num_threads(cfg.train.threads)
        self.cfg = cfg
        self.task = build_task(cfg.task)
        # user reward code is guarded here too (in process: no pool inside an actor); model sources load here
        self.rewards = build_rewards(cfg, self.task, max_failure_rate=1.0, workers=0)
        self.policy = build_policy(cfg.policy, self.task)
        # multi-turn runs: the actor's own envs, in process (env.workers applies to the learner's process)
        self.episodes = build_episodes(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, workers=0)),
                                       self.task, self.policy)
        if cfg.distributed.worker_gpus > 0 and torch.cuda.is_available():
            self.policy.cuda()
        self.version = -1

    def generate(self, weights: list[Any], version: int, shard: Shard) -> ShardResult:
        """weights: [ObjectRef] (in a list, so Ray fetches it only when this actor needs it)."""
        if version != self.version:
            self.policy.load_state_dict(ray.get(weights[0]))
            self.version = version
        train = self.cfg.train  # the shard's own group size, if it names one (adaptive sampling)
        rollouts, state = sample_shard(self.policy, self.task, shard, self.cfg.seed,
                                       group_size=train.group_size, temperature=train.temperature,
                                       rewards=self.rewards, episodes=self.episodes)
        return shard.index, rollouts, state

    def pid(self) -> int:
        return os.getpid()


def connect(address: str | None, num_cpus: int) -> bool:
    """Join the given cluster, or start a local Ray (loopback only). True when we started it."""
    if ray is None:
        raise UserError("distributed.backend: 'ray' needs Ray; install it with pip install 'rlvr[ray]'")
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError) as exc:
            raise UserError(f"distributed.ray_address: cannot join a Ray cluster at {address!r} ({exc})") from None
    else:
        # "local": always a new single-machine Ray, never a cluster found on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


class RayRollouts(RolloutBackend):
    def __init__(self, cfg: Config, task: Task, policy: Policy, prompts: PromptSource,
                 rewards: RewardRunner | None = None, *, worker_cls: type | None = None) -> None:
        dcfg = cfg.distributed
        super().__init__(cfg, prompts, dcfg.rollout_workers)
        t0 = time.perf_counter()
        self.started_ray = connect(dcfg.ray_address, num_cpus=max(os.cpu_count() or 1, dcfg.rollout_workers))
        actor = ray.remote(worker_cls or RolloutWorker).options(
            num_cpus=1, num_gpus=dcfg.worker_gpus, max_restarts=dcfg.max_restarts,
            max_task_retries=dcfg.max_restarts)
        self.workers = [actor.remote(cfg) for _ in range(dcfg.rollout_workers)]
        self.version = -1
        self.sync(policy)
        ray.get([w.pid.remote() for w in self.workers])  # wait until every actor is up
        self.startup_seconds = time.perf_counter() - t0
        self.pending: Pending | None = None

    def sync(self, policy: Policy) -> None:
        """One ``ray.put`` of the learner's weights per outer step; actors fetch it on their next shard.
        The weights are the policy's ``state_dict``: with LoRA, the adapters alone (policies/hf.py)."""
        t0 = time.perf_counter()
        state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
        self.weights = ray.put(state)
        self.version += 1
        self.last_metrics["time/weight_sync"] = time.perf_counter() - t0
        self.last_metrics["rollout/weight_sync_mb"] = sum(v.numel() * v.element_size() for v in state.values()) / 2**20

    def rollouts(self, count: int, *, group_size: int | None = None) -> Rollouts:
        pending = self.pending
        if pending is None or (pending.count, pending.group_size) != (count, group_size):
            self.cancel()
            pending = self.submit(self.next_shards(count, group_size))
        batch = self.wait(pending)
        # off-policy: the next batch is sampled with the current weights while the learner trains
        self.pending = self.submit(self.next_shards(count, group_size)) if self.cfg.distributed.off_policy else None
        return batch

    def sample(self, shards: list[Shard]) -> Rollouts:
        return self.wait(self.submit(shards))

    def wait(self, pending: Pending) -> Rollouts:
        t0 = time.perf_counter()
        batch = self.assemble(self.collect(pending))
        self.last_metrics["time/rollout_wait"] = time.perf_counter() - t0
        self.last_metrics["rollout/policy_lag"] = float(self.version - pending.version)
        return batch

    def submit(self, shards: list[Shard]) -> Pending:
        pending = Pending(shards, self.weights, self.version, sum(len(s.prompts) for s in shards))
        pending.refs = [self.task_for(pending, shard, shard.index) for shard in shards]
        return pending

    def task_for(self, pending: Pending, shard: Shard, worker: int) -> Any:
        actor = self.workers[worker % len(self.workers)]
        return actor.generate.remote([pending.weights], pending.version, shard)

    def collect(self, pending: Pending) -> list[ShardResult]:
        """Every shard's result; a shard whose actor is gone for good goes to the next actor."""
        results: list[ShardResult] = []
        for shard, ref in zip(pending.shards, pending.refs, strict=True):
            for attempt in range(1, len(self.workers) + 1):
                try:
                    results.append(ray.get(ref))
                    break
                except RayActorError:
                    if attempt == len(self.workers):
                        raise
                    ref = self.task_for(pending, shard, shard.index + attempt)
        return results

    def cancel(self) -> None:
        """Drop a prefetched batch nobody will train on (its prompts are skipped)."""
        for ref in self.pending.refs if self.pending is not None else []:
            ray.cancel(ref)
        self.pending = None

    def close(self) -> None:
        self.cancel()
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
        if self.started_ray:
            ray.shutdown()
