"""Text tasks: strict verifiers (token ids and text), the safe expression parser, task generators."""

from __future__ import annotations

import numpy as np
import pytest

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
