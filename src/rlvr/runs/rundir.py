"""One directory per run.

    config.yaml     the resolved config (every field, after defaults, YAML and flags)
    metrics.jsonl   one JSON line per outer step
    samples.jsonl   prompts with their group's responses, rewards and deltas, every S steps
    curves.png      learning curves
    summary.json    written last: {"steps", "wall_seconds", "final": {...}}
Whole files are replaced atomically (temp file, fsync, rename); JSONL files are appended a line at
a time and flushed, so a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class RunDir:
    """``writer=False`` (torchrun ranks > 0): the same directory, every write skipped, so each file
    is written once by rank 0. Every write goes through a method here."""

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        if not writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"--run-dir: cannot write to {str(self.path)!r} ({exc.strerror})") from None

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: dict[str, Any]) -> None:
        if not self.writer:
            return
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        with open(self.path / name, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def write_json(self, name: str, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        atomic_write_text(self.path / name, json.dumps(record, indent=2) + "\n")

    def write_plot(self, rows: list[dict[str, Any]], *, title: str) -> None:
        if not self.writer:
            return
        from rlvr.runs.plots import plot_curves  # matplotlib: imported on first use
        plot_curves(rows, self.path / "curves.png", title=title)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line after a crash
                break
        return rows
