"""The shipped environments (issue 18): ``guess`` (rlvr.envs.guess) and the tools of
``calc-arith`` (rlvr.envs.tools, rlvr.envs.calc_arith). Transcripts pinned by hand; the expected
guesses of the demonstrators by a DP checked against the closed form and against exhaustive
enumeration, and the demonstrators' play against those numbers; demonstrations always win and
stay inside the task's alphabet; the registered tasks build and keep their held-out split."""

from __future__ import annotations

import math
import os
import string
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rlvr.config import load_config
from rlvr.envs.base import Step
from rlvr.envs.calc_arith import CalcArithConfig, CalcArithTask
from rlvr.envs.guess import (
    GuessConfig,
    GuessEnv,
    GuessTask,
    choose_guess,
    expected_bisect_guesses,
    expected_random_guesses,
    random_guesses_closed_form,
    random_guesses_variance,
)
from rlvr.envs.tools import ToolEnv, calc, parse_call, tool_signature
from rlvr.errors import ConfigError
from rlvr.tasks import build_task, task_config_class

SRC = Path(__file__).resolve().parents[1] / "src"


def guess_task(**fields) -> GuessTask:
    task = build_task(GuessConfig(name="guess", **fields))
    assert isinstance(task, GuessTask)
    return task


def calc_task(**fields) -> CalcArithTask:
    task = build_task(CalcArithConfig(name="calc-arith", **fields))
    assert isinstance(task, CalcArithTask)
    return task


def play(env, actions: list[str]) -> tuple[list[str | None], float, bool]:
    """Plays the turns on a fresh env: (observations after each turn, return, done at the end)."""
    env.reset()
    observations, ret, done = [], 0.0, False
    for action in actions:
        assert not done, "a turn after the episode ended"
        step = env.step(action)
        observations.append(step.observation)
        ret += step.reward
        done = step.done
    return observations, ret, done


def chars(texts) -> set[str]:
    return set("".join(t for t in texts if t is not None))


# ---------------------------------------------------------------- guess: the env
def test_guess_transcript_hidden_37():
    env = GuessEnv(37, max_turns=10, turn_cost=0.02)
    assert env.reset() == "1-100"
    assert env.step("50") == Step("lower", -0.02, False)
    assert env.step("25") == Step("higher", -0.02, False)
    last = env.step("37")
    assert (last.observation, last.done) == (None, True)
    assert last.reward == pytest.approx(0.98, abs=1e-15)
    assert env.metrics() == {"success": 1.0, "guesses": 3.0}
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("37")


def test_guess_show_range_states_the_interval_still_possible():
    env = GuessEnv(37, max_turns=10, turn_cost=0.02, show_range=True)
    observations, ret, done = play(env, ["50", "25", "60", "30", "x", "36", "37"])
    # "60" is in range but already excluded: the interval stays; "x" is invalid (no interval)
    assert observations == ["lower 1-49", "higher 26-49", "lower 26-49", "higher 31-49", "invalid",
                            "higher 37-49", None]
    assert done and ret == pytest.approx(1.0 - 7 * 0.02)


def test_guess_invalid_and_out_of_range_turns():
    env = GuessEnv(37, max_turns=20, turn_cost=0.05, low=1, high=100)
    env.reset()
    for action in ["", "abc", "0", "101", "-5", "+37", "37.0", "3 7", "1e2", "\uff13\uff17", "37abc"]:
        assert env.step(action) == Step("invalid", -0.05, False), action
    assert env.step("  37 \n") == Step(None, 1.0 - 0.05, True)  # surrounding spaces are ignored
    assert env.metrics() == {"success": 1.0, "guesses": 12.0}
    edge = GuessEnv(100, max_turns=3, turn_cost=0.0, low=1, high=100)
    edge.reset()
    assert edge.step("1") == Step("higher", 0.0, False)
    assert edge.step("0100") == Step(None, 1.0, True)  # leading zeros read as the number


