"""Scale-out overheads on this machine: 1 vs 2 Ray rollout workers, 1 vs 2 DDP learner ranks.

    python benchmarks/scaling.py [--config sort-toy] [--steps 20] [--set train.group_size=64 ...]

Every setup is a real `rlvr train` subprocess (torchrun for the DDP ones) on the same config and
seed; the numbers come from its metrics.jsonl and summary.json:
- steps/s            outer steps per second of the training loop (1 / median step time; eval excluded)
- rollout tokens/s   sampled response tokens per second of the rollout phase (median over steps)
- startup s          process wall time minus the training loop (imports, Ray start and actors,
                     process group), i.e. the fixed cost of the setup
- weight sync ms     mean time of the learner's per-step ``ray.put`` of its weights
Writes benchmarks/results/scaling-<date>.json (per setup also the median and full range of the step,
rollout and train times; the weight sync's too; a "provenance" block, benchmarks/provenance.py). The
config is any preset or YAML (``--config``), so the same script measures a transformer policy when
one is configured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import LoadWatch, provenance, rss_now_mb
from provenance import summary as median_range

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SETUPS = {  # name: (launcher prefix, extra flags)
    "local, 1 process": ([], []),
    "ray, 1 rollout worker": ([], ["--backend", "ray", "--rollout-workers", "1"]),
    "ray, 2 rollout workers": ([], ["--backend", "ray", "--rollout-workers", "2"]),
    "ray, 2 workers, off-policy": ([], ["--backend", "ray", "--rollout-workers", "2",
                                        "--distributed.off_policy", "true"]),
    "ddp, 2 learner ranks (torchrun)": (TORCHRUN, []),
}


def run_setup(name: str, config: str, steps: int, overrides: list[str], workdir: Path) -> dict:
    launcher, flags = SETUPS[name]
    run_dir = workdir / str(len(list(workdir.iterdir())))
    set_flags = [part for item in overrides for part in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1])]
    command = [*(launcher or [sys.executable]), "-m", "rlvr", "train", "--config", config, "--quiet",
               "--train.outer_steps", str(steps), "--eval.every", str(steps), "--run-dir", str(run_dir),
               *set_flags, *flags]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    summary = json.loads((run_dir / "summary.json").read_text())
    sync = [r["time/weight_sync"] for r in rows if "time/weight_sync" in r]
    median = statistics.median  # per-step medians: the machine is shared, spikes are other jobs'
    return {
        "setup": name, "command": " ".join(["python", *command[1:]]),
        "steps": len(rows),
        "steps_per_s": 1 / median(r["time/step"] for r in rows),
        "rollout_tokens_per_s": median(r["rollout/tokens"] / r["time/rollout"] for r in rows),
        "rollout_s_per_step": median(r["time/rollout"] for r in rows),
        "train_s_per_step": median(r["time/train"] for r in rows),
        "startup_s": wall - summary["wall_seconds"],
        "weight_sync_ms": 1000 * median(sync) if sync else None,
        "process_wall_s": wall,
        "final_train_reward": rows[-1]["train/reward_mean"],
        "step_s": median_range(r["time/step"] for r in rows), "rollout_s": median_range(r["time/rollout"] for r in rows),
        "train_s": median_range(r["time/train"] for r in rows),
    }


def weight_sync_cost(sizes_mb: list[int], repeats: int = 3) -> list[dict]:
    """The per-step weight broadcast alone, for state dicts of the given sizes: one ray.put by the
    learner, then two actors each fetch the object (as RayRollouts does on a version change)."""
    import ray
    import torch

    @ray.remote(num_cpus=1)
    class Reader:
        def load(self, refs: list) -> int:
            return sum(t.numel() for t in ray.get(refs[0]).values())

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        readers = [Reader.remote() for _ in range(2)]
        ray.get([r.load.remote([ray.put({"w": torch.zeros(1)})]) for r in readers])  # actors up
        rows = []
        for size in sizes_mb:
            state = {f"layer{i}": torch.randn(size * 2**20 // 4 // 8) for i in range(8)}
            put, fetch = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                ref = ray.put(state)
                t1 = time.perf_counter()
                ray.get([r.load.remote([ref]) for r in readers])
                put.append(t1 - t0)
                fetch.append(time.perf_counter() - t1)
                del ref
            rows.append({"state_mb": size, "put_ms": 1000 * min(put), "two_actors_fetch_ms": 1000 * min(fetch),
                         "put_gb_per_s": size / 1024 / min(put),  # the fastest repeat, as before
                         "put_s": median_range(put), "two_actors_fetch_s": median_range(fetch)})
        return rows
    finally:
        ray.shutdown()


def table(results: list[dict]) -> str:
    lines = ["| setup | steps/s | rollout tokens/s | rollout ms/step | train ms/step | startup s | weight sync ms |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        sync = f"{r['weight_sync_ms']:.2f}" if r["weight_sync_ms"] is not None else "-"
        lines.append(f"| {r['setup']} | {r['steps_per_s']:.1f} | {r['rollout_tokens_per_s']:,.0f} | "
                     f"{1000 * r['rollout_s_per_step']:.1f} | {1000 * r['train_s_per_step']:.1f} | "
                     f"{r['startup_s']:.1f} | {sync} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="sort-toy", help="preset name or YAML path")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--label", default="", help="suffix of the output file name")
    parser.add_argument("--sync-sizes", nargs="*", type=int, default=[1, 16, 128], metavar="MB",
                        help="state-dict sizes for the weight-sync measurement (none: skip it)")
    args = parser.parse_args()
    watch = LoadWatch()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.setups:
            print(f"{name} ...", flush=True)
            results.append(run_setup(name, args.config, args.steps, args.set, Path(tmp)))
            print(f"  {results[-1]['steps_per_s']:.1f} steps/s, startup {results[-1]['startup_s']:.1f} s", flush=True)
    sync = weight_sync_cost(args.sync_sizes) if args.sync_sizes else []
    record = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "config": args.config, "overrides": args.set,
              "steps": args.steps, "cpu_count": os.cpu_count(), "results": results, "weight_sync": sync,
              "provenance": provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)}
    out = ROOT / "benchmarks" / "results" / f"scaling{'-' + args.label if args.label else ''}-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(results))
    for row in sync:
        print(f"weight sync {row['state_mb']} MB: put {row['put_ms']:.1f} ms ({row['put_gb_per_s']:.2f} GB/s), "
              f"two actors fetch {row['two_actors_fetch_ms']:.1f} ms")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
