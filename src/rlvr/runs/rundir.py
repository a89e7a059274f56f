"""One directory per run.

    config.yaml     the resolved config (every field, after defaults, YAML and flags)
    metrics.jsonl   one JSON line per outer step
    samples.jsonl   prompts with their group's responses, rewards and deltas, every S steps
    curves.png      learning curves
    summary.json    written last: {"steps", "wall_seconds", "final": {...}}
    checkpoints/    step-NNNNNN/ directories (rlvr.runs.checkpoint)
Whole files are replaced atomically (temp file, fsync, rename, directory fsync); JSONL files are
appended a line at a time and flushed, so a crash loses at most the line being written (a resume
rewrites them from the checkpoint).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import UserError
from rlvr.runs.atomic import atomic_write_bytes, atomic_write_text, naming

PROBE_BYTES = 64 * 1024


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
            atomic_write_bytes(probe, bytes(PROBE_BYTES))  # a few KiB: fails on a full disk too
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
        with naming(self.path / name), open(self.path / name, "a") as handle:
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

    def rewrite_jsonl(self, name: str, records: list[dict[str, Any]]) -> None:
        """Replace ``name`` by exactly ``records`` (resume: the rows of the checkpoint's history)."""
        if not self.writer:
            return
        atomic_write_text(self.path / name, "".join(json.dumps(r) + "\n" for r in records))

    def truncate_jsonl(self, name: str, *, last_step: int) -> None:
        """Drop the records of steps after ``last_step`` (and a torn last line) from ``name``."""
        if not self.writer:
            return
        path = self.path / name
        if path.exists():
            rows = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
            self.rewrite_jsonl(name, rows)

    def reset(self, *, keep_earlier: bool) -> None:
        """Before a new attempt: no summary.json (it is not finished), and in the JSONL files either
        the earlier attempts' records kept, minus a line torn by a crash (a new run in a reused
        directory), or nothing (a resume that starts over)."""
        if not self.writer:
            return
        (self.path / "summary.json").unlink(missing_ok=True)
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = self.path / name
            if path.is_file():  # a regular file (not a device or a pipe someone linked there)
                with naming(path), open(path, "r+b") as handle:
                    handle.truncate(complete_length(handle) if keep_earlier else 0)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return read_jsonl(self.metrics_path)


def complete_length(handle: Any, window: int = 1 << 16) -> int:
    """The length of a file without its torn last line (if its end lies within ``window`` bytes)."""
    size = handle.seek(0, os.SEEK_END)
    start = max(0, size - window)
    handle.seek(start)
    tail = handle.read()
    if not tail or tail.endswith(b"\n") or (b"\n" not in tail and start > 0):
        return size
    return start + tail.rfind(b"\n") + 1


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line after a crash
            break
    return rows
