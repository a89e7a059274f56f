"""The data-parallel learner under torchrun: DistributedDataParallel around the policy's log-probs.

    torchrun --standalone --nproc_per_node=2 -m rlvr train --config sort-toy

Every rank builds the same policy (same seed; DDP also broadcasts rank 0's weights at the start),
samples its own rollout shards and receives the others' (``local.py``), so rewards, deltas,
metrics and samples are the whole batch's on every rank. Each rank differentiates only its rows,
a slice of the batch (``rlvr.batching``: the batch's prompts cut into R contiguous pieces whose
sizes differ by at most one) scaled by R:

    loss_r = R * sum_{(i,t) in rank r} w_it l_it,     w = d aggregate(l) / d l  over the WHOLE batch

so (1/R) sum_r loss_r is the whole batch's loss and DDP's averaged gradient (1/R) sum_r grad loss_r
is exactly one process's gradient on the whole batch -- also when ranks hold different numbers of
prompts or tokens (3 prompts on 2 ranks). With ``train.micro_batch_size`` a rank accumulates over
micro-batches of its rows and all-reduces once, after the last (``no_sync`` before). Inner-loop
metrics are averaged over ranks: exact for the aggregated losses, KL, entropy and the token-mean
ratio metrics (each rank's scaled by its part of the loss tokens); roughly for seq_ratio_mean.

Files are written once, by rank 0 (``RunDir(writer=...)``). Ranks evaluate redundantly (same
weights, same seeds, same numbers) rather than broadcast. Models that do not fit one device need
FSDP instead of DDP (docs/scaling.md); not implemented here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from rlvr.batching import Batch, aggregation_weights, micro_batches, slices
from rlvr.config import Config
from rlvr.errors import UserError
from rlvr.runs.recorder import default_run_dir
from rlvr.trainer import Trainer, compute_loss

from .shards import shard_prompt_rows

__all__ = ["DDPTrainer", "aggregation_weights", "train_ddp"]  # aggregation_weights: from rlvr.batching


class LogprobsModule(nn.Module):
    """DDP all-reduces the gradients of what its forward() computed; the loss needs the policy's
    ``logprobs``, so forward() is that."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return self.policy.logprobs(*args, **kwargs)


class DDPPolicy:
    """What ``compute_loss`` needs of a policy (``logprobs``), through DDP."""

    def __init__(self, ddp: DistributedDataParallel) -> None:
        self.ddp = ddp

    def logprobs(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return self.ddp(*args, **kwargs)


def init_process_group() -> tuple[int, int]:
    """From torchrun's environment: gloo for CPU tensors, NCCL for CUDA ones."""
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size()


def shared_run_dir(cfg: Config) -> str:
    """Rank 0's run directory (the default one holds a timestamp that ranks could disagree on)."""
    chosen = [cfg.run_dir or str(default_run_dir(cfg.name))]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


class DDPTrainer(Trainer):
    def __init__(self, cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
                 show_samples: bool = False) -> None:
        self.rank, self.world_size = init_process_group()
        cfg = dataclasses.replace(cfg, run_dir=shared_run_dir(cfg))
        super().__init__(cfg, show_progress=show_progress and self.rank == 0,
                         trackers=trackers if self.rank == 0 else (), show_samples=show_samples)
        if cfg.train.prompts_per_step < self.world_size:
            raise UserError(f"train.prompts_per_step: {cfg.train.prompts_per_step} prompts leave some of the "
                            f"{self.world_size} ranks without a group to learn from")
        if cfg.train.skip_flat_groups:  # a rank left with no group would never join the all-reduce
            raise UserError(f"train.skip_flat_groups: not with {self.world_size} torchrun learners; "
                            "run it with one learner")
        self.ddp = DistributedDataParallel(LogprobsModule(self.policy))

    def writes_files(self) -> bool:
        return self.rank == 0

    def learner_slices(self, batch: Batch) -> list[Batch]:
        """This rank's rows of the batch, a slice scaled by R (DDP averages the ranks' gradients),
        in micro-batches with train.micro_batch_size."""
        prompt_rows = shard_prompt_rows(len(batch.rollouts.prompts), self.world_size, [self.rank])  # contiguous
        mine = slices(batch, [prompt_rows], mode=self.cfg.algo.aggregation, constant=self.aggregation_constant)[0]
        assert mine.share is not None
        mine = dataclasses.replace(mine, share=mine.share * self.world_size,
                                   token_share=mine.token_share * self.world_size)
        return micro_batches(mine, self.cfg.train.micro_batch_size, mode=self.cfg.algo.aggregation,
                             constant=self.aggregation_constant)

    def learner_loss(self, part: Batch, *, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
        return compute_loss(DDPPolicy(self.ddp), part, self.cfg.algo, temperature=self.cfg.train.temperature,
                            aggregation_constant=self.aggregation_constant, entropy_coef=entropy_coef)

    def gradient_sync(self, *, last: bool) -> AbstractContextManager[Any]:
        return nullcontext() if last else self.ddp.no_sync()

    def reduce_metrics(self, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.mean_over_ranks(metrics)

    def mean_over_ranks(self, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()])
        dist.all_reduce(values)
        return dict(zip(metrics, values / self.world_size, strict=True))


def train_ddp(cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
              show_samples: bool = False) -> dict[str, Any]:
    try:
        summary = DDPTrainer(cfg, show_progress=show_progress, trackers=trackers, show_samples=show_samples).run()
        dist.barrier()  # rank 0 still writes the run's files: no rank tears the group down before it is done
        return summary
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
