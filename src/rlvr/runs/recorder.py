"""What a run leaves behind and shows, behind one object: the run directory (config, metrics,
samples, plots, summary, final policy), its checkpoints, the trackers and the progress display.
The trainer hands it rows and states; only a writer (rank 0 under torchrun) touches files."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr.config import Config, to_dict
from rlvr.errors import UserError
from rlvr.policies import Policy
from rlvr.policies.export import save_final
from rlvr.runs.checkpoint import Checkpoints, Found
from rlvr.runs.progress import Progress
from rlvr.runs.rundir import RunDir
from rlvr.runs.trackers import build_trackers


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunRecorder:
    def __init__(self, cfg: Config, *, writer: bool, show_progress: bool, trackers: Sequence[str],
                 show_samples: bool) -> None:
        self.cfg = cfg
        self.run_dir = RunDir(cfg.run_dir or default_run_dir(cfg.name), writer=writer)
        self.progress = Progress(total=cfg.train.outer_steps, enabled=show_progress, show_samples=show_samples)
        self.trackers = build_trackers(self.run_dir, extra=trackers, name=cfg.name, config=to_dict(cfg))
        ck = cfg.checkpoint
        self.checkpoints = Checkpoints(self.run_dir.path, keep=ck.keep, best_metric=ck.best_metric,
                                       best_mode=ck.best_mode)

    @property
    def path(self) -> Path:
        return self.run_dir.path

    # ---------------------------------------------------------------- starting and resuming
    def start(self, *, overwrite: bool) -> None:
        """A fresh run's directory and config. Never silently overwrites the checkpoints of an
        unfinished run (unless resuming it failed: ``overwrite``)."""
        if not overwrite and self.checkpoints.steps() and not (self.path / "summary.json").exists():
            raise UserError(f"run_dir: {str(self.path)!r} holds an unfinished run; continue it with "
                            f"--resume {self.path}, or delete it")
        self.checkpoints.drop_after(0)  # every checkpoint of the finished run this one replaces
        self.run_dir.reset(keep_earlier=not overwrite)
        self.run_dir.write_config(to_dict(self.cfg))

    def latest(self) -> Found | None:
        """The newest good checkpoint, or None (said on the console)."""
        found = self.checkpoints.latest()
        if found is None:
            print(f"rlvr: no usable checkpoint in {self.path}; starting over from its config", flush=True)
        return found

    def rewind(self, step: int, history: list[dict[str, Any]]) -> None:
        """Resuming from ``step``: later checkpoints dropped, metrics.jsonl and samples.jsonl cut back."""
        self.checkpoints.drop_after(step)
        self.run_dir.rewrite_jsonl("metrics.jsonl", history)
        self.run_dir.truncate_jsonl("samples.jsonl", last_step=step)
        print(f"rlvr: resuming {self.path} from step {step}", flush=True)

    # ---------------------------------------------------------------- during the run
    def log(self, step: int, row: dict[str, Any], *, plot_with: list[dict[str, Any]] | None = None) -> None:
        """A step's row to the trackers (metrics.jsonl, TensorBoard, ...) and the progress display;
        ``plot_with``: the history to redraw curves.png with first (at evaluation steps)."""
        if plot_with is not None:
            self.run_dir.write_plot(plot_with + [row], title=self.cfg.name)
        self.trackers.log(step, row)
        if step:
            self.progress.update(step, row)

    def samples(self, step: int, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.run_dir.append_jsonl("samples.jsonl", record)
        self.progress.samples(step, records)

    def checkpoint(self, step: int, state: dict[str, Any], row: dict[str, Any]) -> Path | None:
        """Write a checkpoint (a writer only), ranked by the row's held-out metrics."""
        if not self.run_dir.writer:
            return None
        held_out = {k: v for k, v in row.items() if k.startswith("eval/")}
        return self.checkpoints.save(step, state, metrics=held_out)

    # ---------------------------------------------------------------- the end
    def finish(self, policy: Policy, summary: dict[str, Any]) -> None:
        """Trackers closed, the final policy in RUN_DIR/final/, summary.json written last."""
        self.trackers.close()
        if self.run_dir.writer:
            save_final(policy, self.path / "final")
        self.run_dir.write_json("summary.json", summary)