def test_guess_turn_limit_ends_without_success():
    observations, ret, done = play(GuessEnv(37, max_turns=3, turn_cost=0.02), ["1", "2", "3"])
    assert observations == ["higher", "higher", None] and done
    assert ret == pytest.approx(-0.06)
    env = GuessEnv(37, max_turns=3, turn_cost=0.02)
    play(env, ["1", "x", "99"])
    assert env.metrics() == {"success": 0.0, "guesses": 3.0}
    with pytest.raises(RuntimeError):
        env.step("37")
    # success on the last allowed turn still counts
    env = GuessEnv(37, max_turns=3, turn_cost=0.02)
    observations, ret, done = play(env, ["1", "2", "37"])
    assert observations == ["higher", "higher", None] and ret == pytest.approx(1.0 - 0.06)
    assert env.metrics() == {"success": 1.0, "guesses": 3.0}


def test_guess_env_rejects_a_hidden_number_outside_the_range():
    with pytest.raises(ValueError, match="hidden=101"):
        GuessEnv(101, max_turns=3, turn_cost=0.0)


# ---------------------------------------------------------------- guess: expected guesses
def test_expected_random_guesses_dp_equals_closed_form():
    assert expected_random_guesses(100) == pytest.approx(7.478502585632033, abs=1e-12)
    for n in range(1, 101):
        assert expected_random_guesses(n) == pytest.approx(random_guesses_closed_form(n), abs=1e-9), n
    assert [expected_random_guesses(n) for n in (1, 2, 3)] == [1.0, 1.5, pytest.approx(17 / 9)]
    # the turn-limited DP (one level per turn left) with turns that (all but) never bind
    for n in (20, 45):
        assert expected_random_guesses(n, max_turns=n - 1) == pytest.approx(expected_random_guesses(n), abs=1e-9)


def enumerate_random(n: int, max_turns: int | None) -> tuple[Fraction, Fraction]:
    """Mean and variance of the random demonstrator's guesses by brute force: every hidden number,
    every allowed guess (both sides then fit in the turns left, as ``choose_guess`` says)."""
    def dist(lo: int, hi: int, hidden: int, left: int) -> dict[int, Fraction]:
        allowed = [g for g in range(lo, hi + 1)
                   if max(g - lo, hi - g) <= 2 ** (left - 1) - 1] if max_turns is not None else list(range(lo, hi + 1))
        out: dict[int, Fraction] = {}
        for g in allowed:
            if g == hidden:
                sub = {0: Fraction(1)}
            else:
                sub = dist(g + 1, hi, hidden, left - 1) if g < hidden else dist(lo, g - 1, hidden, left - 1)
            for k, p in sub.items():
                out[k + 1] = out.get(k + 1, Fraction(0)) + p / len(allowed)
        return out
    total: dict[int, Fraction] = {}
    for hidden in range(1, n + 1):
        for k, p in dist(1, n, hidden, max_turns or n).items():
            total[k] = total.get(k, Fraction(0)) + p / n
    mean = sum(k * p for k, p in total.items())
    return mean, sum(k * k * p for k, p in total.items()) - mean ** 2


@pytest.mark.parametrize(("n", "max_turns"), [(1, None), (2, None), (5, None), (8, None), (7, 3), (8, 4),
                                              (12, 4), (9, 5)])
def test_random_guesses_dp_equals_enumeration(n, max_turns):
    mean, variance = enumerate_random(n, max_turns)
    assert expected_random_guesses(n, max_turns=max_turns) == pytest.approx(float(mean), abs=1e-12)
    assert random_guesses_variance(n, max_turns=max_turns) == pytest.approx(float(variance), abs=1e-12)


def test_expected_bisect_guesses():
    assert expected_bisect_guesses(100) == 5.8  # 580 guesses over the 100 hidden numbers
    assert [expected_bisect_guesses(n) for n in (1, 3, 7)] == [1.0, 5 / 3, 17 / 7]
    with pytest.raises(ValueError):
        expected_random_guesses(100, max_turns=6)  # 2^6 - 1 = 63 < 100: no guarantee possible


