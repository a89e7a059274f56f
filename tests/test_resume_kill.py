"""SIGKILL a training run anywhere -- mid-step, mid-checkpoint-write -- and resume it: the resumed run
ends bit for bit where an uninterrupted run with the same seed ends (summary "final", every metric
row but timings, every sample)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--config", "lecture-sort-clipped", "--seed", "5", "--train.outer_steps", "12", "--eval.every", "3",
        "--checkpoint.every", "2", "--algo.kl_coef", "0.1", "--algo.ref_refresh_every", "4",
        "--algo.deltas", "normalized", "--quiet"]


def rlvr(*args, crash=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RLVR_TEST_CRASH", None)
    if crash:
        env["RLVR_TEST_CRASH"] = crash
    return subprocess.run([sys.executable, "-m", "rlvr", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def outcome(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"final": json.loads((run / "summary.json").read_text())["final"],
            "metrics": [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows],
            "samples": (run / "samples.jsonl").read_text()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same run without interruption, in this process (the CLI's code path, in-process)."""
    from rlvr.cli import main

    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", *ARGS, "--run-dir", str(run)]) == 0
    return outcome(run)


def test_killed_at_each_phase_of_checkpoint_writes_resumes_to_the_same_result(uninterrupted, tmp_path):
    run = tmp_path / "run"
    # each process is SIGKILLed at one point of a checkpoint write; the next resumes the run
    first = rlvr("train", *ARGS, "--run-dir", str(run), crash="tensors@4")  # tensors written, no manifest
    assert first.returncode == -signal.SIGKILL
    # manifest: a complete checkpoint in its temp dir, not renamed; rename: renamed, not yet pruned
    for crash, expected_resume in [("manifest@6", 2), ("rename@8", 4), (None, 8)]:
        out = rlvr("train", "--resume", str(run), crash=crash)
        assert f"resuming {run} from step {expected_resume}" in out.stdout
        assert out.returncode == (0 if crash is None else -signal.SIGKILL), out.stderr
    assert outcome(run) == uninterrupted
    again = rlvr("train", "--resume", str(run))  # a finished run: nothing to do
    assert again.returncode == 0 and "already finished" in again.stdout


def kill_at_random_times(run, seed, uninterrupted, *, max_kills):
    """Start (or resume) the run, SIGKILL it a random time after it starts training, repeat."""
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RLVR_TEST_CRASH", None)
    kills = 0
    for attempt in range(max_kills + 1):
        # a checkpoint every step (the saved config keeps it), so kills often land inside a write
        args = (["train", *ARGS, "--run-dir", str(run), "--checkpoint.every", "1"] if attempt == 0
                else ["train", "--resume", str(run)])
        proc = subprocess.Popen([sys.executable, "-m", "rlvr", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt < max_kills:
            started = run / "metrics.jsonl"
            mtime = started.stat().st_mtime if started.exists() else 0
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:  # wait until it trains
                if started.exists() and started.stat().st_mtime != mtime:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0 and (run / "summary.json").exists():
            break
        assert proc.returncode == -signal.SIGKILL, err
    assert outcome(run) == uninterrupted
    return kills


def test_killed_at_a_random_time_resumes_to_the_same_result(uninterrupted, tmp_path):
    assert kill_at_random_times(tmp_path / "run", 0, uninterrupted, max_kills=1) == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_killed_at_random_times_many_seeds(uninterrupted, tmp_path, seed):
    kill_at_random_times(tmp_path / "run", seed, uninterrupted, max_kills=4)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["tensors", "state", "manifest", "rename"])
@pytest.mark.parametrize("step", [2, 6, 12])
def test_killed_in_every_phase_of_every_kind_of_checkpoint(uninterrupted, tmp_path, phase, step):
    """First, middle and final checkpoint (step 12 is also the run's end)."""
    run = tmp_path / "run"
    assert rlvr("train", *ARGS, "--run-dir", str(run), crash=f"{phase}@{step}").returncode == -signal.SIGKILL
    out = rlvr("train", "--resume", str(run))
    assert out.returncode == 0, out.stderr
    assert outcome(run) == uninterrupted
