"""rlvr.faults.FailureTally: the one count of failed reward calls and faulted env episodes. Its
metrics, stop rule and checkpoint are the ones runs had before it (names, messages, state keys)."""

import json
from collections import Counter

import reward_faults as rf
from rlvr.faults import FailureTally
from rlvr.rewards import RewardRunner
from test_rewards import RESPONSES


def test_a_step_adds_its_counts_and_gets_its_metrics():
    tally = FailureTally("env", 0.5)
    assert tally.rate() == 0.0 and tally.stop_reason("{failed}") is None  # no call yet: rate 0
    assert tally.add(8, Counter(error=1, crash=2)) == {
        "fault/env_failures": 3.0, "fault/env_failure_rate": 3 / 8,
        "fault/env_failures_crash": 2.0, "fault/env_failures_error": 1.0}
    assert tally.add(4, Counter()) == {"fault/env_failures": 0.0, "fault/env_failure_rate": 3 / 12}  # run's rate
    assert tally.add(4, Counter(timeout=1)) == {"fault/env_failures": 1.0, "fault/env_failure_rate": 4 / 16,
                                                "fault/env_failures_timeout": 1.0}
    assert (tally.calls, tally.failures, tally.failed) == (16, Counter(error=1, crash=2, timeout=1), 4)


def test_the_stop_comes_past_the_limit_not_at_it():
    message = "{failed} of {calls} ({rate:.0%} > {limit}: {kinds}); {last}"
    tally = FailureTally("reward", 0.25)
    tally.add(4, Counter(type=1))
    assert tally.stop_reason(message, last="x") is None                  # 1/4 = the limit: goes on
    tally.add(4, Counter(type=1, error=1))
    assert tally.stop_reason(message, last="x") == "3 of 8 (38% > 0.25: 1 error, 2 type); x"


def test_the_state_round_trips_under_the_owners_keys():
    env = FailureTally("env", 0.1, keys=("episodes", "faults"))
    env.add(8, Counter(error=1))
    state = json.loads(json.dumps(env.state_dict()))  # as a checkpoint stores it
    assert state == {"episodes": 8, "faults": {"error": 1}}
    resumed = FailureTally("env", 0.1, keys=("episodes", "faults"))
    resumed.load_state_dict(state)
    assert (resumed.calls, resumed.failures, resumed.rate()) == (8, Counter(error=1), 1 / 8)


def test_the_reward_runner_keeps_its_metrics_message_and_checkpoint():
    """rf.mixed on 5 responses: 4 fail (1 error, 2 nonfinite, 1 type), the last one on inf."""
    runner = RewardRunner(rf.mixed, fallback=-7.0, timeout=5.0, max_failure_rate=0.5)
    runner([(1, 2, 3)] * 5, RESPONSES)
    assert runner.stop_reason() is None  # not counted before the step's metrics are popped
    assert runner.pop_metrics() == {
        "fault/reward_failures": 4.0, "fault/reward_failure_rate": 0.8, "fault/reward_failures_error": 1.0,
        "fault/reward_failures_nonfinite": 2.0, "fault/reward_failures_type": 1.0}
    reason = ("the reward function failed on 4 of 5 responses (80% > rewards.max_failure_rate 0.5: 1 error, "
              "2 nonfinite, 1 type); last failure: nonfinite: returned inf")
    assert runner.stop_reason() == reason
    state = json.loads(json.dumps(runner.state_dict()))
    assert state == {"calls": 5, "failures": {"error": 1, "nonfinite": 2, "type": 1},
                     "last_error": "nonfinite: returned inf"}
    resumed = RewardRunner(rf.mixed, max_failure_rate=0.5)
    resumed.load_state_dict(state)
    assert resumed.stop_reason() == reason and resumed.failure_rate() == 0.8