def test_bisect_demonstrator_plays_the_env_in_at_most_7_guesses():
    task = guess_task(demonstrator="bisect")
    rng = np.random.default_rng(0)
    counts = []
    for hidden in range(1, 101):
        turns = task.demonstration(str(hidden), rng)
        env = task.make_env(str(hidden))
        observations, ret, done = play(env, turns)
        assert done and observations[-1] is None and env.metrics()["success"] == 1.0
        assert ret == pytest.approx(1.0 - 0.02 * len(turns))
        counts.append(len(turns))
    assert max(counts) == 7 and sum(counts) == 580
    assert task.demonstration("37", rng) == ["50", "25", "37"]  # the midpoints (1+100)//2, (1+49)//2


@pytest.mark.parametrize("max_turns", [100, 10])
def test_random_demonstrator_mean_matches_the_dp(max_turns):
    """All 100 hidden numbers x 60 seeds; the mean within 4 standard errors of the DP's (the
    stratified draw over hidden numbers only narrows the spread the variance bound allows)."""
    task = guess_task(max_turns=max_turns)
    seeds = 60
    counts = []
    for hidden in range(1, 101):
        for seed in range(seeds):
            turns = task.demonstration(str(hidden), np.random.default_rng([seed, hidden]))
            counts.append(len(turns))
            assert turns[-1] == str(hidden) and len(turns) <= max_turns
    limit = None if max_turns == 100 else max_turns
    mean, variance = expected_random_guesses(100, max_turns=limit), random_guesses_variance(100, max_turns=limit)
    assert np.mean(counts) == pytest.approx(mean, abs=4 * math.sqrt(variance / len(counts)))
    if max_turns == 100:
        assert mean == pytest.approx(7.478502585632033) and max(counts) > 10  # blind guessing runs long
    else:
        assert mean == pytest.approx(7.15756637376058)  # the turn limit steers the late guesses


def test_random_demonstrator_guesses_only_what_is_still_possible():
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert 26 <= choose_guess(26, 49, 10, "random", rng) <= 49
    # 3 turns left on 26-49 (24 numbers > 2^3 - 1): no guess can guarantee it, so the midpoint
    assert choose_guess(26, 49, 3, "random", rng) == 37
    # 5 turns left on 1-20: both sides must fit in 4 turns (<= 15 numbers): guesses 5..16
    assert {choose_guess(1, 20, 5, "random", rng) for _ in range(500)} == set(range(5, 17))
    assert {choose_guess(1, 30, 5, "random", rng) for _ in range(100)} == {15, 16}


def test_guess_demonstrations_always_win_and_stay_in_the_alphabet():
    for fields in ({}, {"show_range": True}, {"demonstrator": "bisect", "low": 0, "high": 999, "max_turns": 12}):
        task = guess_task(**fields)
        alphabet = chars(task.alphabet_texts())
        rng = np.random.default_rng(1)
        for hidden in range(task.low, task.high + 1):
            turns = task.demonstration(str(hidden), rng)
            env = task.make_env(str(hidden))
            observations, ret, done = play(env, turns)
            assert done and env.metrics()["success"] == 1.0 and ret > 0
            assert chars([env.reset(), *turns, *observations]) <= alphabet


def test_guess_observations_stay_in_the_alphabet_whatever_the_policy_writes():
    task = guess_task(show_range=True, low=0, high=1000)
    alphabet = sorted(chars(task.alphabet_texts()))
    rng = np.random.default_rng(2)
    env = task.make_env("537")
    seen = [env.reset()]
    for _ in range(300):
        if env.turns >= env.max_turns - 1:
            env = task.make_env("537")
        action = "".join(rng.choice(alphabet, size=int(rng.integers(0, 6))))
        if rng.random() < 0.5:
            action = str(int(rng.integers(0, 1200)))
        seen.append(env.step(action).observation)
    assert chars(seen) <= set(alphabet)
    assert {"invalid", "higher", "lower"} <= {s.split()[0] for s in seen if s and s[0].isalpha()}


