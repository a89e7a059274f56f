"""Envs are user code (rlvr.envs.guard): an env that raises, hangs, dies or returns garbage ends its own
episode with a recorded fault, and every other episode of the batch plays exactly as with good envs.
The faults are counted by the run's one tally (rlvr.faults.FailureTally, as FaultCount uses it)."""

import json
from collections import Counter

import pytest
import torch

import custom_envs
import faulty_envs
from rlvr.envs import EnvFault, EnvRunner, Step
from rlvr.errors import ConfigError
from rlvr.faults import FailureTally
from rlvr.multiturn import Episode, FaultCount
from rlvr.policies.episodes import sample_episodes
from test_multiturn import LIMITS, ROWS, PlainEnvs, warmed

FIRST = "count down from 3"
RIGHT = [Step("2 left", 1.0, False), Step("1 left", 1.0, False), Step(None, 1.0, True)]     # says 3, 2, 1
WRONG = [Step("2 left", -0.5, False), Step("1 left", -0.5, False), Step(None, -0.5, True)]  # says x, x, x
BAD = 5  # the faulty episode of a batch of 8: odd, so it says "x"; with 2 workers it lives in worker 1


def runner(workers=0, timeout=10.0):
    return EnvRunner(faulty_envs.make, timeout=timeout, fallback_reward=-1.0, workers=workers)


def env_tally():
    """The tally FaultCount keeps (fault/env_* metrics; "episodes" and "faults" in a checkpoint)."""
    return FailureTally("env", 0.5, keys=("episodes", "faults"))


def kinds(envs):
    """The batch's faulted episodes by kind, as the guard recorded them (each episode once)."""
    return Counter(fault.kind for fault in envs.faults.values())


def batch(name, size=8):
    return [(name if i == BAD else "good", 3) for i in range(size)]


def good_trace(i):
    return [FIRST, *(RIGHT if i % 2 == 0 else WRONG)]


def good_metrics(i):
    return {"right": 3.0 if i % 2 == 0 else 0.0}


def play(envs, rows):
    """Plays a batch as the sampler does: episode i says the right count when i is even, "x" when odd;
    an episode that ends (done or faulted) is finished at once. -> each episode's outcomes (its first
    observation or fault, then each step's answer) and its metrics."""
    opened = envs.start(rows)
    trace = {i: [o] for i, o in enumerate(opened)}
    live = [i for i, o in enumerate(opened) if isinstance(o, str)]
    metrics = {i: envs.finish(i) for i, o in enumerate(opened) if isinstance(o, EnvFault)}
    for turn in range(10):
        if not live:
            break
        for i, out in envs.step({i: str(3 - turn) if i % 2 == 0 else "x" for i in live}).items():
            trace[i].append(out)
            if isinstance(out, EnvFault) or out.done:
                live.remove(i)
                metrics[i] = envs.finish(i)
    return trace, metrics


# (env at BAD, its trace, its metrics, the fault counted for it)
CASES = {
    "raises_in_reset": ([EnvFault("error", "reset raised ValueError: boom")], {}, "error"),
    "no_such_env": ([EnvFault("error", "factory raised KeyError: 'no_such_env'")], {}, "error"),
    "raises_in_step": ([FIRST, WRONG[0], EnvFault("error", "step raised ValueError: boom")], {}, "error"),
    "nan_reward": ([FIRST, WRONG[0], EnvFault("nonfinite", "step returned reward nan")], {}, "nonfinite"),
    "bool_reward": ([FIRST, WRONG[0], EnvFault("type", "step returned reward bool True, not a real number")],
                    {}, "type"),
    "int_observation": ([FIRST, WRONG[0], EnvFault("type", "step returned observation int 42, not a str or None")],
                        {}, "type"),
    "not_a_step": ([FIRST, WRONG[0], EnvFault("type", "step returned dict {'observation': '1 left'}, not a Step")],
                   {}, "type"),
    "none_not_done": ([FIRST, WRONG[0], EnvFault("type", "step returned observation None with done False")],
                      {}, "type"),
    "raises_in_metrics": ([FIRST, *WRONG], {}, "error"),          # the steps stand, the metrics are lost
    "raises_in_close": ([FIRST, *WRONG], {"right": 0.0}, "error"),
    "tuples": ([FIRST, *WRONG], {"right": 0.0}, None),            # (obs, reward, done) tuples are Steps
}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_a_faulty_env_ends_only_its_own_episode(name, workers):
    expected_trace, expected_metrics, kind = CASES[name]
    envs = runner(workers)
    try:
        trace, metrics = play(envs, batch(name))
        assert trace[BAD] == expected_trace and metrics[BAD] == expected_metrics
        for i in set(range(8)) - {BAD}:
            assert trace[i] == good_trace(i) and metrics[i] == good_metrics(i)
        assert {i: fault.kind for i, fault in envs.faults.items()} == ({BAD: kind} if kind else {})
        tally, faults = env_tally(), {f"fault/env_failures_{kind}": 1.0} if kind else {}
        assert tally.add(8, kinds(envs)) == {"fault/env_failures": float(len(faults)),
                                             "fault/env_failure_rate": len(faults) / 8, **faults}
        assert tally.rate() == len(faults) / 8
    finally:
        envs.close()


