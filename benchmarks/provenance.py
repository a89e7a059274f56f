"""Where a benchmark's figures come from: one block every results JSON carries (issue 20).

    from provenance import LoadWatch, provenance, rss_now_mb, summary
    RSS_AFTER_IMPORTS = rss_now_mb()              # right after the script's imports
    watch = LoadWatch()                           # 1-minute load now; warns when the machine is busy
    ...                                           # the measurement
    result["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)

``provenance()`` records the commit (and whether tracked files differ from it), the versions of
python, torch, transformers and trl (None when not installed), torch's thread count, the CPU model and
the core count; with a ``LoadWatch``, the 1-minute load average before and after and whether the run
started on a busy machine; with ``rss_after_imports_mb``, the resident memory right after the imports
(the libraries' footprint) next to the peak (``ru_maxrss``; of the largest finished child process too
with ``children=True``), so a memory figure separates what the libraries take from what training takes.
``summary(values)`` is how a repeated measurement is reported: median and full range, never the best.

Busy: the 1-minute load average counts runnable threads of every process, this one included. The
kernel updates it every 5 s as an exponential average with a 1-minute time constant, so a process that
kept ``n`` threads runnable for ``t`` seconds adds ``n (1 - exp(-t / 60))`` to it, and that share
decays as ``exp(-s / 60)`` ``s`` seconds after it stops (``lingering_load``). This process's own share
at the start is estimated with ``n`` = its CPU seconds / its age (the imports, a model build, ...);
a driver that ran earlier benchmarks in child processes (benchmarks/run_all.py) passes their
lingering share in the environment variable ``RLVR_BENCH_OWN_LOAD``. The rest is the other
processes' load; above 0.5 per core the run is flagged ``busy`` and a one-line warning is printed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn, TextIO

ROOT = Path(__file__).resolve().parents[1]
BUSY_PER_CORE = 0.5  # load per core from other processes above which a run is flagged busy
LOAD_TIME_CONSTANT_S = 60.0  # the 1-minute load average's
OWN_LOAD_ENV = "RLVR_BENCH_OWN_LOAD"
PACKAGES = ("torch", "transformers", "trl")


# ---------------------------------------------------------------- arguments
class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the bad value (``PROG: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


# ---------------------------------------------------------------- results files
def free_results_path(folder: Path, stem: str) -> Path:
    """``folder/stem.json``, or ``stem-2.json``, ``stem-3.json``, ... when taken: an earlier run of the
    same day (and tag) keeps its file."""
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


# ---------------------------------------------------------------- repeats
def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """Median and full range of repeated measurements: {"median", "min", "max", "n"} (None for none)."""
    data = [float(v) for v in values]
    if not data:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


# ---------------------------------------------------------------- machine load
def lingering_load(threads: float, seconds: float, since_s: float = 0.0) -> float:
    """What ``threads`` runnable threads kept up for ``seconds``, ended ``since_s`` ago, still add to
    the 1-minute load average: threads (1 - exp(-seconds / 60)) exp(-since_s / 60)."""
    tau = LOAD_TIME_CONSTANT_S
    return threads * (1.0 - math.exp(-max(seconds, 0.0) / tau)) * math.exp(-max(since_s, 0.0) / tau)


def others_per_core(load: float, own: float, cores: int) -> float:
    """The load average per core that other processes make: (load - own share) / cores, >= 0."""
    return max(load - own, 0.0) / max(cores, 1)


def process_age_s() -> float | None:
    """Seconds since this process started (from /proc; None elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


def own_load() -> float:
    """This process's estimated share of the 1-minute load average now, plus what a driver says its
    earlier children still add (``RLVR_BENCH_OWN_LOAD``)."""
    times = os.times()
    cpu = times.user + times.system + times.children_user + times.children_system
    age = process_age_s() or cpu
    mine = lingering_load(cpu / age, age) if age > 0 else 0.0
    try:
        inherited = float(os.environ.get(OWN_LOAD_ENV, "0") or 0)
    except ValueError:
        inherited = 0.0
    return mine + inherited


def is_busy(load: float, own: float, cores: int) -> bool:
    """Other processes load the machine by more than BUSY_PER_CORE (0.5) per core."""
    return others_per_core(load, own, cores) > BUSY_PER_CORE


def busy_warning(load: float, own: float, cores: int) -> str:
    return (f"warning: busy machine: 1-minute load {load:.2f} on {cores} cores, "
            f"{others_per_core(load, own, cores):.2f} per core from other processes (> {BUSY_PER_CORE}); "
            "timings from this run are not comparable")


class LoadWatch:
    """The 1-minute load average when built (the start of a measurement) and at ``stop()``; ``busy``
    when other processes loaded the machine by more than 0.5 per core at the start (one warning line
    on ``stream`` then)."""

    def __init__(self, *, stream: TextIO | None = sys.stderr) -> None:
        self.cores = os.cpu_count() or 1
        self.before = os.getloadavg()[0]
        self.own_before = own_load()
        self.after: float | None = None
        if self.busy and stream is not None:
            print(busy_warning(self.before, self.own_before, self.cores), file=stream, flush=True)

    @property
    def others_per_core(self) -> float:
        return others_per_core(self.before, self.own_before, self.cores)

    @property
    def busy(self) -> bool:
        return is_busy(self.before, self.own_before, self.cores)

    def stop(self) -> None:
        self.after = os.getloadavg()[0]

    def as_dict(self) -> dict[str, Any]:
        return {"load1_before": self.before, "load1_after": self.after, "cores": self.cores,
                "own_load_before": self.own_before, "others_per_core_before": self.others_per_core,
                "busy": self.busy, "busy_threshold_per_core": BUSY_PER_CORE}


# ---------------------------------------------------------------- memory
def proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM), MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_now_mb() -> float | None:
    """Resident memory of this process now (VmRSS), MB; None where /proc has none."""
    return proc_status_mb("VmRSS")


def peak_rss_mb(*, children: bool = False) -> float:
    """Peak resident memory, MB: of this process (ru_maxrss, or the kernel's newer high-water mark
    VmHWM when it is higher: ru_maxrss lags it), or with ``children`` of the largest finished
    (waited-for) child process (ru_maxrss of RUSAGE_CHILDREN)."""
    if children:
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, proc_status_mb("VmHWM") or 0.0)


def memory(rss_after_imports_mb: float | None, *, children: bool = False) -> dict[str, float | None]:
    out = {"rss_after_imports_mb": rss_after_imports_mb, "peak_rss_mb": peak_rss_mb()}
    if children:
        out["peak_rss_children_mb"] = peak_rss_mb(children=True)
    return out


# ---------------------------------------------------------------- code and machine
def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def torch_threads() -> int | None:
    """torch's intra-op thread count in this process (None when the script never imported torch)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def provenance(watch: LoadWatch | None = None, *, rss_after_imports_mb: float | None = None,
               children: bool = False) -> dict[str, Any]:
    """The block a results JSON carries as ``"provenance"`` (stops ``watch``: its load "after" is now)."""
    status = git("status", "--porcelain", "--untracked-files=no")
    out: dict[str, Any] = {
        "commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
        "recorded_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": versions(), "torch_threads": torch_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
    }
    if watch is not None:
        watch.stop()
        out["load"] = watch.as_dict()
    out["memory"] = memory(rss_after_imports_mb, children=children)
    return out
