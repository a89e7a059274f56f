"""Checkpoints: everything a run needs to continue exactly, written so that no crash corrupts one.

    RUN/checkpoints/step-000040/
        tensors.safetensors   every tensor of the state: policy, reference, optimizer, torch RNG states
        state.json            everything else: counters, numpy/python RNG states, the metrics history
        manifest.json         written last: step, held-out metrics, sha256 and size of the two files
A checkpoint is built in a hidden temporary directory (every file fsynced), renamed into place in one
step and the parent directory fsynced, so a reader sees either the whole checkpoint or none of it. A
directory whose files do not match its manifest is corrupt: loading warns and takes the previous one.

Loading reads safetensors and JSON only -- formats that carry data, never code -- and opens only the
three file names above, whatever else a checkpoint directory holds.

Kept on disk: the last ``keep`` checkpoints, plus the one with the best value of a held-out metric.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from rlvr.runs.atomic import fsync_dir, naming

TENSORS, STATE, MANIFEST = "tensors.safetensors", "state.json", "manifest.json"
FORMAT = 1
NAME = re.compile(r"^step-(\d{6,})$")
TENSOR_REF, INT_KEYS, TUPLE = "__tensor__", "__int_keys__", "__tuple__"


class CorruptCheckpoint(Exception):
    """A checkpoint directory that is incomplete or does not match its manifest."""


# ----------------------------------------------------------------------------- state <-> files


def split_tensors(obj: Any, path: str = "") -> tuple[Any, dict[str, Tensor]]:
    """A nested state (dicts, lists, tuples, tensors, JSON scalars) -> (a JSON-able structure in which
    every tensor is replaced by {"__tensor__": key}, {key: tensor}). Dicts with integer keys (an
    optimizer's per-parameter state) and tuples are tagged so ``join_tensors`` restores them exactly."""
    tensors: dict[str, Tensor] = {}

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, Tensor):
            tensors[where] = node.detach().cpu().clone().contiguous()  # no shared storage in safetensors
            return {TENSOR_REF: where}
        if isinstance(node, dict):
            if node and all(isinstance(k, int) for k in node):
                return {INT_KEYS: [[k, walk(v, f"{where}/{k}")] for k, v in node.items()]}
            return {str(k): walk(v, f"{where}/{k}") for k, v in node.items()}
        if isinstance(node, tuple):
            return {TUPLE: [walk(v, f"{where}/{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{where}/{i}") for i, v in enumerate(node)]
        return node

    return walk(obj, path), tensors


def join_tensors(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """The inverse of ``split_tensors``."""
    if isinstance(obj, dict):
        if set(obj) == {TENSOR_REF}:
            return tensors[obj[TENSOR_REF]]
        if set(obj) == {INT_KEYS}:
            return {int(k): join_tensors(v, tensors) for k, v in obj[INT_KEYS]}
        if set(obj) == {TUPLE}:
            return tuple(join_tensors(v, tensors) for v in obj[TUPLE])
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    """The global random streams: torch's, numpy's and python's (a task or reward may use them).
    The sampling streams belong to the rollout backend, which saves its own state."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


# ----------------------------------------------------------------------------- durable writes


def write_durable(path: Path, data: bytes) -> None:
    with naming(path), open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    """safetensors.save_file, fsynced; its I/O errors (a full disk) become OSErrors naming ``path``."""
    try:
        safetensors.torch.save_file(tensors, str(path))
    except safetensors.SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def file_digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def crash_point(phase: str, step: int) -> None:
    """Test hook: ``RLVR_TEST_CRASH=phase@step`` SIGKILLs this process at that point of a write, so
    tests can kill a run mid-checkpoint deterministically. Unset in normal use."""
    if os.environ.get("RLVR_TEST_CRASH") == f"{phase}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- the store


@dataclass
class Found:
    step: int
    path: Path
    state: dict[str, Any]


def warn(message: str) -> None:
    print(f"rlvr: warning: {message}", file=sys.stderr, flush=True)


class Checkpoints:
    """The checkpoints of one run directory."""

    def __init__(self, run_path: Path, *, keep: int, best_metric: str | None = None,
                 best_mode: str = "max", on_warning: Callable[[str], None] = warn) -> None:
        self.root = Path(run_path) / "checkpoints"
        self.keep = keep
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.on_warning = on_warning

    def steps(self) -> list[tuple[int, Path]]:
        """(step, directory) of every checkpoint directory, newest first (not yet verified)."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := NAME.match(p.name)) and p.is_dir()]
        return sorted(found, reverse=True)

    # -- writing ---------------------------------------------------------------------------------
    def save(self, step: int, state: dict[str, Any], *, metrics: dict[str, float] | None = None) -> Path:
        """Write ``state`` as the checkpoint of ``step`` (atomically), then prune old checkpoints."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:06d}"
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            self._write(tmp, step, state, metrics or {})
            if final.exists():  # left by an earlier attempt at this step (a resume from before it)
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        crash_point("rename", step)
        fsync_dir(self.root)
        self.prune()
        return final

    def _write(self, directory: Path, step: int, state: dict[str, Any], metrics: dict[str, float]) -> None:
        skeleton, tensors = split_tensors(state)
        save_tensors(tensors, directory / TENSORS)
        crash_point("tensors", step)
        write_durable(directory / STATE, json.dumps(skeleton).encode())
        crash_point("state", step)
        manifest = {"format": FORMAT, "step": step, "metrics": metrics,
                    "files": {name: file_digest(directory / name) for name in (TENSORS, STATE)}}
        write_durable(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
        fsync_dir(directory)
        crash_point("manifest", step)

    def prune(self) -> None:
        """Keep the newest ``keep`` checkpoints and the best by ``best_metric``; drop temp leftovers."""
        for leftover in self.root.glob(".step-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        all_steps = self.steps()
        keep = {path for _, path in all_steps[: self.keep]}
        best = self.best()
        if best is not None:
            keep.add(best)
        for _, path in all_steps:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def best(self) -> Path | None:
        """The checkpoint whose manifest has the best ``best_metric`` (earliest on ties)."""
        if self.best_metric is None:
            return None
        scored = []
        for step, path in self.steps():
            try:
                value = read_json(path / MANIFEST)["metrics"].get(self.best_metric)
            except (CorruptCheckpoint, KeyError, AttributeError):
                continue
            if isinstance(value, (int, float)) and np.isfinite(value):
                scored.append((value if self.best_mode == "max" else -value, -step, path))
        return max(scored)[2] if scored else None

    def drop_after(self, step: int) -> None:
        """Remove checkpoints newer than ``step`` (a resume from ``step`` will write them again)."""
        for later, path in self.steps():
            if later > step:
                shutil.rmtree(path, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------------
    def latest(self) -> Found | None:
        """The newest checkpoint that passes its checksums; corrupt ones are skipped with a warning."""
        for step, path in self.steps():
            try:
                return Found(step=step, path=path, state=load(path))
            except CorruptCheckpoint as exc:
                self.on_warning(f"checkpoint {path} is unusable ({exc}); trying the previous one")
        return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"{path.name}: {exc}") from None


def verify(directory: Path) -> dict[str, Any]:
    """The manifest of ``directory`` after checking every file against it."""
    manifest = read_json(directory / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{MANIFEST}: not a format-{FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {TENSORS, STATE}:
        raise CorruptCheckpoint(f"{MANIFEST}: must list exactly {TENSORS} and {STATE}")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file() or path.is_symlink():
            raise CorruptCheckpoint(f"{name}: missing")
        if file_digest(path) != expected:
            raise CorruptCheckpoint(f"{name}: checksum mismatch")
    return manifest


def load(directory: Path) -> dict[str, Any]:
    """The state saved in ``directory`` (verified first). Reads safetensors and JSON only."""
    verify(directory)
    try:
        tensors = safetensors.torch.load_file(str(directory / TENSORS))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise CorruptCheckpoint(f"{TENSORS}: {exc}") from None
    skeleton = read_json(directory / STATE)
    try:
        return join_tensors(skeleton, tensors)
    except KeyError as exc:
        raise CorruptCheckpoint(f"{STATE}: names a tensor {exc} that {TENSORS} lacks") from None