def test_a_hung_step_is_interrupted_in_process():
    envs = runner(0, timeout=0.5)
    trace, metrics = play(envs, batch("hangs_in_step"))
    assert trace[BAD] == [FIRST, WRONG[0], EnvFault("timeout", "step took longer than 0.5s")] and metrics[BAD] == {}
    for i in set(range(8)) - {BAD}:
        assert trace[i] == good_trace(i) and metrics[i] == good_metrics(i)
    assert env_tally().add(8, kinds(envs)) == {"fault/env_failures": 1.0, "fault/env_failure_rate": 1 / 8,
                                               "fault/env_failures_timeout": 1.0}


@pytest.mark.parametrize("name,culprit", [
    ("hangs_in_step", EnvFault("timeout", "step took longer than 0.5s")),
    ("exits_in_step", EnvFault("crash", "step: worker died (exit code 13)")),
])
def test_a_hung_or_dead_worker_is_replaced_and_its_episodes_crash(name, culprit):
    """Episode 5 hangs (or kills its worker): worker 1 is replaced, so the other episodes it held
    (1, 3, 7) are lost; the episodes of worker 0 play on exactly; the new worker plays the next batch."""
    envs = runner(2, timeout=0.5)
    try:
        trace, metrics = play(envs, batch(name))
        lost = EnvFault("crash", f"lost with its worker process (episode {BAD}: {culprit.detail})")
        assert trace[BAD] == [FIRST, WRONG[0], culprit]
        for i in (1, 3, 7):   # 1 and 3 stepped before 5 in the same call, 7 after: all lost
            assert trace[i] == [FIRST, WRONG[0], lost] and metrics[i] == {}
        for i in (0, 2, 4, 6):
            assert trace[i] == good_trace(i) and metrics[i] == good_metrics(i)
        tally = env_tally()
        assert tally.add(8, kinds(envs)) == {"fault/env_failures": 4.0, "fault/env_failure_rate": 4 / 8,
                                             f"fault/env_failures_{culprit.kind}": 1.0, "fault/env_failures_crash":
                                             4.0 if culprit.kind == "crash" else 3.0}
        trace, metrics = play(envs, batch("good"))
        assert all(trace[i] == good_trace(i) and metrics[i] == good_metrics(i) for i in range(8))
        tally.add(8, kinds(envs))
        assert tally.rate() == 4 / 16
    finally:
        envs.close()


def test_a_worker_lost_in_start_loses_the_envs_it_had_opened():
    """Episode 5's reset hangs: 1 and 3, opened before it in worker 1, are lost; 7, opened after it
    in the new worker, plays on."""
    envs = runner(2, timeout=0.5)
    try:
        trace, metrics = play(envs, batch("hangs_in_reset"))
        culprit = EnvFault("timeout", "factory or reset took longer than 0.5s")
        assert trace[BAD] == [culprit]
        for i in (1, 3):
            assert trace[i] == [EnvFault("crash", f"lost with its worker process (episode {BAD}: {culprit.detail})")]
        for i in (0, 2, 4, 6, 7):
            assert trace[i] == good_trace(i) and metrics[i] == good_metrics(i)
        assert env_tally().add(8, kinds(envs))["fault/env_failure_rate"] == 3 / 8
    finally:
        envs.close()


def test_a_worker_lost_in_finish_is_told_by_the_next_step():
    envs = runner(2, timeout=0.5)
    try:
        opened = envs.start([("good", 3), ("hangs_in_metrics", 1), ("good", 3), ("good", 3)])
        assert opened == [FIRST, "count down from 1", FIRST, FIRST]
        assert envs.step({1: "1"}) == {1: Step(None, 1.0, True)}
        assert envs.finish(1) == {}  # its metrics hang: worker 1 is replaced, episode 3 with it
        lost = EnvFault("crash", "lost with its worker process (episode 1: metrics took longer than 0.5s)")
        assert envs.step({}) == {3: lost}
        assert envs.step({0: "3", 2: "x", 3: "x"}) == {0: RIGHT[0], 2: WRONG[0], 3: lost}  # dead: no call
        assert env_tally().add(4, kinds(envs)) == {"fault/env_failures": 2.0, "fault/env_failure_rate": 2 / 4,
                                                   "fault/env_failures_crash": 1.0, "fault/env_failures_timeout": 1.0}
    finally:
        envs.close()


