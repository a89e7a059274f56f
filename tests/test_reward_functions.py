"""rewards.functions: TRL-style batched reward functions with dataset columns, guarded; think-format."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.rewards.sources import SOURCES, SourceConfig, build_rewards
from rlvr.tasks import build_task

ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b), "a": a, "b": b} for a in range(5) for b in range(5)]
TINY = ["--policy.kind", "transformer", "--policy.hidden_size", "16", "--policy.intermediate_size", "32",
        "--policy.num_layers", "1", "--policy.num_heads", "2", "--train.outer_steps", "2",
        "--train.prompts_per_step", "2", "--train.group_size", "2", "--task.num_eval_prompts", "2",
        "--eval.pass_k", "1", "--eval.pass_samples", "1", "--eval.samples_every", "1",
        "--eval.samples_prompts", "2", "--quiet"]

# as in TRL's GRPOTrainer documentation
TRL_MODULE = '''
def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def uses_columns(prompts, completions, completion_ids, answer, a, b, **kwargs):
    assert len(prompts) == len(completions) == len(completion_ids) == len(answer) == len(a) == len(b)
    assert all(str(x + y) == ans for x, y, ans in zip(a, b, answer))
    return [1.0 if c.strip() == ans else None for c, ans in zip(completions, answer)]


def raises(completions, **kwargs):
    raise RuntimeError("boom")


def nan(completions, **kwargs):
    return [float("nan")] * len(completions)


def short(completions, **kwargs):
    return [1.0]


def slow(completions, **kwargs):
    import time
    time.sleep(5)
    return [1.0] * len(completions)


def dies(completions, **kwargs):
    import os
    os._exit(13)
'''


@pytest.fixture
def setup(tmp_path, monkeypatch):
    (tmp_path / "trl_rewards.py").write_text(textwrap.dedent(TRL_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return data


def rewards_for(data, functions, **more):
    cfg = load_config(None, {"task.name": "dataset", "task.path": str(data), "task.eval_fraction": 0.5,
                             "rewards.functions": functions, **more})
    task = build_task(cfg.task)
    return task, build_rewards(cfg, task)


def test_a_function_gets_completions_and_columns_and_none_adds_nothing(setup):
    task, rewards = rewards_for(setup, ["trl_rewards:uses_columns"], **{"rewards.function_weights": [0.5]})
    prompts = ["1+2=", "1+2=", "3+4="]
    total = rewards(prompts, ["3", "4", "the answer is 7"])
    assert total == [1.0 + 0.5, 0.0, 1.0]  # verifier (weight 1) + 0.5 * function; None: nothing added
    metrics = rewards.pop_metrics()
    assert metrics["reward/uses_columns"] == 1.0  # the mean over the one response it scored
    assert metrics["reward/verifier"] == pytest.approx(2 / 3) and metrics["fault/reward_failures"] == 0.0


@pytest.mark.parametrize("name,kind,workers", [("raises", "error", 0), ("nan", "nonfinite", 0), ("short", "type", 0),
                                                ("slow", "timeout", 0), ("raises", "error", 1), ("slow", "timeout", 1),
                                                ("dies", "crash", 1)])
def test_a_failing_call_gives_each_response_the_fallback_and_is_counted(setup, name, kind, workers):
    """In the training process (workers 0) and in a worker process of its own (workers 1), where a
    hung call's process is killed and one that kills its process is a crash."""
    task, rewards = rewards_for(setup, [f"trl_rewards:{name}"], **{"rewards.fallback": -1.0, "rewards.timeout": 0.5,
                                                                  "rewards.workers": workers})
    assert rewards(["1+2=", "3+4="], ["3", "0"]) == [1.0 - 1.0, 0.0 - 1.0]
    metrics = rewards.pop_metrics()
    assert metrics["fault/reward_failures"] == 2.0 and metrics[f"fault/reward_failures_{kind}"] == 2.0
    assert metrics["fault/reward_failure_rate"] == pytest.approx(2 / 4)  # 2 verifier calls + 2 failed
    assert f"reward function {name}: {kind}" in rewards.stop_reason()
    rewards.close()


