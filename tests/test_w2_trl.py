"""W2 side by side (benchmarks/w2_trl.py): the pure parts pinned by hand (time to solution, the eval
schedule, the step-time ratio, the prompt check), bad arguments, and the --quick budget end to end on
a tiny random Llama with SmolLM2's ChatML template (tests/tiny_gguf.py through `rlvr convert`), rlvr
and TRL each in its own process. Timings are never asserted, only how they are combined."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import w2_trl  # noqa: E402


# ---------------------------------------------------------------- pure functions
def test_time_to_solution_is_training_minutes_to_the_first_evaluation_at_the_threshold():
    curve = [{"step": 0, "accuracy": 0.3}, {"step": 4, "accuracy": 0.5}, {"step": 8, "accuracy": 0.65},
             {"step": 12, "accuracy": 0.55}, {"step": 16, "accuracy": 0.8}]
    step_s = [float(s) for s in range(1, 17)]  # step k took k seconds
    # 0.6 first at step 8: 1 + ... + 8 = 36 s; 0.8 (>=, not >) first at step 16: 136 s
    assert w2_trl.time_to_solution(curve, step_s) == {"0.6": 36 / 60, "0.8": 136 / 60}
    assert w2_trl.time_to_solution(curve[:4], step_s) == {"0.6": 36 / 60, "0.8": None}   # never 0.8
    assert w2_trl.time_to_solution([{"step": 0, "accuracy": 0.9}], []) == {"0.6": 0.0, "0.8": 0.0}
    assert w2_trl.time_to_solution(curve, step_s, (0.5,)) == {"0.5": 10 / 60}          # step 4: 1+2+3+4


def test_evaluations_at_step_zero_every_k_steps_and_after_the_last():
    assert [s for s in range(0, 11) if w2_trl.should_eval(s, every=4, max_steps=10)] == [0, 4, 8, 10]
    assert [s for s in range(0, 3) if w2_trl.should_eval(s, every=1, max_steps=2)] == [0, 1, 2]


def test_step_ratio_is_the_ratio_of_the_medians_or_none():
    trl, rlvr = {"step_s": {"median": 27.0}}, {"step_s": {"median": 9.0}}
    assert w2_trl.step_ratio(trl, rlvr) == 3.0
    assert w2_trl.step_ratio(trl, {"step_s": {"median": None}}) is None  # one step only: no steps 2..


def test_summary_checks_the_prompts_against_the_lists_prefix_and_skips_the_first_step():
    prompts = [f"Compute {a}+1. Reply with only the number." for a in range(10, 22)]  # 3 steps x 4
    run = {"step_s": [30.0, 6.0, 8.0], "gen_s": [5.0, 2.0, 3.0], "train_s": [25.0, 4.0, 5.0],
           "reward": [0.0, 0.25], "completion_length": [12.0, 14.0], "stopped_at_target": True,
           "eval": [{"step": 0, "accuracy": 0.25, "eval_s": 3.0}, {"step": 2, "accuracy": 0.75, "eval_s": 3.0}],
           "peak_rss_mb": 900.0, "rss_after_imports_mb": 300.0, "prompts_sha256": w2_trl.prompts_hash(prompts[:12]),
           "eval_prompts_sha256": "e", "eval_prompt_ids_sha256": "i"}
    s = w2_trl.summarise(run, prompts)
    assert s["step_s"] == {"median": 7.0, "min": 6.0, "max": 8.0, "n": 2}
    assert s["train_minutes"] == 44 / 60 and s["eval_minutes"] == 0.1
    assert s["eval_curve"][1]["train_minutes"] == 36 / 60
    assert s["time_to_solution"] == {"0.6": 36 / 60, "0.8": None}
    assert s["prompts_match"] is True
    assert w2_trl.summarise({**run, "step_s": [1.0, 1.0]}, prompts)["prompts_match"] is False  # 8 prompts used


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("argv, named", [
    (["--max-steps", "0"], "--max-steps: 0"), (["--eval-every", "-1"], "--eval-every: -1"),
    (["--stop-at", "1.5"], "--stop-at: 1.5"), (["--model", "/nonexistent"], "--model: '/nonexistent'"),
    (["--eval-prompts", "x"], "--eval-prompts"), (["--bogus"], "--bogus")])
def test_a_bad_argument_is_one_line_and_exit_2(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        w2_trl.parse(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and named in err


# ---------------------------------------------------------------- end to end, tiny model
@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    pytest.importorskip("gguf")
    from rlvr.cli import main
    from tiny_gguf import write_tiny_llama_gguf

    folder = tmp_path_factory.mktemp("w2")
    write_tiny_llama_gguf(folder / "tiny.gguf")
    assert main(["convert", "--gguf", str(folder / "tiny.gguf"), "--out", str(folder / "model")]) == 0
    for name, key, value in (("tokenizer_config.json", "pad_token", "<|im_end|>"), ("generation_config.json",
                             "pad_token_id", 2)):  # as SmolLM2: <pad> is <|im_end|>, which prompts hold too
        config = json.loads((folder / "model" / name).read_text())
        (folder / "model" / name).write_text(json.dumps({**config, key: value}))
    out = folder / "w2.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    no_trl = [] if importlib.util.find_spec("trl") else ["--no-trl"]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w2_trl.py"), "--quick", "--threads", "1",
                           "--model", str(folder / "model"), "--out", str(out), *no_trl],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_quick_run_reports_both_tools_on_the_same_prompts(tiny_result):
    result, stdout = tiny_result
    if "trl" not in result["tools"]:
        pytest.skip("trl is not installed")
    rlvr, trl = result["tools"]["rlvr"], result["tools"]["trl"]
    assert rlvr["prompts_sha256"] == trl["prompts_sha256"] == result["prompt_lists"]["train_sha256"]  # 2 x 4: all
    assert rlvr["eval_prompts_sha256"] == trl["eval_prompts_sha256"] == result["prompt_lists"]["eval_sha256"]
    assert rlvr["eval_prompt_ids_sha256"] == trl["eval_prompt_ids_sha256"]  # both tokenize the chat template alike
    assert result["prompt_lists"]["same_for_every_tool"] is True
    assert result["trl_over_rlvr_step_time"] == trl["step_s"]["median"] / rlvr["step_s"]["median"]
    assert "TRL / rlvr median step time" in stdout


def test_quick_run_records_steps_curves_and_memory(tiny_result):
    result, _ = tiny_result
    assert result["eval_prompts"] == 2 and result["max_steps"] == 2 and "provenance" in result
    for tool, s in result["tools"].items():
        raw = result["raw"][tool]
        assert len(raw["step_s"]) == len(raw["gen_s"]) == len(raw["reward"]) == len(raw["completion_length"]) == 2
        assert s["step_s"]["n"] == 1 and s["step_s"]["median"] == raw["step_s"][1]  # steps 2.. only
        assert [row["step"] for row in s["eval_curve"]] == [0, 1, 2]
        assert s["eval_curve"][2]["train_minutes"] == pytest.approx(sum(raw["step_s"]) / 60)
        assert s["time_to_solution"] == w2_trl.time_to_solution(raw["eval"], raw["step_s"])
        assert all(0 < length <= 16 for length in s["completion_length"])
        assert s["peak_rss_mb"] >= s["rss_after_imports_mb"] > 0
