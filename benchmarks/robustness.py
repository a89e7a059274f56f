"""What surviving crashes costs: checkpoint write/verify time and size, and reward worker pools.

    python benchmarks/robustness.py

1. Checkpoints: ``Checkpoints.save`` (safetensors + JSON, fsynced, checksummed) and ``latest()``
   (checksum verification + load) of a policy + reference + Adam state, for the toy policy and for
   a 10M-parameter state (a small transformer's worth).
2. Rewards: one outer step's 30 reward calls with a reward that takes 20 ms (a slow verifier),
   in process and in 2 / 4 worker processes.
Writes benchmarks/results/robustness-<date>.json: medians (as before) and the median and full range of
every repeated timing, and a "provenance" block (benchmarks/provenance.py).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from provenance import LoadWatch, provenance, rss_now_mb, summary
from rlvr.config import load_config
from rlvr.rewards import RewardRunner
from rlvr.runs.checkpoint import Checkpoints
from rlvr.trainer import Trainer

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]


def slow_reward(prompt, response):
    time.sleep(0.02)
    return float(sum(response))


def adam_state(params: int) -> dict:
    """policy + reference + Adam moments of a model with ``params`` parameters (4 x params floats)."""
    model = torch.nn.Linear(params // 1000, 1000, bias=False)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, params // 1000)).sum().backward()
    optimizer.step()
    return {"policy": model.state_dict(), "reference": model.state_dict(), "optimizer": optimizer.state_dict()}


def time_checkpoints(name: str, state: dict, repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Checkpoints(Path(tmp), keep=2)
        saves, loads = [], []
        for step in range(1, repeats + 1):
            t0 = time.perf_counter()
            path = store.save(step, state)
            t1 = time.perf_counter()
            store.latest()
            loads.append(time.perf_counter() - t1)
            saves.append(t1 - t0)
        size = sum(f.stat().st_size for f in path.iterdir())
    return {"state": name, "bytes": size, "save_seconds": statistics.median(saves),
            "verify_and_load_seconds": statistics.median(loads), "save": summary(saves),
            "verify_and_load": summary(loads)}


def time_rewards(workers: int, calls: int = 30, repeats: int = 3) -> dict:
    runner = RewardRunner(slow_reward, workers=workers, timeout=5.0)
    try:
        runner([()] * 4, [[1]] * 4)  # warm up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            runner([()] * calls, [[i] for i in range(calls)])
            times.append(time.perf_counter() - t0)
    finally:
        runner.close()
    return {"workers": workers, "calls": calls, "seconds_per_step": statistics.median(times),
            "step": summary(times)}


def main() -> None:
    watch = LoadWatch()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        toy = Trainer(load_config("configs/sort-toy.yaml", {"run_dir": tmp}), show_progress=False)
        toy.started_at = time.perf_counter()
        toy_state = toy.state_dict()
    results = {
        "checkpoints": [time_checkpoints("toy policy (sort-toy)", toy_state),
                        time_checkpoints("10M parameters + reference + Adam", adam_state(10_000_000))],
        "rewards_20ms": [time_rewards(w) for w in (0, 2, 4)],
    }
    results["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)
    out = ROOT / "benchmarks" / "results" / f"robustness-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