def test_a_function_in_a_worker_process_gives_the_in_process_values_and_its_process_is_replaced(setup):
    prompts, completions = ["1+2=", "1+2=", "3+4="], ["3", "4", "the answer is 7"]
    _, local = rewards_for(setup, ["trl_rewards:uses_columns", "trl_rewards:reward_len"])
    _, remote = rewards_for(setup, ["trl_rewards:uses_columns", "trl_rewards:reward_len"], **{"rewards.workers": 1})
    try:
        pids = [fn.pool.workers[0].process.pid for _, fn in remote.functions]
        assert len(set(pids)) == 2 and os.getpid() not in pids                 # a process per function
        assert remote(prompts, completions) == local(prompts, completions) == [1 + 1 - 19, 0 - 19, 1 - 5]
        assert remote.pop_metrics() == local.pop_metrics()
    finally:
        remote.close()
    assert all(fn.pool is None for _, fn in remote.functions)


def test_bad_function_settings_are_one_line_errors(setup, capsys):
    base = ["train", "--task.name", "dataset", "--task.path", str(setup), *TINY]
    cases = [(["--rewards.functions", "[trl_rewards:missing]"], "rlvr: error: rewards.functions[0]: "),
             (["--rewards.functions", "[trl_rewards:reward_len]", "--rewards.function_weights", "[1, 2]"],
              "rlvr: error: rewards.function_weights: [1, 2] must be a list of 1 numbers")]
    for flags, start in cases:
        assert main([*base, *flags]) == 2
        err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("rlvr: warning")]
        assert len(err) == 1 and err[0].startswith(start), err


def test_think_format_source():
    score = SOURCES.get("think-format")(SourceConfig(kind="think-format"), None)
    assert score(["p", "p"], ["<think>1+1</think><answer>2</answer>", "<answer>2</answer>"]) == [1.0, 0.0]


def test_training_logs_the_trl_function_mean_over_the_logged_completions(setup, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--task.name", "dataset", "--task.path", str(setup), "--task.eval_fraction", "0.5",
                 "--task.max_new_tokens", "3", "--rewards.functions", "[trl_rewards:reward_len]",
                 "--rewards.function_weights", "[0.5]", *TINY, "--run-dir", str(run)]) == 0
    rows = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for step in (1, 2):
        record = [s for s in samples if s["step"] == step]
        texts = [r if isinstance(r, str) else r["malformed"] for s in record for r in s["responses"]]
        lengths = [-abs(20 - len(t)) for t in texts]
        assert len(texts) == 4 and rows[step]["reward/reward_len"] == pytest.approx(sum(lengths) / 4)
        totals = [x for s in record for x in s["rewards"]]
        for total, length in zip(totals, lengths, strict=True):
            assert total - 0.5 * length in (pytest.approx(0.0), pytest.approx(1.0))  # verifier 0/1 + 0.5 * len


def test_the_answer_format_source_pays_a_readable_answer_right_or_wrong(setup):
    from rlvr.errors import ConfigError

    sources = [{"kind": "answer-format", "weight": 0.5}, {"kind": "verifier", "weight": 1.0}]
    task, rewards = rewards_for(setup, None, **{"task.verifier": "tag:answer", "rewards.sources": sources})
    total = rewards(["1+2="] * 4, ["<answer>3</answer>", "<answer>4</answer>", "3", "<answer>3"])
    assert total == [0.5 + 1.0, 0.5, 0.0, 0.0]
    assert rewards.pop_metrics()["reward/answer-format"] == 0.5
    cfg = load_config(None, {"task.name": "sort", "rewards.sources": sources})
    with pytest.raises(ConfigError, match="kind 'answer-format' needs a task that reads its answer out of free text"):
        build_rewards(cfg, build_task(cfg.task))
