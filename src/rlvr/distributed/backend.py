"""Rollout backends: where an outer step's rollouts are sampled and scored.

The trainer asks its backend for one batch per outer step and, after the optimizer steps, hands it
the new weights:

    rollouts = backend.rollouts(B)      # the next B prompts x G responses, scored, in prompt order
    more = backend.resample(prompts, group_size=M)  # adaptive sampling: M more for prompts already drawn
    ... inner loop on the learner ...
    backend.sync(policy)                # the samplers get the new weights

Every backend cuts the batch into shards with their own sampling streams (``shards.py``) and puts
the sampled shards back together in shard order, checking that each came back exactly once. An
inference engine (vLLM, SGLang) would plug in here: a backend whose shards are sampled by the
engine and whose ``sync`` pushes weights into it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from rlvr.config import Config
from rlvr.policies import Policy
from rlvr.rollout import PromptSource, Rollouts, concat_rollouts
from rlvr.tasks import Prompt

from .shards import Shard, ShardStreams

ShardResult = tuple[int, Rollouts, Tensor]  # (shard index, its rollouts, its stream's new state)


class RolloutBackend(ABC):
    """Sharded rollouts: prompts from the learner's prompt source, one stream per shard."""

    def __init__(self, cfg: Config, prompts: PromptSource, workers: int) -> None:
        """workers: rollout workers or ranks; the default number of shards (at most B)."""
        self.cfg = cfg
        self.prompts = prompts
        self.streams = ShardStreams(cfg.seed, cfg.distributed.rollout_shards
                                    or min(workers, cfg.train.prompts_per_step))
        self.last_metrics: dict[str, float] = {}

    @property
    def num_shards(self) -> int:
        return len(self.streams.states)

    def rollouts(self, count: int, *, group_size: int | None = None) -> Rollouts:
        """The next ``count`` prompts' groups of ``group_size`` (None: train.group_size), sampled and scored."""
        return self.sample(self.next_shards(count, group_size))

    def resample(self, prompts: list[Prompt], *, group_size: int | None = None) -> Rollouts:
        """Groups for prompts drawn before (adaptive sampling's later rounds): the prompt source stays
        where it is; the shard streams go on, as after any draw, so a seed's run stays reproducible."""
        return self.sample(self.streams.cut(prompts, group_size=group_size))

    @abstractmethod
    def sample(self, shards: list[Shard]) -> Rollouts:
        """The shards sampled and scored, put together in shard order (``assemble``)."""

    def sync(self, policy: Policy) -> None:  # noqa: B027 (a hook: local backends need nothing)
        """Called after each outer step's optimizer steps (default: the learner samples itself)."""

    def metrics(self) -> dict[str, float]:
        return dict(self.last_metrics)

    def close(self) -> None:  # noqa: B027 (a hook)
        """Release workers (default: nothing to release)."""

    def next_shards(self, count: int, group_size: int | None = None) -> list[Shard]:
        return self.streams.cut(self.prompts.next_batch(count), group_size=group_size)

    def assemble(self, results: list[ShardResult]) -> Rollouts:
        """Shards in any order -> the batch in shard order; each shard exactly once."""
        indices = sorted(index for index, _, _ in results)
        if indices != list(range(len(results))) or not results:
            raise RuntimeError(f"rollout shards lost or duplicated: got {indices}")
        by_index = {index: (rollouts, state) for index, rollouts, state in results}
        for index, (_, state) in by_index.items():
            self.streams.advance(index, state)
        batch = concat_rollouts([by_index[i][0] for i in indices])
        self.last_metrics["rollout/tokens"] = float(batch.mask.sum())
        return batch

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to sample the same streams (the prompt source is the trainer's)."""
        return {"streams": self.streams.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streams.load_state_dict(state["streams"])
