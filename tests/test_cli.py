"""The command line end to end, in subprocesses, as users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def rlvr(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "rlvr", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def test_a_short_run_writes_a_complete_run_directory(tmp_path):
    run = tmp_path / "run"
    out = rlvr("train", "--config", "lecture-sort-centered", "--run-dir", str(run), "--seed", "3",
               "--train.outer_steps", "12", "--eval.every", "5", "--eval.samples_every=4")
    assert out.returncode == 0, out.stderr
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "curves.png", "summary.json"):
        assert (run / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(0, 13))  # step 0: evaluation before training
    for key in ("train/reward_mean", "train/reward_std", "loss/policy", "policy/entropy",
                "train/zero_std_frac", "policy/grad_norm", "time/step"):
        assert all(key in r for r in rows[1:]), key
    assert [r["step"] for r in rows if "eval/exact_match" in r] == [0, 5, 10, 12]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 12 and isinstance(summary["wall_seconds"], float)
    assert set(summary["final"]) >= {"eval/reward_mean", "eval/exact_match", "train/reward_mean"}
    assert summary["final"]["train/reward_mean"] == pytest.approx(rows[-1]["train/reward_mean"])
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 4, 8, 12} or {s["step"] for s in samples} == {1, 4, 8}
    assert len(samples[0]["responses"]) == 10 == len(samples[0]["rewards"])


def test_same_seed_same_metrics(tmp_path):
    def run(name):
        out = rlvr("train", "--config", "lecture-sort-clipped", "--run-dir", str(tmp_path / name),
                   "--train.outer_steps", "6", "--algo.kl_coef", "0.1", "--algo.ref_refresh_every", "2", "--quiet")
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]  # no clocks
    first, second = run("a"), run("b")
    assert first == second
    assert first[-1]["policy/kl"] > 0


@pytest.mark.parametrize("args,named", [
    (["--algo.deltas", "centred"], "algo.deltas"),
    (["--algo.detlas", "rloo"], "algo.deltas"),         # unknown key, with a did-you-mean
    (["--train.group_size", "0"], "train.group_size"),
    (["--train.group_size", "1"], "train.group_size"),  # nothing to center against
    (["--optim.lr", "-1"], "optim.lr"),
    (["--optim.lr", "fast"], "optim.lr"),
    (["--task.prompts", "[[1,9,2]]"], "task.prompts"),
    (["--algo.loss", "ppo"], "algo.loss"),
    (["--config", "no-such-preset"], "no-such-preset"),
    (["--train.outer_steps"], "--train.outer_steps"),
    (["positional"], "positional"),
])
def test_bad_input_is_one_line_naming_the_value_and_exit_2(tmp_path, args, named):
    base = [] if "--config" in args else ["--config", "lecture-sort-centered"]
    out = rlvr("train", *base, "--run-dir", str(tmp_path / "r"), *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlvr: error:") and named in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_help_explains_every_option():
    out = rlvr("train", "--help")
    assert out.returncode == 0
    from rlvr.config import field_help
    for flag, _ in field_help():
        assert flag in out.stdout


def test_sort_toy_raises_evaluation_reward(tmp_path):
    out = rlvr("train", "--config", "sort-toy", "--run-dir", str(tmp_path / "r"), "--seed", "0", "--quiet",
               "--train.outer_steps", "60")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    assert first["step"] == 0 and last["step"] == 60
    assert last["eval/reward_mean"] >= first["eval/reward_mean"] + 1.0
    assert last["eval/exact_match"] == 1.0 > first["eval/exact_match"]