def test_each_env_is_closed_once_and_a_dead_one_never():
    faulty_envs.CLOSED.clear()
    envs, tally, step = runner(0), env_tally(), Counter()
    play(envs, batch("raises_in_metrics"))  # closed after its metrics raised (and its close raised too)
    step += kinds(envs)
    play(envs, batch("raises_in_step"))     # dead after its step raised: not closed
    step += kinds(envs)
    assert faulty_envs.CLOSED == ["CountDown"] * 5 + ["RaisesInMetrics"] + ["CountDown"] * 9
    assert envs.host.envs == {}             # and none kept alive, the dead one included
    assert tally.add(16, step)["fault/env_failures"] == 2.0
    faulty_envs.CLOSED.clear()
    envs.start(batch("good", size=4))
    envs.step({0: "3", 1: "x"})
    step = kinds(envs)
    envs.start(batch("good", size=2))       # the 4 left open are closed first, no fault recorded
    assert faulty_envs.CLOSED == ["CountDown"] * 4
    envs.close()
    assert faulty_envs.CLOSED == ["CountDown"] * 6
    assert tally.add(6, step + kinds(envs)) == {"fault/env_failures": 0.0, "fault/env_failure_rate": 2 / 22}


def episodes(trace):
    """The batch's Episode records as the sampler makes them: the fault that ended each one, if any."""
    return [Episode(turns=(), ret=0.0, truncated=False, fault=next((o.kind for o in outcomes if isinstance(o, EnvFault)),
                                                                    None)) for _, outcomes in sorted(trace.items())]


def test_the_failure_rate_stops_the_run_past_its_limit_and_survives_a_resume():
    """The trainer's FaultCount over played batches: at the limit the run goes on, past it it stops;
    its state, as a checkpoint stores it, resumes the count."""
    envs, count = runner(0), FaultCount(max_failure_rate=1 / 8)
    try:
        assert count.add(episodes(play(envs, batch("raises_in_step"))[0])) == {
            "fault/env_failures": 1.0, "fault/env_failure_rate": 1 / 8, "fault/env_failures_error": 1.0}
        assert count.stop_reason() is None  # at the limit: goes on
        state = json.loads(json.dumps(count.state_dict()))  # as a checkpoint stores it
        assert state == {"episodes": 8, "faults": {"error": 1}}
        strict = FaultCount(max_failure_rate=0.1)
        strict.load_state_dict(state)
        assert strict.stop_reason() == "env: 1 of 8 episodes faulted (1 error), more than env.max_failure_rate 0.1"
        assert strict.add(episodes(play(envs, batch("good"))[0])) == {"fault/env_failures": 0.0,
                                                                      "fault/env_failure_rate": 1 / 16}
        assert strict.stop_reason() is None
        assert count.add([]) == {}  # a single-answer step: no episodes, no metrics
    finally:
        envs.close()


def test_an_unpicklable_factory_with_workers_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^env\.factory: '<lambda>' cannot be sent") as error:
        EnvRunner(lambda row: faulty_envs.CountDown(3), timeout=1.0, fallback_reward=0.0, workers=1)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def echo_policy():
    return warmed()[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_sampled_episodes_through_the_guard_equal_the_plain_envs(echo_policy, workers):
    """With good envs the guard is invisible: the sampler's episodes (tokens, masks, rewards, turns,
    metrics) are the ones it samples calling the envs directly."""
    policy = echo_policy

    def sample(envs):
        return sample_episodes(policy, ROWS, envs, group_size=3, limits=LIMITS,
                               generator=torch.Generator().manual_seed(1), temperature=1.0)

    plain = sample(PlainEnvs())
    envs = EnvRunner(custom_envs.make_echo_env, timeout=10.0, fallback_reward=-1.0, workers=workers)
    try:
        guarded = sample(envs)
    finally:
        envs.close()
    for name in ("response_ids", "mask", "attended", "logprobs", "token_rewards", "returns", "truncated"):
        assert torch.equal(getattr(guarded, name), getattr(plain, name)), name
    assert (guarded.turns, guarded.faults, guarded.env_metrics) == (plain.turns, plain.faults, plain.env_metrics)
    assert max(len(t) for t in plain.turns) >= 4  # some episodes had several turns