# ---------------------------------------------------------------- tools
def test_calc_values_and_errors():
    assert calc("37*41") == "1517"
    assert calc("7/2") == "7/2" and calc("14/4") == "7/2" and calc("8/2") == "4"
    assert calc("3-8") == "-5" and calc(" (1+2) * 3 ") == "9"
    assert calc("import os") == "error: unexpected character 'i'"
    assert calc("__import__('os')") == "error: unexpected character '_'"
    assert calc("1/0") == "error: division by zero"
    assert calc("") == "error: empty expression"
    assert calc("2**3") == "error: unexpected '*'"
    assert calc("1234567890") == "error: number with more than 9 digits"


def test_calc_never_runs_code(tmp_path):
    target = tmp_path / "made"
    result = calc(f"__import__('pathlib').Path({str(target)!r}).touch()")
    assert result.startswith("error: ") and not target.exists()


def square(x: int) -> int:
    return x * x


def half(x: float) -> float:
    return x / 2


def shout(text: str) -> str:
    """Upper case."""
    return text.upper()


def unhinted(text):
    return f"[{text}]"


def boom(text: str) -> str:
    raise KeyError(text)


TOOLS = {"square": square, "half": half, "shout": shout, "plain": unhinted}


def test_tool_env_converts_arguments_by_type_hint():
    env = ToolEnv("q?", " 144 ", tools=TOOLS, max_turns=10)
    assert env.reset() == "q?"
    observations, ret, done = play(env, ["<square>12</square>", " <square> 12 </square>\n", "<square>1.5</square>",
                                         "<half>3</half>", "<half>x</half>", "<shout> ab </shout>", "<plain>7</plain>",
                                         "144"])
    assert observations == ["144", "144", "error: cannot read 1.5 as int", "1.5", "error: cannot read x as float",
                            " AB ", "[7]", None]
    assert done and ret == 1.0
    assert env.metrics() == {"success": 1.0, "tool_calls": 5.0}  # the two unconvertible calls never ran


def test_tool_env_unknown_tool_wrong_answer_and_malformed_calls():
    env = ToolEnv("q?", "144", tools=TOOLS, max_turns=10)
    env.reset()
    assert env.step("<cube>3</cube>") == Step("error: unknown tool cube", 0.0, False)
    assert env.step("<square>3</cube>") == Step(None, 0.0, True)  # not a call: a (wrong) final answer
    assert env.metrics() == {"success": 0.0, "tool_calls": 0.0}
    assert parse_call("<square>3</square> 9") is None and parse_call("x <square>3</square>") is None
    assert parse_call("<calc></calc>") == ("calc", "")
    env = ToolEnv("q?", "144", tools={}, max_turns=3)
    env.reset()
    assert env.step("<square>12</square>") == Step("error: no tools", 0.0, False)
    assert env.step("143") == Step(None, 0.0, True)


def test_tool_env_turn_limit():
    env = ToolEnv("q?", "144", tools=TOOLS, max_turns=2)
    assert play(env, ["<square>12</square>", "<square>12</square>"]) == (["144", None], 0.0, True)
    assert env.metrics() == {"success": 0.0, "tool_calls": 1.0}  # the last turn's call is not run
    with pytest.raises(RuntimeError):
        env.step("144")
    env = ToolEnv("q?", "144", tools=TOOLS, max_turns=2)
    assert play(env, ["<square>12</square>", "144"]) == (["144", None], 1.0, True)


def test_a_raising_tool_propagates():
    env = ToolEnv("q?", "1", tools={"boom": boom}, max_turns=3)
    env.reset()
    with pytest.raises(KeyError):
        env.step("<boom>x</boom>")


def test_tools_need_one_argument_of_a_plain_type():
    def listy(xs: list[int]) -> int:
        return sum(xs)

    def none() -> str:
        return ""

    with pytest.raises(TypeError, match="list"):
        ToolEnv("q", "a", tools={"listy": listy}, max_turns=2)
    with pytest.raises(TypeError, match="takes no argument"):
        ToolEnv("q", "a", tools={"none": none}, max_turns=2)


def test_tool_signature():
    assert tool_signature(calc) == ("calc(expression: str) -> str: The exact value of an expression over whole "
                                    "numbers with + - * / and parentheses.")
    assert tool_signature(square, "sq") == "sq(x: int) -> int"
    assert tool_signature(shout) == "shout(text: str) -> str: Upper case."
    assert tool_signature(unhinted) == "unhinted(text: str)"


