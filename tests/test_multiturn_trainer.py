"""Multi-turn runs end to end through ``rlvr train``: episodes sampled, scored by their envs, trained
on, evaluated, written turn by turn; a faulty env ends only its own episode (counted); a killed run
resumes to the uninterrupted run's result; a user's env via ``--env module:make_env``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import custom_envs
from rlvr.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ECHO = ["--task.name", "custom_envs:echo_task", "--policy.kind", "transformer", "--policy.hidden_size", "32",
        "--policy.intermediate_size", "64", "--policy.num_layers", "2", "--policy.num_heads", "2",
        "--policy.prompt_template", "{prompt}:", "--env.max_turns", "3", "--train.prompts_per_step", "2",
        "--train.group_size", "4", "--sft.steps", "40", "--sft.batch_size", "16", "--sft.lr", "0.003",
        "--sft.eval_every", "40", "--task.num_eval_prompts", "8", "--eval.pass_samples", "2", "--eval.pass_k", "2", "--eval.every", "2",
        "--train.outer_steps", "4", "--optim.lr", "0.001", "--seed", "3", "--quiet"]


def rows(run: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def test_a_multiturn_run_trains_and_writes_episodes(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *ECHO, "--run-dir", str(run)]) == 0
    metrics = rows(run)
    trained = [r for r in metrics if r["step"] >= 1]
    assert len(trained) == 4
    for row in trained:
        assert 1.0 <= row["env/turns_mean"] <= 3.0
        assert 0.0 <= row["env/tries"] <= row["env/turns_mean"]  # a turn cut without <eos> never reaches the env
        assert row["fault/env_failures"] == 0.0
    assert "eval/turns_mean" in metrics[-1] and 0.0 <= metrics[-1]["eval/exact_match"] <= 1.0
    sample = rows(run, "samples.jsonl")[0]
    episode = sample["responses"][0]
    assert episode["turns"][0] == {"role": "env", "text": f"say {sample['prompt']}"}
    assert [t["role"] for t in episode["turns"][1:3]] == ["policy", "env"][:len(episode["turns"][1:3])]
    assert sample["rewards"][0] == pytest.approx(episode["return"])
    assert (run / "final").is_dir()
    # the report shows the episodes turn by turn, the policy's and the env's turns in their own styles
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    first = episode["turns"][1]
    assert f'<span class="turn {first["role"]}">{first["text"]}</span>' in html


def test_rlvr_eval_plays_the_saved_policys_episodes_as_the_run_did(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *ECHO, "--train.outer_steps", "1", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    shown = json.loads(capsys.readouterr().out)
    final = rows(run)[-1]
    assert {k: shown[k] for k in final if k.startswith("eval/")} == {k: v for k, v in final.items() if k.startswith("eval/")}


@pytest.mark.parametrize("kind", ["raising", "hanging", "nan", "garbage"])
def test_a_faulty_env_ends_only_its_episode_and_is_counted(tmp_path, kind):
    custom_envs.Faulty.made = 0
    run = tmp_path / "run"
    args = [*ECHO, "--train.outer_steps", "2", "--eval.every", "100", "--task.num_eval_prompts", "2",
            "--eval.pass_samples", "1", "--eval.pass_k", "1", "--env.factory", f"custom_envs:make_{kind}_env", "--env.timeout", "0.5",
            "--env.max_failure_rate", "0.9", "--run-dir", str(run)]
    assert main(["train", *args]) == 0
    trained = [r for r in rows(run) if r["step"] >= 1]
    # 8 episodes a step, every 8th env made faults in its first step: one a step (the warm-started policy ends
    # its first turn with <eos>, so every env is stepped; the evaluations before step 1 made 8 envs)
    assert [r["fault/env_failures"] for r in trained] == [1.0, 1.0]
    expected_kind = {"raising": "error", "hanging": "timeout", "nan": "nonfinite", "garbage": "type"}[kind]
    assert all(r[f"fault/env_failures_{expected_kind}"] == 1.0 for r in trained)
    assert trained[-1]["fault/env_failure_rate"] == pytest.approx(2 / 16)
    sample = rows(run, "samples.jsonl")[0]
    faulted = [e for group in [sample["responses"]] for e in group if e["fault"]]
    assert all(e["return"] == 0.0 for e in faulted)


def test_a_fault_in_an_envs_metrics_is_counted_and_keeps_the_episode_and_its_return(tmp_path):
    """The same run with a clean env and with one whose 8th, 16th, ... env raises in metrics(): the
    episodes, returns and training are the same; only the fault is counted and those metrics lost."""
    def run(factory: str, name: str) -> list[dict]:
        custom_envs.Faulty.made = 0
        args = [*ECHO, "--train.outer_steps", "2", "--eval.every", "100", "--task.num_eval_prompts", "2",
                "--eval.pass_samples", "1", "--eval.pass_k", "1", "--env.factory", factory,
                "--env.max_failure_rate", "0.9", "--run-dir", str(tmp_path / name)]
        assert main(["train", *args]) == 0
        return [r for r in rows(tmp_path / name) if r["step"] >= 1]
    clean, faulty = run("custom_envs:make_echo_env", "clean"), run("custom_envs:make_metrics_env", "faulty")
    assert [r["fault/env_failures"] for r in faulty] == [1.0, 1.0]
    assert all(r["fault/env_failures_error"] == 1.0 for r in faulty)
    assert faulty[-1]["fault/env_failure_rate"] == pytest.approx(2 / 16)
    for key in ("train/reward_mean", "loss/total", "env/turns_mean"):
        assert [r[key] for r in faulty] == [r[key] for r in clean], key
    assert all("fault/env_failures" not in r or r["fault/env_failures"] == 0.0 for r in clean)
    sample = rows(tmp_path / "faulty", "samples.jsonl")[0]["responses"]
    clean_sample = rows(tmp_path / "clean", "samples.jsonl")[0]["responses"]
    assert [e["return"] for e in sample] == [e["return"] for e in clean_sample]
    assert {e["fault"] for e in sample} <= {None, "error"}  # the recorded rows: a fault, if shown, is the metrics'


def test_too_many_faults_stop_the_run_with_a_checkpoint(tmp_path, capsys):
    custom_envs.Faulty.made = 0
    run = tmp_path / "run"
    code = main(["train", *ECHO, "--train.outer_steps", "3", "--eval.every", "100",
                 "--env.factory", "custom_envs:make_raising_env", "--env.max_failure_rate", "0.05",
                 "--run-dir", str(run)])
    assert code != 0
    err = capsys.readouterr().err
    assert "env.max_failure_rate" in err and len(err.strip().splitlines()) == 1
    assert any((run / "checkpoints").iterdir())


def rlvr(*args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("RLVR_TEST_CRASH", None)
    if crash:
        env["RLVR_TEST_CRASH"] = crash
    return subprocess.run([sys.executable, "-m", "rlvr", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)


def outcome(run: Path) -> dict:
    return {"final": json.loads((run / "summary.json").read_text())["final"],
            "metrics": [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows(run)],
            "samples": (run / "samples.jsonl").read_text()}


def test_a_killed_multiturn_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = [*ECHO, "--checkpoint.every", "1", "--train.threads", "1"]
    whole = tmp_path / "whole"
    assert rlvr("train", *args, "--run-dir", str(whole)).returncode == 0
    run = tmp_path / "run"
    first = rlvr("train", *args, "--run-dir", str(run), crash="tensors@2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    again = rlvr("train", "--resume", str(run))
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert outcome(run) == outcome(whole)


def test_envs_in_worker_processes_train_exactly_like_envs_in_process(tmp_path):
    """env.workers 2: each episode's env lives in a worker process; the run is the in-process run."""
    for workers in (0, 2):
        assert main(["train", *ECHO, "--train.outer_steps", "2", "--env.workers", str(workers),
                     "--run-dir", str(tmp_path / f"w{workers}")]) == 0
    assert outcome(tmp_path / "w0") == outcome(tmp_path / "w2")
