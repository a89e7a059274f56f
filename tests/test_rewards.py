"""Reward functions are user code: failures get the fallback, are counted, and stop a run past a rate."""

import json
import math

import pytest
import torch

import reward_faults as rf
from rlvr.config import load_config
from rlvr.errors import ConfigError, RunStopped
from rlvr.rewards import RewardRunner, check_value
from rlvr.rollout import score
from rlvr.runs.checkpoint import Checkpoints
from rlvr.tasks import build_task
from rlvr.trainer import train

RESPONSES = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0], [4, 0, 1]]  # first tokens 0..4


def test_each_kind_of_failure_gets_the_fallback_and_is_counted_by_kind():
    runner = RewardRunner(rf.mixed, fallback=-7.0, timeout=5.0)
    rewards = runner([(1, 2, 3)] * 5, RESPONSES)
    assert rewards == [-7.0, -7.0, -7.0, -7.0, 4.0]
    metrics = runner.pop_metrics()
    assert metrics["fault/reward_failures"] == 4
    assert (metrics["fault/reward_failures_error"], metrics["fault/reward_failures_nonfinite"], metrics["fault/reward_failures_type"]) == (1, 2, 1)
    assert metrics["fault/reward_failure_rate"] == pytest.approx(0.8)
    assert runner.pop_metrics()["fault/reward_failures"] == 0  # per step; the rate is over the whole run
    assert runner.failure_rate() == pytest.approx(0.8)


@pytest.mark.parametrize("value,ok", [(1, True), (2.5, True), (True, True), (float("nan"), False),
                                      (float("-inf"), False), (None, False), ("1.0", False), ([1.0], False),
                                      (torch.tensor(1.0), False)])
def test_only_finite_real_numbers_are_rewards(value, ok):
    kind, _ = check_value(value)
    assert (kind == "ok") == ok


def test_a_hang_in_process_is_interrupted_by_the_timeout():
    runner = RewardRunner(rf.hangs_on_zero, fallback=-1.0, timeout=0.2)
    assert runner([()] * 3, [[1], [0], [2]]) == [1.0, -1.0, 2.0]
    assert runner.pop_metrics()["fault/reward_failures_timeout"] == 1


def test_the_timeout_gets_through_a_reward_that_catches_every_exception():
    runner = RewardRunner(rf.catches_everything, fallback=-1.0, timeout=0.2)
    assert runner([()], [[0]]) == [-1.0]


def test_worker_pool_kills_hung_and_replaces_dead_workers():
    runner = RewardRunner(rf.sleeps_on_zero, fallback=-1.0, timeout=0.5, workers=2)
    try:
        first = runner.pool.workers[0].process.pid
        assert runner([()] * 5, [[0], [1], [2], [0], [3]]) == [-1.0, 1.0, 2.0, -1.0, 3.0]
        assert runner.pop_metrics()["fault/reward_failures_timeout"] == 2
        assert first not in [w.process.pid for w in runner.pool.workers]  # killed and replaced
        assert runner([()] * 2, [[4], [1]]) == [4.0, 1.0]                    # and the pool still works
    finally:
        runner.close()
    dying = RewardRunner(rf.dies_on_zero, fallback=-1.0, timeout=10.0, workers=1)
    try:
        assert dying([()] * 3, [[0], [2], [3]]) == [-1.0, 2.0, 3.0]
        assert dying.pop_metrics()["fault/reward_failures_crash"] == 1
    finally:
        dying.close()


def test_an_unpicklable_reward_with_workers_is_a_config_error():
    with pytest.raises(ConfigError, match="rewards.workers"):
        RewardRunner(lambda p, r: 1.0, workers=1)


def test_rollout_score_uses_the_runner():
    task = build_task(load_config(None, {"task.reward": "reward_faults:mixed", "task.vocab_size": 5}).task)
    runner = RewardRunner(task.reward, fallback=0.5)
    prompts = [(1, 2, 3)]
    rewards = score(task, prompts, RESPONSES, group_size=5, rewards=runner)
    assert rewards.shape == (1, 5) and rewards.tolist() == [[0.5, 0.5, 0.5, 0.5, 4.0]]


def config(tmp_path, **overrides):
    base = {"run_dir": str(tmp_path / "run"), "train.outer_steps": 6, "train.inner_steps": 2,
            "eval.every": 3, "checkpoint.every": 2}
    return load_config(None, {**base, **overrides})


def test_a_rare_failing_reward_never_kills_the_run_and_is_logged(tmp_path):
    cfg = config(tmp_path, **{"task.reward": "reward_faults:flaky", "rewards.max_failure_rate": 0.5,
                              "train.group_size": 20})
    summary = train(cfg, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    failures = sum(r["fault/reward_failures"] for r in rows[1:])
    assert failures > 0 and summary["steps"] == 6
    assert all(math.isfinite(r["train/reward_mean"]) for r in rows[1:])


def test_a_broken_reward_stops_the_run_with_a_message_and_a_checkpoint(tmp_path):
    cfg = config(tmp_path, **{"task.reward": "reward_faults:always_raises", "rewards.max_failure_rate": 0.2})
    with pytest.raises(RunStopped, match="rewards.max_failure_rate 0.2.*RuntimeError: this reward is broken") as info:
        train(cfg, show_progress=False)
    assert "checkpoint" in str(info.value) and "\n" not in str(info.value)
    found = Checkpoints(tmp_path / "run", keep=2).latest()
    assert found is not None and found.step == 1
    assert not (tmp_path / "run" / "summary.json").exists()


def test_rewards_in_worker_processes_give_the_same_run(tmp_path):
    """The pool changes where rewards run, never what they are: identical metrics, with and without."""
    def rows(name, workers):
        cfg = config(tmp_path / name, **{"run_dir": str(tmp_path / name), "rewards.workers": workers,
                                         "task.reward": "reward_faults:flaky", "rewards.max_failure_rate": 1.0})
        train(cfg, show_progress=False)
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith(("time/", "perf/"))} for line in lines]
    assert rows("pool", 2) == rows("inline", 0)


def test_the_command_line_reports_a_stopped_run_in_one_line_with_exit_code_3(tmp_path, capsys):
    from rlvr.cli import main
    code = main(["train", "--config", "lecture-sort-centered", "--quiet", "--run-dir", str(tmp_path / "run"),
                 "--task.reward", "reward_faults:always_raises"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("rlvr: stopped: the reward function failed on 30 of 30")