# ---------------------------------------------------------------- calc-arith
def test_calc_arith_rows_and_transcripts():
    task = calc_task()
    assert task.solution("437*58=") == "25346"
    env = task.make_env("437*58=")
    assert play(env, ["<calc>437*58</calc>", "25346"]) == (["25346", None], 1.0, True)
    assert env.metrics() == {"success": 1.0, "tool_calls": 1.0}
    assert play(task.make_env("437*58="), ["<calc>437*58</calc>", "<calc>1/0</calc>", "25346"]) == (
        ["25346", "error: division by zero", None], 1.0, True)  # the answer on the last of 3 turns counts
    assert play(task.make_env("437*58="), ["<calc>1/0</calc>", "<calc>1+</calc>", "<calc>437*58</calc>"]) == (
        ["error: division by zero", "error: unexpected end of expression", None], 0.0, True)
    rows = {task.random_prompt(np.random.default_rng(s)) for s in range(300)}
    assert all(len(r.split("*")[0]) == 3 and len(r.split("*")[1]) == 3 and r.endswith("=") for r in rows)
    bare = calc_task(tools=False)
    assert play(bare.make_env("437*58="), ["<calc>437*58</calc>", "25346"]) == (
        ["error: no tools", None], 1.0, True)


def test_calc_arith_demonstrations_always_win_and_stay_in_the_alphabet():
    for tools, rate in ((True, 0.5), (True, 1.0), (False, 0.5)):
        task = calc_task(tools=tools, tool_rate=rate)
        alphabet = chars(task.alphabet_texts())
        rng = np.random.default_rng(3)
        used = 0
        for _ in range(400):
            row = task.train_prompt(rng)
            turns = task.demonstration(row, rng)
            env = task.make_env(row)
            observations, ret, done = play(env, turns)
            assert done and ret == 1.0 and env.metrics()["success"] == 1.0
            assert turns[-1] == task.solution(row) and len(turns) <= task.max_turns
            if len(turns) == 2:
                assert observations[0] == task.solution(row)
            used += int(env.metrics()["tool_calls"])
            assert chars([row, *turns, *observations]) <= alphabet
        expected = 400 * rate if tools else 0
        assert abs(used - expected) <= 4 * math.sqrt(400 * rate * (1 - rate)), (tools, rate, used)


def test_calc_arith_error_messages_stay_in_the_alphabet():
    """Whatever the policy writes (characters of its alphabet), the observations use only those."""
    task = calc_task()
    alphabet = sorted(chars(task.alphabet_texts()))
    rng = np.random.default_rng(4)
    seen = []
    for _ in range(500):
        body = "".join(rng.choice(alphabet, size=int(rng.integers(0, 12))))
        name = "calc" if rng.random() < 0.8 else "".join(rng.choice(list(string.ascii_lowercase), size=3))
        env = task.make_env("437*58=")
        env.reset()
        seen.append(env.step(f"<{name}>{body}</{name}>").observation)
    seen += [calc("1" * 10), calc("(" * 20 + "1"), calc("1" * 201), calc("'"), calc('"'), calc("2)")]
    assert chars(seen) <= set(alphabet)
    assert sum(s.startswith("error: ") for s in seen if s) > 300


# ---------------------------------------------------------------- registration, configs, split
def test_tasks_build_by_name_with_their_configs():
    assert task_config_class("guess") is GuessConfig and task_config_class("calc-arith") is CalcArithConfig
    cfg = load_config(None, {"task.name": "guess", "task.high": 50, "task.show_range": True,
                             "task.demonstrator": "bisect", "policy.kind": "transformer"})
    task = build_task(cfg.task)
    assert isinstance(task, GuessTask) and task.rollout_kind == "episodes"
    assert (task.low, task.high, task.max_turns, task.turn_cost, task.show_range) == (1, 50, 10, 0.02, True)
    assert task.max_new_tokens == 3 and guess_task().max_new_tokens == 4  # the widest guess + <eos>
    calc_arith = build_task(load_config(None, {"task.name": "calc-arith", "policy.kind": "transformer"}).task)
    assert isinstance(calc_arith, CalcArithTask)
    assert (calc_arith.digits_a, calc_arith.digits_b, calc_arith.max_turns, calc_arith.tools,
            calc_arith.tool_rate) == (3, 2, 3, True, 0.5)
    assert calc_arith.max_new_tokens == len("<calc>999*99</calc>") + 1
    with pytest.raises(TypeError, match="played as episodes"):
        calc_arith.score_text("1*1=", "1")


