"""Metric sinks: where each outer step's metrics row goes.

    trackers = build_trackers(run_dir, extra=["wandb"], config=to_dict(cfg), name=cfg.name)
    trackers.log(step, row)      # every sink, once per outer step
    trackers.close()

- ``metrics.jsonl``  always; keys exactly as the trainer names them (``train/reward_mean``, ...).
- TensorBoard        always, in RUN_DIR/tb; every numeric metric as a scalar, namespaced for
                     reading: reward/ (``train/*``), heldout/ (``eval/*``), loss/, policy/,
                     perf/ (``time/*`` and ``perf/*``), algo/.
- wandb, trackio     on request (``rlvr train --tracker wandb``); optional extras, imported only
                     then, so a missing one is a one-line error before any work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rlvr.errors import UserError
from rlvr.registry import Registry
from rlvr.runs.rundir import RunDir

NAMESPACES = {"train": "reward", "eval": "heldout", "time": "perf"}


def display_name(key: str) -> str:
    """metrics.jsonl key -> the namespaced name dashboards show (train/x -> reward/x, ...)."""
    head, sep, rest = key.partition("/")
    return f"{NAMESPACES.get(head, head)}{sep}{rest}" if sep else key


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numeric metrics of a row, under their display names (``step`` left out)."""
    return {display_name(k): float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Sink(Protocol):
    def log(self, step: int, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """metrics.jsonl, one line per row, keys unchanged."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def log(self, step: int, row: dict[str, Any]) -> None:
        self.run_dir.append_jsonl("metrics.jsonl", row)

    def close(self) -> None:
        pass


class TensorBoardSink:
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), flush_secs=10)

    def log(self, step: int, row: dict[str, Any]) -> None:
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class ModuleSink:
    """wandb or trackio: both expose ``init(project=, name=, config=)``, ``log(dict, step=)``, ``finish()``."""

    def __init__(self, module: Any, **init: Any) -> None:
        self.module = module
        self.run = module.init(project="rlvr", **init)

    def log(self, step: int, row: dict[str, Any]) -> None:
        self.module.log(scalars(row), step=step)

    def close(self) -> None:
        self.module.finish()


def import_extra(module: str) -> Any:
    """Import an optional tracker, or fail with one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"--tracker {module}: the {module!r} package is not installed; "
                        f"install it with: pip install -e '.[{module}]' (in the rlvr checkout)") from None


SinkFactory = Callable[[RunDir, str, dict[str, Any]], Sink]
TRACKERS: Registry[SinkFactory] = Registry("tracker")


@TRACKERS.register("wandb")
def _wandb(run_dir: RunDir, name: str, config: dict[str, Any]) -> Sink:
    return ModuleSink(import_extra("wandb"), name=name, config=config, dir=str(run_dir.path))


@TRACKERS.register("trackio")
def _trackio(run_dir: RunDir, name: str, config: dict[str, Any]) -> Sink:
    return ModuleSink(import_extra("trackio"), name=name, config=config)  # local: ~/.cache/huggingface/trackio


class Trackers:
    """A list of sinks, logged to in order and closed together."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def log(self, step: int, row: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(step, row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build_trackers(run_dir: RunDir, *, extra: Sequence[str] = (), name: str = "run",
                   config: dict[str, Any] | None = None) -> Trackers:
    """metrics.jsonl + TensorBoard in RUN_DIR/tb, plus each named extra tracker (built first, so
    an unknown or missing one fails before anything is written)."""
    if not run_dir.writer:  # a torchrun rank > 0: rank 0 logs for everyone
        return Trackers([])
    extras = [TRACKERS.get(tracker)(run_dir, name, config or {}) for tracker in extra]
    return Trackers([JsonlSink(run_dir), TensorBoardSink(run_dir.path / "tb"), *extras])
