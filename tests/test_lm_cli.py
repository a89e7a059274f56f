"""Language-model policies end to end through the command line, on tiny models."""

from __future__ import annotations

import json

import pytest

from rlvr.cli import main
from test_cli import rlvr

RUN = ["--train.prompts_per_step", "4", "--train.group_size", "4",
       "--task.num_eval_prompts", "8", "--eval.pass_samples", "5", "--train.threads", "1", "--quiet"]
TINY = ["--policy.hidden_size", "32", "--policy.intermediate_size", "64", "--policy.num_layers", "1",
        "--policy.num_heads", "2", *RUN]  # our transformer's settings: another policy kind has none of them


def test_transformer_run_saves_an_hf_final_policy_that_eval_reproduces(tmp_path):
    run = tmp_path / "run"
    out = rlvr("train", "--config", "sort5", "--run-dir", str(run), "--train.outer_steps", "3",
               "--eval.every", "3", *TINY)
    assert out.returncode == 0, out.stderr
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (run / "final" / name).is_file(), name
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["prompt"].endswith(">") and len(samples[0]["responses"]) == 4
    final = json.loads((run / "summary.json").read_text())["final"]
    out = rlvr("eval", str(run), "--eval.pass_samples", "5", "--out", str(tmp_path / "eval.json"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["eval/exact_match"] == final["eval/exact_match"]
    assert metrics["eval/reward_mean"] == pytest.approx(final["eval/reward_mean"])


def test_sft_stage_then_rl_in_one_run_and_task_override(tmp_path):
    run = tmp_path / "run"
    out = rlvr("train", "--config", "sort5", "--task", "arith", "--algo.credit", "outcome", "--run-dir", str(run),
               "--train.outer_steps", "2",
               "--eval.every", "2", "--sft.steps", "4", "--sft.eval_every", "2", "--sft.batch_size", "8",
               "--sft.flawed_fraction", "0.5", *TINY)
    assert out.returncode == 0, out.stderr
    sft_rows = [json.loads(line) for line in (run / "sft_metrics.jsonl").read_text().splitlines()]
    assert [r["sft_step"] for r in sft_rows] == [1, 2, 3, 4]
    assert [r["sft_step"] for r in sft_rows if "eval/exact_match" in r] == [2, 4]
    summary = json.loads((run / "summary.json").read_text())
    assert "sft_final" in summary and summary["steps"] == 2
    config = json.loads((run / "final" / "tokenizer_config.json").read_text())
    assert "+" in config["rlvr_alphabet"] and ">" not in config["rlvr_alphabet"]  # the arith task's alphabet


def test_rlvr_sft_alone_and_hf_policy_on_its_export(tmp_path):
    pytest.importorskip("transformers")
    sft = tmp_path / "sft"
    out = rlvr("sft", "--config", "sort5", "--run-dir", str(sft), "--sft.steps", "3", "--sft.batch_size", "4",
               "--sft.eval_every", "3", *TINY)
    assert out.returncode == 0, out.stderr
    assert (sft / "final" / "model.safetensors").is_file()
    run = tmp_path / "hf-run"
    out = rlvr("train", "--config", "sort5", "--policy", "hf", "--model", str(sft / "final"), "--run-dir", str(run),
               "--train.outer_steps", "2", "--eval.every", "2", *RUN)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and "eval/exact_match" in rows[-1]
    assert (run / "final" / "config.json").is_file() and (run / "final" / "tokenizer.json").is_file()


@pytest.mark.parametrize("args, needle", [
    (["--config", "sort5", "--policy", "toy"], "policy.kind: 'toy' needs a token task"),
    (["--config", "sort-toy", "--policy", "transformer"], "policy.kind: 'transformer' needs a text task"),
    (["--config", "sort5", "--policy", "hf"], "policy.model: the hf policy needs a local model folder"),
    (["--config", "sort5", "--task", "nope"], "task.name: 'nope' is not one of"),
    (["--config", "sort5", "--policy.num_heads", "3"], "policy.num_heads: 3 does not divide"),
    (["--config", "sort5", "--policy.prompt_template", "Sort:"], "policy.prompt_template: 'Sort:' has no {prompt}"),
    (["--config", "sort5", "--policy.model", "/nonexistent"], "policy.model: '/nonexistent' is not a model folder"),
])
def test_lm_user_mistakes_are_one_line_errors(tmp_path, capsys, args, needle):
    assert main(["train", *args, "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error: ") and needle in err and err.count("\n") == 1, err


def test_eval_of_a_missing_target_is_a_one_line_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("rlvr: error: RUN_OR_MODEL")