def test_guess_config_errors():
    with pytest.raises(ConfigError, match="task.high: 5 must be above task.low 5"):
        load_config(None, {"task.name": "guess", "task.low": 5, "task.high": 5})
    with pytest.raises(ConfigError, match="demonstrator"):
        load_config(None, {"task.name": "guess", "task.demonstrator": "psychic"})
    with pytest.raises(ConfigError, match="psychic"):
        guess_task(demonstrator="psychic")


@pytest.mark.parametrize("task", [guess_task(), calc_task()], ids=["guess", "calc-arith"])
def test_heldout_rows_are_never_trained_on(task):
    heldout = task.eval_prompts()
    assert heldout and all(task.is_heldout(p) for p in heldout)
    rng = np.random.default_rng(5)
    train = {task.train_prompt(rng) for _ in range(3000)}
    assert not train & set(heldout)
    if isinstance(task, GuessTask):  # 100 rows: every one is on exactly one side
        assert train | {str(h) for h in range(1, 101) if task.is_heldout(str(h))} == {str(h) for h in range(1, 101)}


@pytest.mark.parametrize("template", ["{prompt}:", "{prompt}> "])
@pytest.mark.parametrize("name", ["guess", "calc-arith"])
def test_demonstrated_episodes_tokenize_without_unknown_characters(name, template):
    """The SFT path on real components: a character-level transformer built for the task reads the
    demonstrated episodes (observations shown through a prompt template) without a single <unk>,
    through the guarded envs, and their loss is finite."""
    import torch

    from rlvr.envs.guard import EnvRunner
    from rlvr.multiturn import demonstrated_episodes
    from rlvr.policies import build_policy
    from rlvr.sft import episode_sft_loss
    from rlvr.tokenizer import UNK_ID

    cfg = load_config(None, {"task.name": name, "policy.kind": "transformer", "policy.hidden_size": 16,
                             "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2,
                             "policy.prompt_template": template,
                             **({"task.show_range": True} if name == "guess" else {})})
    task = build_task(cfg.task)
    torch.manual_seed(0)
    policy = build_policy(cfg.policy, task)
    rng = np.random.default_rng(6)
    rows = [task.train_prompt(rng) for _ in range(32)]
    demos = [task.demonstration(r, rng) for r in rows]
    assert max(len(turn) for demo in demos for turn in demo) + 1 <= task.max_new_tokens  # + <eos>
    envs = EnvRunner(task.make_env, timeout=10.0, fallback_reward=0.0)
    try:
        prompt_ids, response_ids, mask, _ = demonstrated_episodes(policy, envs, rows, demos)
        assert not (prompt_ids == UNK_ID).any() and not (response_ids == UNK_ID).any()
        assert int(mask.sum()) == sum(len(turn) + 1 for demo in demos for turn in demo)  # no episode left out
        assert torch.isfinite(episode_sft_loss(policy, task, envs, rows, rng))
    finally:
        envs.close()


@pytest.mark.parametrize("first", ["rlvr.envs.guess", "rlvr.envs.tools", "rlvr.envs.calc_arith", "rlvr.envs.task",
                                   "rlvr.tasks.text"])
def test_no_import_cycle_whichever_module_comes_first(first):
    code = (f"import {first}\nfrom rlvr.tasks import GuessConfig, CalcArithConfig, build_task\n"
            "build_task(GuessConfig(name='guess')); build_task(CalcArithConfig(name='calc-arith'))")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
