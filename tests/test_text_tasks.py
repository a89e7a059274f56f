"""Text tasks: strict verifiers (token ids and text), the safe expression parser, task generators."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlvr.tasks.arithmetic import ArithTask, CountdownTask
from rlvr.tasks.expr import ExprError, evaluate_expression
from rlvr.tasks.sort_text import SortTextTask
from rlvr.tasks.text import Completion
from rlvr.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer

SPLIT = {"eval_fraction": 0.2, "num_eval_prompts": 16, "split_seed": 0}
W1 = CharTokenizer("0123456789 >")


def completion(text: str, *, eos: int = 1, before_eos: list[int] | None = None, after: list[int] | None = None,
               tokenizer: CharTokenizer = W1) -> Completion:
    ids = tokenizer.encode_answer(text) + (before_eos or []) + [EOS_ID] * eos + (after or [])
    return Completion(tuple(ids), tokenizer.eos_id, tokenizer.special_ids, tokenizer.decode)


def test_sort_text_reward_is_strict_about_special_tokens_and_junk():
    task = SortTextTask(length=5, **SPLIT)
    prompt = "3 1 4 1 5>"
    assert task.solution(prompt) == "1 1 3 4 5"
    assert task.reward(prompt, completion("1 1 3 4 5")) == 1.0
    assert task.reward(prompt, completion("11345")) == 1.0            # lenient spacing (W1)
    assert task.reward(prompt, completion("1 1 3 5 4")) == pytest.approx(0.6)
    assert task.reward(prompt, completion("1 1 3")) == pytest.approx(0.6)
    rejected = [
        completion("1 1 3 4 5", eos=0),                         # never stopped
        completion("1 1 3 4 5", eos=2),                         # two <eos>
        completion("1 1 3 4 5", before_eos=[PAD_ID]),           # padded with a special token
        completion("1 1 3 4 5", before_eos=[BOS_ID]),
        completion("1 1 3 4 5", before_eos=[UNK_ID]),
        completion("1 1 3 4 5", after=[PAD_ID]),                # anything after <eos>
        completion("1 1 3 4 5>"),                               # junk character
        completion("1 1 3 4 5 9"),                              # too many digits
        completion(""),
    ]
    for bad in rejected:
        assert task.reward(prompt, bad) == 0.0, bad.token_ids
        assert not task.is_correct(prompt, bad)


def test_sort_text_token_rewards_sum_to_reward_and_sit_on_the_right_digits():
    task = SortTextTask(length=5, **SPLIT)
    prompt = "3 1 4 1 5>"
    good = completion("1 1 3 5 4")                       # ids: 1 _ 1 _ 3 _ 5 _ 4 <eos>
    values = task.token_rewards(prompt, good)
    assert len(values) == len(good.token_ids)
    assert values == pytest.approx([0.2, 0, 0.2, 0, 0.2, 0, 0, 0, 0, 0])
    for text, kwargs in [("11345", {}), ("1 1 3", {}), ("1 1 3 4 5", {"eos": 0}), ("1 1 3 4 5 9", {}),
                         ("1 1 3 4 5>", {}), ("9 9", {"eos": 0}), ("", {})]:
        response = completion(text, **kwargs)
        values = task.token_rewards(prompt, response)
        assert sum(values) == pytest.approx(task.reward(prompt, response)), text
    unfinished = task.token_rewards(prompt, completion("1 1 3", eos=0))  # matches taken back at the end
    assert unfinished[:4] == pytest.approx([0.2, 0, 0.2, 0]) and unfinished[-1] == pytest.approx(0.2 - 0.6)


def test_flawed_sort_demonstration_swaps_one_pair():
    task = SortTextTask(length=5, **SPLIT)
    rng = np.random.default_rng(0)
    for _ in range(50):
        prompt = task.random_prompt(rng)
        flawed = task.flawed_solution(prompt, rng)
        right = task.solution(prompt)
        assert sorted(flawed.split()) == sorted(right.split())
        if len(set(right.split())) > 1:
            assert task.score_text(prompt, flawed) == pytest.approx(0.6)


@pytest.mark.parametrize("text, value", [("1+2*3", 7), ("(1+2)*3", 9), ("7/2", 3.5), ("10-4-3", 3),
                                         ("  (25 - 3) * 7 ", 154), ("8/(3-1)", 4)])
def test_expression_parser_evaluates_the_grammar(text, value):
    assert float(evaluate_expression(text)[0]) == value


@pytest.mark.parametrize("text", ["__import__('os')", "__import__('os').system('true')", "os.system('ls')",
                                  "1+1; import os", "2**100", "lambda: 1", "1 if 1 else 2", "1e9", "[1]",
                                  "(1+2", "1+", "", "1/0", "5/(2-2)", "(" * 40 + "1" + ")" * 40, "1" * 20, "-1"])
def test_expression_parser_refuses_everything_else(text):
    with pytest.raises(ExprError):
        evaluate_expression(text)


def test_countdown_accepts_any_valid_expression_and_rejects_reuse():
    task = CountdownTask(count=4, digits=2, **SPLIT)
    prompt = "2 3 5 10->25:"
    assert task.score_text(prompt, "10*5/2") == 1.0
    assert task.score_text(prompt, "(3+2)*5") == 1.0        # another expression, numbers used at most once
    assert task.score_text(prompt, "5*5") == 0.0            # 5 used twice
    assert task.score_text(prompt, "25") == 0.0             # not a given number
    assert task.score_text(prompt, "10*5/2+1") == 0.0       # 1 not given, and wrong value
    assert task.score_text(prompt, "__import__('os')") == 0.0
    tok = CharTokenizer.from_texts(task.alphabet_texts())
    assert task.reward(prompt, completion("10*5/2", tokenizer=tok)) == 1.0
    assert task.reward(prompt, completion("10*5/2", eos=0, tokenizer=tok)) == 0.0
    rng = np.random.default_rng(1)
    for _ in range(30):  # every generated prompt is solvable by its stored expression, and by search
        p = task.random_prompt(rng)
        assert task.score_text(p, task.solution(p)) == 1.0
        assert task.score_text(p, task.search(p)) == 1.0


def test_arith_reward_is_exact_and_strict():
    task = ArithTask(digits=3, operations="+-*", **SPLIT)
    assert task.solution("47+385=") == "432" and task.solution("12*34=") == "408" and task.solution("3-10=") == "-7"
    tok = CharTokenizer.from_texts(task.alphabet_texts())
    assert task.reward("47+385=", completion("432", tokenizer=tok)) == 1.0
    assert task.reward("47+385=", completion("0432", tokenizer=tok)) == 0.0
    assert task.reward("47+385=", completion("433", tokenizer=tok)) == 0.0
    assert task.reward("47+385=", completion("432", before_eos=[PAD_ID], tokenizer=tok)) == 0.0
    rng = np.random.default_rng(0)
    prompts = [task.train_prompt(rng) for _ in range(200)]
    assert all(not task.is_heldout(p) for p in prompts)
    assert not set(prompts) & set(task.eval_prompts())


def test_reasoning_gym_adapter_scores_with_its_own_scorer_and_threshold():
    pytest.importorskip("reasoning_gym")
    from rlvr.errors import ConfigError
    from rlvr.tasks.reasoning_gym import ReasoningGymTask

    task = ReasoningGymTask("leg_counting", **SPLIT)
    prompt = task.eval_prompts()[0]
    assert task.is_heldout(prompt)
    tok = CharTokenizer.from_texts(task.alphabet_texts())
    answer = task.solution(prompt)
    assert task.reward(prompt, completion(answer, tokenizer=tok)) == 1.0
    assert task.reward(prompt, completion(answer + "0", tokenizer=tok)) == 0.0
    assert task.reward(prompt, completion(answer, before_eos=[PAD_ID], tokenizer=tok)) == 0.0
    with pytest.raises(ConfigError, match="rg:no_such_dataset"):
        ReasoningGymTask("no_such_dataset", **SPLIT)


RG_TINY = ["--policy.hidden_size", "16", "--policy.intermediate_size", "32", "--policy.num_layers", "1",
           "--policy.num_heads", "2", "--sft.steps", "2", "--train.outer_steps", "2", "--task.num_eval_prompts", "8"]


def test_rg_name_is_a_task_not_a_module_to_import():
    """``rg:NAME`` has the form of ``module:attribute``; validation once tried to import ``rg``."""
    from rlvr.cli import config_from_args, resolve_config_path, train_parser
    from rlvr.config import load_config

    assert load_config(resolve_config_path("arith"), {"task.name": "rg:chain_sum"}).task.name == "rg:chain_sum"
    for flags in (["--task", "rg:chain_sum"], ["--task.name", "rg:chain_sum"], ["--task.name=rg:chain_sum"]):
        args, rest = train_parser().parse_known_args(["--config", "arith", *flags])
        assert config_from_args(args, rest).task.name == "rg:chain_sum", flags
    pytest.importorskip("reasoning_gym")
    from rlvr.tasks import build_task
    from rlvr.tasks.reasoning_gym import ReasoningGymTask

    task = build_task(load_config(None, {"task.name": "rg:chain_sum"}).task)
    assert isinstance(task, ReasoningGymTask) and task.name == "rg:chain_sum"


def test_rlvr_train_runs_an_rg_task_and_names_a_bad_one_in_one_line(tmp_path):
    pytest.importorskip("reasoning_gym")
    rlvr = str(Path(sys.executable).parent / "rlvr")
    run = tmp_path / "run"
    out = subprocess.run([rlvr, "train", "--config", "arith", "--task", "rg:chain_sum", *RG_TINY,
                          "--run-dir", str(run), "--quiet"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert yaml.safe_load((run / "config.yaml").read_text())["task"]["name"] == "rg:chain_sum"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and "eval/exact_match" in rows[-1]
    sample = json.loads((run / "samples.jsonl").read_text().splitlines()[0])
    assert "arithmetic problem" in json.dumps(sample)  # chain_sum's own questions are the prompts
    bad = subprocess.run([rlvr, "train", "--config", "arith", "--task.name", "rg:chain_sums", *RG_TINY,
                          "--run-dir", str(tmp_path / "bad")], capture_output=True, text=True, timeout=600)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr[-2000:]
    assert lines[0].startswith("rlvr: error: task.name: 'rg:chain_sums'") and "did you mean 'rg:chain_sum'" in lines[0]


def test_an_unknown_rg_dataset_is_one_line_exit_2(capsys):
    pytest.importorskip("reasoning_gym")
    from rlvr.cli import main

    assert main(["train", "--config", "arith", "--task", "rg:nosuchdataset", *RG_TINY, "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlvr: error: task.name: 'rg:nosuchdataset' is not a "
                                                   "reasoning-gym dataset"), lines


def test_sort_text_copy_shaping_rewards_prompt_digits_and_keeps_exact_match():
    shaped = SortTextTask(length=5, copy_weight=0.5, **SPLIT)
    prompt = "3 1 4 1 5>"
    assert shaped.reward(prompt, completion("1 1 3 4 5")) == 1.0
    assert shaped.reward(prompt, completion("5 4 3 1 1")) == pytest.approx(0.5 * 1.0 + 0.5 * 0.2)  # a copy, 1 place right
    assert shaped.reward(prompt, completion("1 1 1 1 1")) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)  # only two 1s to copy
    for text in ["5 4 3 1 1", "1 1 1 1 1", "1 9"]:
        response = completion(text)
        assert sum(shaped.token_rewards(prompt, response)) == pytest.approx(shaped.reward(prompt, response))
    assert not shaped.is_correct(prompt, completion("1 1 3 5 4"))
