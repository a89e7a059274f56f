"""Which trainer a command runs: the plain one, or the DDP learner when started by torchrun."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rlvr.config import Config
from rlvr.errors import UserError


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) sets WORLD_SIZE, RANK and MASTER_ADDR for every process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
          show_samples: bool = False) -> dict[str, Any]:
    if not launched_by_torchrun():
        from rlvr.trainer import train as train_local
        return train_local(cfg, show_progress=show_progress, trackers=trackers, show_samples=show_samples)
    if cfg.distributed.backend != "local":
        raise UserError(f"distributed.backend: {cfg.distributed.backend!r} cannot be combined with torchrun; "
                        "under torchrun every rank samples its own shards (use --backend local)")
    from rlvr.distributed.ddp import train_ddp
    return train_ddp(cfg, show_progress=show_progress, trackers=trackers, show_samples=show_samples)
