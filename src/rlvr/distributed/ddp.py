"""The data-parallel learner under torchrun: DistributedDataParallel around the policy's log-probs.

    torchrun --standalone --nproc_per_node=2 -m rlvr train --config sort-toy

Every rank builds the same policy (same seed; DDP also broadcasts rank 0's weights at the start),
samples its own rollout shards and receives the others' (``local.py``), so rewards, deltas,
metrics and samples are the whole batch's on every rank. Each rank differentiates only its rows
(the batch's prompts cut into R contiguous pieces whose sizes differ by at most one):

    loss_r = R * sum_{(i,t) in rank r} w_it l_it,     w = d aggregate(l) / d l  over the WHOLE batch

Every aggregation is linear in the per-token loss l, so (1/R) sum_r loss_r is the whole batch's
loss and DDP's averaged gradient (1/R) sum_r grad loss_r is exactly one process's gradient on the
whole batch -- also when ranks hold different numbers of prompts or tokens (3 prompts on 2 ranks).
Inner-loop metrics are averaged over ranks: exact for the aggregated losses, KL and entropy; a
rank-average for the ratio metrics (exact when ranks hold equal token counts).

Files are written once, by rank 0 (``RunDir(writer=...)``). Ranks evaluate redundantly (same
weights, same seeds, same numbers) rather than broadcast. Models that do not fit one device need
FSDP instead of DDP (docs/scaling.md); not implemented here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from rlvr.algorithms import aggregate
from rlvr.config import Config
from rlvr.errors import UserError
from rlvr.rollout import select_prompts
from rlvr.runs.recorder import default_run_dir
from rlvr.trainer import Batch, Trainer, compute_loss

from .shards import response_rows, shard_prompt_rows


def aggregation_weights(mask: Tensor, mode: str, *, constant: float) -> Tensor:
    """mask (N, T) -> w (N, T) with aggregate(l, mask) = sum_it w_it l_it for every l (w = its gradient)."""
    values = torch.zeros_like(mask, dtype=torch.float, requires_grad=True)
    with torch.enable_grad():
        aggregate(values, mask, mode, constant=constant).backward()
    assert values.grad is not None
    return values.grad


def aggregated_mask(batch: Batch) -> Tensor:
    """The (N, T) mask ``compute_loss`` aggregates with (filtered responses left out)."""
    return batch.loss_mask


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
        self.ddp = DistributedDataParallel(LogprobsModule(self.policy))
        self.local: tuple[Batch, Batch] | None = None  # (whole batch, this rank's rows), per outer step

    def writes_files(self) -> bool:
        return self.rank == 0

    def learner_loss(self, batch: Batch, *, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = compute_loss(DDPPolicy(self.ddp), self.rank_batch(batch), self.cfg.algo,
                                     temperature=self.cfg.train.temperature,
                                     aggregation_constant=self.aggregation_constant, entropy_coef=entropy_coef)
        return loss, self.mean_over_ranks(metrics)

    def rank_batch(self, batch: Batch) -> Batch:
        """This rank's rows of the batch, weighted by their share of the whole batch's aggregate.
        Every tensor field is cut by its rows: (B, ...) by prompt, (N, ...) by response."""
        if self.local is None or self.local[0] is not batch:
            r = batch.rollouts
            prompt_rows = shard_prompt_rows(len(r.prompts), self.world_size, [self.rank])  # contiguous
            rows = response_rows(prompt_rows, r.group_size)
            weights = aggregation_weights(aggregated_mask(batch), self.cfg.algo.aggregation,
                                          constant=self.aggregation_constant)
            cut = {f.name: value[prompt_rows] if value.shape[0] == len(r.prompts) else value[rows]
                   for f in dataclasses.fields(batch)
                   if isinstance(value := getattr(batch, f.name), Tensor)}
            self.local = (batch, dataclasses.replace(batch, **cut, rollouts=select_prompts(r, prompt_rows),
                                                     loss_weights=weights[rows] * self.world_size))
        return self.local[1]

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
