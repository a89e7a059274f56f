"""rlvr.analysis pinned to numbers worked out by hand (issue 15).

The other analysis tests check properties (exact moments agree with Monte Carlo, the optimal
baseline beats every constant); these pin each formula's value, so that a scale, a weighting or a
sign that is wrong by a plausible one-line edit fails here. Every expected number is derived in the
comment next to it.

1. the notes' two-state example (rewards s1: 11, 9; s2: 0, 2; softmax per state, G = 2): the
   variance table of docs/variance.md, at the uniform policy and at pi(a1 | s) = 0.2;
2. a hand-made problem with a parameter shared by two states of different weight (the pooled and
   per-state optimal baselines differ, and V(s) is not the plain mean of the rewards);
3. the live diagnostics, the per-parameter baseline hook, the enumeration and ``rlvr variance task``'s
   summary, on scripted policies small enough to differentiate by hand.
"""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from rlvr.analysis import param_baseline
from rlvr.analysis import two_state as ts
from rlvr.analysis.diagnostics import ess_fraction, gradient_agreement, half_batch, importance_ess
from rlvr.analysis.enumerate import MAX_RESPONSES, all_responses, policy_problem
from rlvr.analysis.exact import (
    BASELINES,
    FiniteProblem,
    all_groups,
    exact_gradient,
    exact_moments,
    monte_carlo_moments,
    optimal_baseline_vector,
)
from rlvr.analysis.task_variance import summarize
from rlvr.errors import ConfigError, UserError

D = torch.double


def close(got, expected, tol=1e-12):
    got = torch.as_tensor(got, dtype=D)
    return torch.allclose(got, torch.as_tensor(expected, dtype=D), atol=tol, rtol=0)


# ---------------------------------------------------------------------------------------------
# 1. The notes' two-state example
#
# Softmax per state with pi(a1 | s) = p: the score of a1 is (1-p)(1, -1) on (theta[s,a1], theta[s,a2])
# and the score of a2 is -p(1, -1); zero on the other state's two logits. g = 1/S sum_s e_s, where
# e_s is the mean over the G = 2 actions of state s, so Var[g_k] = Var[e_s,k] / S^2 and, for a
# baseline that does not depend on the group, Var[e_s,k] = Var[(R - b) score_k] / G.

UNIFORM = torch.zeros(2, 2, dtype=D)
SKEWED = torch.tensor([[1.0, 4.0], [1.0, 4.0]], dtype=D).log()     # pi(a1 | s) = 0.2 in both states


def table(theta):
    return {row["baseline"]: row for row in ts.variance_table(theta, group_size=2, constant=5.5)}


def test_two_state_reward_table_and_spread():
    # per-state mean under the uniform policy: s1 (11+9)/2 = 10, s2 (0+2)/2 = 1; centered: +-1
    rows = ts.notes_table()
    assert [(r["baseline"], r["centered"]) for r in rows] == [(10.0, 1.0), (10.0, -1.0), (1.0, -1.0), (1.0, 1.0)]
    # raw: mean 5.5, squared deviations 30.25, 12.25, 30.25, 12.25 -> variance 21.25 (docs: "21.2"), range 0..11
    assert ts.spread(ts.REWARDS) == {"min": 0.0, "max": 11.0, "variance": 21.25}
    assert ts.spread(torch.tensor([r["centered"] for r in rows])) == {"min": -1.0, "max": 1.0, "variance": 1.0}


def test_two_state_softmax_scores_by_hand():
    scores = ts.softmax_problem(SKEWED).scores                  # (S, A, P), P = (s1a1, s1a2, s2a1, s2a2)
    expected = [[[0.8, -0.8, 0, 0], [-0.2, 0.2, 0, 0]],         # 1[a = a'] - pi(a' | s) with pi = (0.2, 0.8)
                [[0, 0, 0.8, -0.8], [0, 0, -0.2, 0.2]]]
    assert close(scores, expected)
    assert close(ts.softmax_problem(SKEWED).probs, [[0.2, 0.8], [0.2, 0.8]])


def test_two_state_exact_gradient_and_baselines_by_hand():
    # grad J = 1/S sum_s sum_a pi R score: dV(s)/dtheta[s,a1] = p(1-p)(R1 - R2), halved by 1/S:
    #   uniform: s1 0.25 * 2 / 2 = 0.25, s2 0.25 * -2 / 2 = -0.25;  p = 0.2: 0.16 * (+-2) / 2 = +-0.16
    assert close(exact_gradient(ts.softmax_problem(UNIFORM)), [0.25, -0.25, -0.25, 0.25])
    assert close(exact_gradient(ts.softmax_problem(SKEWED)), [0.16, -0.16, -0.16, 0.16])
    skewed = ts.softmax_problem(SKEWED)
    value = BASELINES.get("value")(skewed, torch.zeros(2, 1, 2, dtype=D), constant=0.0)
    # V(s) = sum_a pi(a|s) R: s1 0.2*11 + 0.8*9 = 9.4; s2 0.8*2 = 1.6 (not the plain means 10 and 1)
    assert close(value.reshape(-1), [9.4, 1.6])
    # b*_k = E[score_k^2 R] / E[score_k^2]: weights pi score^2 = 0.2*0.64 = 0.128 (a1), 0.8*0.04 = 0.032 (a2)
    #   s1: (0.128*11 + 0.032*9) / 0.16 = 10.6;  s2: (0.128*0 + 0.032*2) / 0.16 = 0.4;  uniform: 10 and 1
    assert close(optimal_baseline_vector(skewed), [10.6, 10.6, 0.4, 0.4])
    assert close(optimal_baseline_vector(ts.softmax_problem(UNIFORM)), [10.0, 10.0, 1.0, 1.0])


def test_two_state_variance_table_at_the_uniform_policy():
    """docs/variance.md's trace_cov column: 6.312, 2.531, 0, 0, 0.0625, 0.25 (printed with 4 digits)."""
    rows = table(UNIFORM)
    # none: s1 per-sample R*score_1 = 11*0.5 or 9*(-0.5) -> 5.5 / -4.5, variance 25, /G = 12.5 (both
    #   s1 logits); s2: 0 or 2*(-0.5) = -1, variance 0.25, /G = 0.125 -> tr = (2*12.5 + 2*0.125) / 4 = 6.3125
    # constant 5.5: s1 (R-c) = 5.5, 3.5 -> 2.75 / -1.75, var 5.0625; s2 -5.5, -3.5 -> -2.75 / 1.75, var 5.0625
    #   -> tr = 4 * 5.0625 / 2 / 4 = 2.53125
    # value: R - V = +-1 and (R - V) score is (0.5, -0.5) for both actions of s1: variance 0
    # optimal: b* = (10, 10, 1, 1) = V here: 0
    # group-mean: s1's group (a1, a2) or (a2, a1) (prob 1/2) gives (0.5, -0.5), an equal group gives 0:
    #   var 0.25 * 0.25 = 0.0625 per logit -> tr = 4 * 0.0625 / 4; mean (0.125, ...) = grad J / 2:
    #   bias |grad J / 2| = 0.25, <E g, grad J> / |grad J|^2 = 0.5
    # rloo: a mixed group gives (11 - 9) * 0.5 = 1 per logit (prob 1/2): var 0.25 -> tr = 4 * 0.25 / 4 = 0.25
    expected = {"none": 6.3125, "constant": 2.53125, "value": 0.0, "optimal": 0.0, "group-mean": 0.0625, "rloo": 0.25}
    printed = {"none": "6.312", "constant": "2.531", "value": "0", "optimal": "0", "group-mean": "0.0625", "rloo": "0.25"}
    for name, trace in expected.items():
        assert rows[name]["trace_cov"] == pytest.approx(trace, abs=1e-12), name
        assert f"{rows[name]['trace_cov'] + 0.0:.4g}" == printed[name] or abs(rows[name]["trace_cov"]) < 1e-20
    for name in ("none", "constant", "value", "optimal", "rloo"):
        assert rows[name]["bias_norm"] == pytest.approx(0.0, abs=1e-12)
        assert rows[name]["mean_over_true"] == pytest.approx(1.0, abs=1e-12)
    assert rows["group-mean"]["bias_norm"] == pytest.approx(0.25, abs=1e-12)
    assert rows["group-mean"]["mean_over_true"] == pytest.approx(0.5, abs=1e-12)


def test_two_state_variance_table_at_pi_a1_0_2():
    """docs/variance.md's trace_cov_at_0.2 column: 4.501, 2.081, 0.1152, ~0, 0.0544, 0.2176."""
    rows = table(SKEWED)
    # Two outcomes x (prob 0.2), y (prob 0.8) have variance 0.16 (x - y)^2.
    # none: s1 11*0.8 = 8.8 vs 9*(-0.2) = -1.8 -> 0.16 * 10.6^2 = 17.9776; s2 0 vs 2*(-0.2) -> 0.16*0.16
    #   -> tr = 2 * (17.9776 + 0.0256) / 2 / 4 = 4.5008
    # constant: s1 5.5*0.8 = 4.4 vs 3.5*(-0.2) = -0.7; s2 -4.4 vs 0.7: 0.16 * 5.1^2 = 4.1616 -> 2*2*4.1616/2/4 = 2.0808
    # value (9.4, 1.6): s1 1.6*0.8 = 1.28 vs -0.4*(-0.2) = 0.08; s2 -1.28 vs -0.08: 0.16 * 1.2^2 = 0.2304
    #   -> 4 * 0.2304 / 2 / 4 = 0.1152  (the plain means 10, 1 would give 0.8 vs 0.2: 0.0288)
    # group-mean: a mixed group (prob 0.32) gives +-0.5 per logit: 0.25 * 0.32 * 0.68 = 0.0544 -> 4*0.0544/4
    # rloo: a mixed group gives 1 per logit: 0.32 * 0.68 = 0.2176 -> 4 * 0.2176 / 4
    expected = {"none": 4.5008, "constant": 2.0808, "value": 0.1152, "optimal": 0.0, "group-mean": 0.0544,
                "rloo": 0.2176}
    for name, trace in expected.items():
        assert rows[name]["trace_cov"] == pytest.approx(trace, abs=1e-12), name
    assert rows["group-mean"]["mean_over_true"] == pytest.approx(0.5, abs=1e-12)
    assert rows["group-mean"]["bias_norm"] == pytest.approx(0.5 * math.sqrt(4 * 0.16**2), abs=1e-12)


def test_two_state_per_parameter_moments_without_baseline():
    m = exact_moments(ts.softmax_problem(UNIFORM), "none", group_size=2)
    # Var[g_k] = Var[e_s,k] / S^2 = (12.5, 12.5, 0.125, 0.125) / 4 (not / S: that would double it)
    assert close(m.variance, [3.125, 3.125, 0.03125, 0.03125])
    assert close(m.mean, [0.25, -0.25, -0.25, 0.25])
    assert m.trace == pytest.approx(6.3125, abs=1e-12)
    one = exact_moments(ts.softmax_problem(UNIFORM), "none", group_size=1)
    assert one.trace == pytest.approx(2 * 6.3125, abs=1e-12)   # G = 1: the per-sample variance, twice G = 2's


def test_two_state_sweep_passes_through_the_table():
    sweep = ts.variance_sweep(ts.TrainSetup(), points=49)    # p = 0.02, 0.04, ..., 0.98
    assert close(sweep["p"][9], 0.2, 1e-12) and close(sweep["p"][24], 0.5, 1e-12)
    assert sweep["traces"]["none"][9] == pytest.approx(4.5008, abs=1e-9)
    assert sweep["traces"]["none"][24] == pytest.approx(6.3125, abs=1e-9)
    assert sweep["traces"]["value"][9] == pytest.approx(0.1152, abs=1e-9)


def test_two_state_step_direction_by_hand():
    # theta = 0; s1 draws (a1, a2): 1/2 [11 (0.5, -0.5) + 9 (-0.5, 0.5)] = (0.5, -0.5)
    #            s2 draws (a2, a2): 1/2 [2 (-0.5, 0.5) + 2 (-0.5, 0.5)] = (-1, 1); g = mean over the 2 states
    direction = ts.step_direction("none", 0.0)
    groups = torch.tensor([[[[0, 1]], [[1, 1]]]])             # (K=1, S, 1, G)
    got = direction(torch.zeros(1, 2, 2, dtype=D), groups)
    assert close(got, [[[0.25, -0.25], [-0.5, 0.5]]])
    # constant 5.5: s1 1/2 [5.5 (0.5, -0.5) + 3.5 (-0.5, 0.5)] = (0.5, -0.5); s2 (-3.5)(-0.5, 0.5) = (1.75, -1.75)
    got = ts.step_direction("constant", 5.5)(torch.zeros(1, 2, 2, dtype=D), groups)
    assert close(got, [[[0.25, -0.25], [0.875, -0.875]]])


def test_two_state_optimal_probs_and_outcome():
    theta = torch.tensor([[[math.log(3), 0.0], [0.0, math.log(4)]]], dtype=D)
    assert close(ts.optimal_probs(theta), [[0.75, 0.8]])      # pi(a1 | s1) = 3/4, pi(a2 | s2) = 4/5
    final = torch.tensor([[0.95, 0.95], [0.95, 0.95], [0.05, 0.95], [0.05, 0.5], [0.95, 0.05]], dtype=D)
    history = torch.stack([torch.full_like(final, 0.5), final])
    # converged: rows 0, 1 (2/5); s1 below 0.1: rows 2, 3 (2/5); s2 below 0.1: row 4 (1/5)
    assert ts.outcome(history, 0.9) == pytest.approx({"converged": 0.4, "s1_stuck_on_a2": 0.4, "s2_stuck_on_a1": 0.2})


def gap_recurrence(gap0, lr, steps):
    """With b* the estimate has no variance in the two-action softmax (both actions give
    p(1-p)(R1 - R2) on theta[s, a1]), so training is gradient ascent: the logit gap of a state moves by
    lr * 2 * p(1-p)(R1 - R2) / S per step. Returns pi(optimal action | s) per step, plain Python."""
    out, gaps = [], [gap0, gap0]
    for step in range(steps + 1):
        p = [1 / (1 + math.exp(-g)) for g in gaps]
        out.append([p[0], 1 - p[1]])
        if step < steps:
            gaps = [gaps[0] + lr * 2 * p[0] * (1 - p[0]) * (11 - 9) / 2,
                    gaps[1] + lr * 2 * p[1] * (1 - p[1]) * (0 - 2) / 2]
    return out


def test_two_state_training_with_the_optimal_baseline_is_exact_gradient_ascent():
    """The same for every seed (no variance), so pinned to the recurrence above."""
    setup = ts.TrainSetup(lr=0.5, steps=15, seeds=3, init_logit_gap=math.log(4))   # pi(a1 | s) = 0.8 at start
    history = ts.train_runs("optimal", setup)
    expected = gap_recurrence(math.log(4), 0.5, 15)
    assert close(history[0], [[0.8, 0.2]] * 3, 1e-12)
    for seed in range(3):
        assert close(history[:, seed], expected, 1e-9)


def test_two_state_training_study_curve_for_the_optimal_baseline():
    setup = ts.TrainSetup(lr=2.0, steps=8, seeds=2, init_logit_gap=math.log(4))
    rows, curves = ts.training_study(setup)
    expected = gap_recurrence(math.log(4), 2.0, 8)
    both = [float(min(p) > 0.9) for p in expected]             # converged: both states past 0.9 (step 5)
    assert 0 < both.index(1.0) < 8 and expected[0][0] < 0.9 < max(expected[both.index(1.0) - 1])  # s1 first
    assert curves["converged"]["optimal"] == both
    assert curves["steps"] == list(range(9))
    optimal = next(r for r in rows if r["baseline"] == "optimal")
    assert optimal == {"baseline": "optimal", "converged": 1.0, "s1_stuck_on_a2": 0.0, "s2_stuck_on_a1": 0.0}


# ---------------------------------------------------------------------------------------------
# 2. A parameter shared by two states
#
#   probs   s1 (1/2, 1/2)   s2 (1/4, 3/4)
#   rewards s1 (1, 0)       s2 (0, 4)
#   score_0 s1 (1, -1)      s2 (3, -1)      (mean zero in each state: 1/4 * 3 - 3/4 * 1 = 0)
#   score_1 s1 (2, -2)      s2 (0, 0)       (a parameter only s1 moves)
#   score_2 always 0
# Weights pi score_0^2: s1 1/2, 1/2; s2 9/4, 3/4.  pi score_1^2: s1 2, 2.

SHARED = FiniteProblem(probs=torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=D),
                       rewards=torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=D),
                       scores=torch.tensor([[[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]],
                                            [[3.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]], dtype=D))


def test_optimal_baseline_pooled_and_per_state_by_hand():
    # pooled b*_0 = (1/2 * 1 + 3/4 * 4) / (1/2 + 1/2 + 9/4 + 3/4) = 3.5 / 4 = 0.875
    # pooled b*_1 = (2 * 1) / (2 + 2) = 0.5 (s2 has no weight); b*_2 = 0 (no weight anywhere)
    assert close(optimal_baseline_vector(SHARED), [0.875, 0.5, 0.0])
    # per state: s1 b*_0 = 0.5 / 1 = 0.5, b*_1 = 2 / 4 = 0.5;  s2 b*_0 = 3 / 3 = 1, b*_1 = 0 (no weight)
    assert close(optimal_baseline_vector(SHARED, per_state=True), [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])


def test_shared_parameter_exact_gradient():
    # 1/S sum_s sum_a pi R score: score_0: (1/2 * 1 * 1 + 3/4 * 4 * (-1)) / 2 = -1.25; score_1: (1/2 * 1 * 2) / 2
    assert close(exact_gradient(SHARED), [-1.25, 0.5, 0.0])


# Var[g_0] with G = 1: Var[(R - b) score_0 | s1] + Var[... | s2], over S^2 = 4 (two outcomes x, y with
# probabilities q, 1-q: variance q (1-q) (x - y)^2).  Var[g_1] only from s1.
#   none        s1: 1 vs 0 -> 1/4;  s2: 0 vs -4 -> 3/16 * 16 = 3          -> 3.25 / 4 = 0.8125
#               g_1: s1 2 vs 0 -> 1                                        -> 1 / 4 = 0.25
#   constant 1  s1: 0 vs 1 -> 1/4;  s2: -3 vs -3 -> 0                      -> 0.0625; g_1: 0 vs 2 -> 1/4
#   value       V = (0.5, 3): s1 0.5 vs 0.5 -> 0; s2 -9 vs -1 -> 3/16*64 = 12 -> 3  (plain means 0.5, 2:
#               -6 vs -2 -> 3/16*16 = 3 -> 0.75);  g_1: 1 vs 1 -> 0
#   optimal     b* = (0.875, 0.5): s1 0.125 vs 0.875 -> 1/4 * 0.5625; s2 -2.625 vs -3.125 -> 3/16 * 0.25
#               -> (0.140625 + 0.046875) / 4 = 0.046875;  g_1: 1 vs 1 -> 0
#   optimal-per-state  (0.5, 1): s1 0.5 vs 0.5, s2 -3 vs -3 -> 0
G1_VARIANCES = {"none": [0.8125, 0.25, 0.0], ("constant", 1.0): [0.0625, 0.25, 0.0], "value": [3.0, 0.0, 0.0],
                "optimal": [0.046875, 0.0, 0.0], "optimal-per-state": [0.0, 0.0, 0.0]}


@pytest.mark.parametrize("baseline", list(G1_VARIANCES))
def test_shared_parameter_variance_with_one_action_per_state(baseline):
    name, constant = baseline if isinstance(baseline, tuple) else (baseline, 0.0)
    m = exact_moments(SHARED, name, group_size=1, constant=constant)
    assert close(m.variance, G1_VARIANCES[baseline])
    assert close(m.mean, [-1.25, 0.5, 0.0])                                  # unbiased
    two = exact_moments(SHARED, name, group_size=2, constant=constant)     # G = 2 halves the variance
    assert close(two.variance, [v / 2 for v in G1_VARIANCES[baseline]])
    assert close(two.mean, [-1.25, 0.5, 0.0])


def test_shared_parameter_group_baselines_by_hand():
    # G = 2. group-mean: s1 mixed group (prob 1/2), b = 0.5: a1 0.5 * 1, a2 -0.5 * -1 -> e = 0.5, else 0:
    #   mean 0.25, var 1/16;  s2 mixed (prob 3/8), b = 2: a1 -2 * 3 = -6, a2 2 * -1 = -2 -> e = -4:
    #   mean -1.5, var 16 * 3/8 * 5/8 = 3.75.  g_0: mean (0.25 - 1.5) / 2 = -0.625 = grad / 2, var 3.8125 / 4
    #   g_1: s1 mixed: a1 0.5 * 2, a2 -0.5 * -2 -> e = 1 (prob 1/2): mean 0.5, var 0.25 -> (0.25, 0.0625)
    m = exact_moments(SHARED, "group-mean", group_size=2)
    assert close(m.mean, [-0.625, 0.25, 0.0])
    assert close(m.variance, [0.953125, 0.0625, 0.0])
    # rloo: s1 mixed: a1 (1 - 0) * 1, a2 (0 - 1) * -1 -> e = 1: mean 0.5, var 1/4;
    #   s2 mixed: a1 (0 - 4) * 3 = -12, a2 (4 - 0) * -1 = -4 -> e = -8: mean -3, var 64 * 15/64 = 15
    #   g_0 var (0.25 + 15) / 4;  g_1: s1 mixed e = 2 (prob 1/2): var 1 -> 0.25
    m = exact_moments(SHARED, "rloo", group_size=2)
    assert close(m.mean, [-1.25, 0.5, 0.0])
    assert close(m.variance, [3.8125, 0.25, 0.0])
    with pytest.raises(UserError, match="rloo"):
        exact_moments(SHARED, "rloo", group_size=1)


def test_all_groups_are_every_ordered_group():
    assert all_groups(2, 2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert all_groups(3, 2).shape == (9, 2) and all_groups(2, 3).shape == (8, 3)


def test_monte_carlo_moments_are_exact_when_every_draw_gives_the_same_estimate():
    """With the value baseline at the uniform two-state policy every action gives the same
    (R - V) score (section 1), so for any seed the sampled mean is grad J and the variance 0."""
    for seed in range(3):
        mc = monte_carlo_moments(ts.softmax_problem(UNIFORM), "value", group_size=2, num_groups=5,
                                 generator=torch.Generator().manual_seed(seed))
        assert close(mc.mean, [0.25, -0.25, -0.25, 0.25])
        assert close(mc.variance, [0.0] * 4)


# ---------------------------------------------------------------------------------------------
# 3. Diagnostics on a scripted linear policy: loss = -sum_n adv_n x_n . theta (or mask_n instead of
# adv_n), so the half-batch gradients are h = -sum_{n in half} x_n and everything is by hand.

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [2.0, 1.0]], dtype=D)   # (N, P)


@dataclasses.dataclass
class FakeRollouts:
    mask: torch.Tensor
    response_ids: torch.Tensor = None
    prompts: list = None
    group_size: int = 2
    prompt_ids: torch.Tensor = None
    logprobs: torch.Tensor = None

    @property
    def context_mask(self) -> torch.Tensor:  # single answers: the tokens read are the tokens trained on
        return self.mask


@dataclasses.dataclass
class FakeBatch:
    rollouts: FakeRollouts
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor = None


class Linear(torch.nn.Module):
    def __init__(self, size=2):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(size, dtype=D))


def no_correction(policy, batch, loss_of):
    return {}


def linear_batch():
    return FakeBatch(rollouts=FakeRollouts(mask=torch.ones(4, 1, dtype=D)), advantages=torch.ones(4, 1, dtype=D))


def test_half_batch_keeps_even_then_odd_responses():
    half = half_batch(linear_batch(), 1)
    assert half.rollouts.mask.reshape(-1).tolist() == [0, 1, 0, 1]
    assert half.advantages.reshape(-1).tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("reads", ["advantages", "mask"])
def test_gradient_agreement_by_hand(reads):
    """h1 = -(x0 + x2) = -(1, 2), h2 = -(x1 + x3) = -(2, 2): h1 . h2 = 6, |h1 - h2|^2 = 1,
    cos = 6 / (sqrt 5 sqrt 8), noise scale = N |h1 - h2|^2 / (4 h1 . h2) = 4 * 1 / 24 = 1/6.
    (Halves 0,1 | 2,3 would give 1.0 instead; the loss reads only the advantages, or only the mask.)"""
    policy = Linear()

    def loss_of(batch):
        weights = (batch.advantages if reads == "advantages" else batch.rollouts.mask).sum(-1)    # (N,)
        return -(weights @ X) @ policy.theta

    out = gradient_agreement(policy, linear_batch(), loss_of, no_correction)
    assert out["diag/grad_cos_halves"] == pytest.approx(6 / math.sqrt(40), abs=1e-12)
    assert out["diag/grad_noise_scale"] == pytest.approx(1 / 6, abs=1e-12)
    assert policy.theta.grad is None                                       # leaves .grad cleared


def test_gradient_agreement_applies_the_correction_and_nulls_an_unresolved_signal():
    policy = Linear()

    def loss_of(batch):
        return -(batch.advantages.sum(-1) @ X) @ policy.theta

    def shift(policy, batch, loss_of):      # a gradient correction: add (1, 0) to every gradient
        policy.theta.grad.add_(torch.tensor([1.0, 0.0], dtype=D))

    # h1 = (0, -2), h2 = (-1, -2): h1 . h2 = 4, |h1 - h2|^2 = 1 -> 4 * (1/4) / 4 = 1/4; cos 4 / (2 sqrt 5)
    out = gradient_agreement(policy, linear_batch(), loss_of, shift)
    assert out["diag/grad_noise_scale"] == pytest.approx(1 / 4, abs=1e-12)
    assert out["diag/grad_cos_halves"] == pytest.approx(2 / math.sqrt(5), abs=1e-12)

    def flip(policy, batch, loss_of):       # h1 = -(1, 2), h2 = +(2, 2) after this: h1 . h2 = -6 < 0
        if batch.advantages[1, 0] > 0:
            policy.theta.grad.neg_()

    out = gradient_agreement(policy, linear_batch(), loss_of, flip)
    assert out["diag/grad_noise_scale"] is None
    assert out["diag/grad_cos_halves"] == pytest.approx(-6 / math.sqrt(40), abs=1e-12)
    single = FakeBatch(rollouts=FakeRollouts(mask=torch.ones(1, 1, dtype=D)), advantages=torch.ones(1, 1, dtype=D))
    assert gradient_agreement(policy, single, loss_of, no_correction) == {}


def test_ess_fraction_by_hand():
    # w = (1, 2, 3, 4): (sum w)^2 / (N sum w^2) = 100 / (4 * 30)
    assert float(ess_fraction(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=D).log())) == pytest.approx(100 / 120, abs=1e-12)
    # w = (2, 1, 1): 16 / (3 * 6) = 8/9; shifted by 1000 in log space (overflows without the max shift)
    assert float(ess_fraction(torch.tensor([1000 + math.log(2), 1000.0, 1000.0], dtype=D))) == pytest.approx(8 / 9, abs=1e-12)


class ScriptedLogprobs:
    """policy.logprobs returns fixed per-token log-probs (N, T); records the temperature it got."""

    def __init__(self, logp):
        self.logp, self.temperatures = logp, []

    def logprobs(self, prompt_ids, response_ids, mask, *, group_size, temperature=1.0):
        self.temperatures.append(temperature)
        return self.logp, torch.zeros_like(self.logp)


def test_importance_ess_uses_sequence_ratios_of_the_real_tokens():
    # per-token log pi_theta - log pi_old: response 0: 0 + ln 2, response 1: 0 + 0, response 2: 0 and a
    # padded token whose garbage (50) must not count. Sequence ratios w = (2, 1, 1): 8/9 (old/new: 25/27).
    old = torch.zeros(3, 2, dtype=D)
    new = torch.tensor([[0.0, math.log(2)], [0.0, 0.0], [0.0, 50.0]], dtype=D)
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]], dtype=D)
    policy = ScriptedLogprobs(new)
    batch = FakeBatch(rollouts=FakeRollouts(mask=mask, logprobs=old, group_size=3), advantages=mask)
    out = importance_ess(policy, batch, temperature=0.7)
    assert out["diag/ratio_ess_frac"] == pytest.approx(8 / 9, abs=1e-12)
    assert policy.temperatures == [0.7]


# ---------------------------------------------------------------------------------------------
# The per-parameter baseline hook, on the linear policy, with the enumeration replaced by SHARED
# (restricted to its first two parameters): b* pooled = (0.875, 0.5), per prompt ((0.5, 0.5), (1, 0)).

class TwoParams(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(1, dtype=D))
        self.b = torch.nn.Parameter(torch.zeros(1, dtype=D))

    def theta(self):
        return torch.cat([self.a, self.b])


HOOK_X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], dtype=D)   # d log pi(y_n) per param
HOOK_R = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=D)                               # raw rewards, 2 prompts x G=2


def hook_setup(monkeypatch, name):
    calls = []

    def fake_problem(policy, task, prompts, *, temperature):
        calls.append(temperature)
        return FiniteProblem(probs=SHARED.probs, rewards=SHARED.rewards, scores=SHARED.scores[..., :2])

    monkeypatch.setattr(param_baseline, "policy_problem", fake_problem)
    cfg = SimpleNamespace(algo=SimpleNamespace(deltas="raw", param_baseline=name), train=SimpleNamespace(temperature=0.9))
    hook = param_baseline.PARAM_BASELINES.get(name)(cfg, SimpleNamespace(vocab_size=2, response_length=1))
    policy = TwoParams()
    rollouts = FakeRollouts(mask=torch.ones(4, 1, dtype=D), response_ids=torch.zeros(4, 1, dtype=torch.long),
                            prompts=[(0,), (1,)], group_size=2)
    batch = FakeBatch(rollouts=rollouts, advantages=HOOK_R.reshape(4, 1))

    def loss_of(b):      # the naive loss: -1/N sum_n adv_n log pi(y_n), with d log pi(y_n) = HOOK_X[n]
        return -(b.advantages.sum(-1) @ HOOK_X) @ policy.theta() / 4

    return hook, policy, batch, loss_of, calls


@pytest.mark.parametrize(("name", "expected", "mean_b"), [
    # pooled b = (0.875, 0.5): -1/4 sum_n (R_n - b) * x_n
    #   n0 (0.125, .) * (1, 0); n1 (., -0.5) * (0, 1); n2 (1.125, .) * (2, 0); n3 (., 0.5) * (0, 3)
    #   = -(0.125 + 2.25, -0.5 + 1.5) / 4 = (-0.59375, -0.25); mean b = 0.6875
    ("optimal-exact", [-0.59375, -0.25], 0.6875),
    # per prompt: n0, n1 use (0.5, 0.5), n2, n3 use (1, 0):
    #   -(0.5 + 2, -0.5 + 3) / 4 = (-0.625, -0.625); mean b = (0.5 + 0.5 + 1 + 0) / 4 = 0.5
    ("optimal-exact-per-prompt", [-0.625, -0.625], 0.5),
])
def test_param_baseline_hook_by_hand(monkeypatch, name, expected, mean_b):
    hook, policy, batch, loss_of, calls = hook_setup(monkeypatch, name)
    loss_of(batch).backward()
    metrics = hook(policy, batch, loss_of)
    assert close(torch.cat([policy.a.grad, policy.b.grad]), expected)
    assert metrics == {"algo/param_baseline_mean": pytest.approx(mean_b, abs=1e-12)}
    assert calls == [0.9]                                  # b at the sampling temperature
    policy.zero_grad()
    loss_of(batch).backward()
    hook(policy, batch, loss_of)                           # the same rollouts: b is reused, not recomputed
    assert calls == [0.9]
    assert close(torch.cat([policy.a.grad, policy.b.grad]), expected)
    batch.rollouts.response_ids = torch.ones(4, 1, dtype=torch.long)
    hook(policy, batch, loss_of)                           # new rollouts: b recomputed
    assert calls == [0.9, 0.9]


def test_param_baseline_refuses_non_raw_deltas():
    cfg = SimpleNamespace(algo=SimpleNamespace(deltas="centered", param_baseline="optimal-exact"),
                          train=SimpleNamespace(temperature=1.0))
    with pytest.raises(ConfigError, match="raw"):
        param_baseline.build_param_baseline(cfg, SimpleNamespace(vocab_size=2, response_length=1))


# ---------------------------------------------------------------------------------------------
# The enumeration, on a scripted policy: logits[t] = theta[prompt[0]] / temperature at each of T = 2
# positions, V = 2, so log pi(y | prompt) = sum_t log softmax(theta[prompt[0]] / temp)[y_t] and the
# score is d/dtheta[prompt[0]] = sum_t (onehot(y_t) - pi) / temp.

class PerPromptSoftmax(torch.nn.Module):
    response_length, vocab_size = 2, 2

    def __init__(self, theta):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=D))       # (prompts, V)

    def encode_prompts(self, prompts):  # token prompts, as rlvr's Policy encodes them
        return torch.tensor([list(p) for p in prompts], dtype=torch.long)

    def logprobs(self, prompt_ids, response_ids, mask, *, group_size, temperature=1.0):
        logits = self.theta[prompt_ids[:, 0]] / temperature                  # (S, V)
        logp = torch.log_softmax(logits, -1).repeat_interleave(group_size, 0)  # (S*A, V)
        return logp.gather(1, response_ids), torch.zeros(response_ids.shape, dtype=D)


class SumTask:
    vocab_size, response_length = 2, 2

    def reward(self, prompt, response):
        return 10.0 * prompt[0] + sum(response)


def test_policy_problem_by_hand():
    # prompt (0,): theta (0, 0) -> uniform; prompt (1,): theta (ln 9, 0) at temperature 2 -> logits (ln 3, 0),
    # pi = (3/4, 1/4). Responses 00, 01, 10, 11.
    policy = PerPromptSoftmax([[0.0, 0.0], [math.log(9), 0.0]])
    problem = policy_problem(policy, SumTask(), [(0,), (1,)], temperature=2.0)
    assert close(problem.probs, [[0.25] * 4, [9 / 16, 3 / 16, 3 / 16, 1 / 16]])
    assert close(problem.rewards, [[0, 1, 1, 2], [10, 11, 11, 12]])
    # scores on (theta[0,0], theta[0,1], theta[1,0], theta[1,1]), each / temperature 2:
    #   prompt 0: 00 -> 2 (1/2, -1/2) / 2 = (0.5, -0.5); 01, 10 -> 0; 11 -> (-0.5, 0.5)
    #   prompt 1: 00 -> 2 (1/4, -1/4) / 2 = (0.25, -0.25); 01, 10 -> ((1/4 - 3/4), ...) / 2 = (-0.25, 0.25);
    #             11 -> 2 (-3/4, 3/4) / 2 = (-0.75, 0.75)
    expected = [[[0.5, -0.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [-0.5, 0.5, 0, 0]],
                [[0, 0, 0.25, -0.25], [0, 0, -0.25, 0.25], [0, 0, -0.25, 0.25], [0, 0, -0.75, 0.75]]]
    assert close(problem.scores, expected)


def test_all_responses_limit():
    assert all_responses(SimpleNamespace(vocab_size=2, response_length=2)).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert MAX_RESPONSES == 4096
    assert all_responses(SimpleNamespace(vocab_size=8, response_length=4)).shape == (4096, 4)   # exactly the limit
    with pytest.raises(ConfigError, match="4097|too many"):
        all_responses(SimpleNamespace(vocab_size=4097, response_length=1))


# ---------------------------------------------------------------------------------------------
# ``rlvr variance task``'s summary row

def test_task_variance_summary_by_hand():
    # draws (1, 0), (0, 1): mean (0.5, 0.5); unbiased variance per component (0.5^2 * 2) / 1 = 0.5 -> tr 1
    # cos of each draw to the mean: 1/sqrt 2.  exact (2, 0): cos(mean, exact) = 1 / (sqrt(0.5) * 2) = 1/sqrt 2;
    # |mean| / |exact| = sqrt(0.5) / 2; |mean - exact| / |exact| = |(-1.5, 0.5)| / 2 = sqrt(2.5) / 2;
    # MC noise sqrt(tr / R) / |exact| = sqrt(0.5) / 2
    draws = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D)
    row = summarize(draws, torch.tensor([2.0, 0.0], dtype=D))
    assert row == pytest.approx({"trace_cov": 1.0, "cos_batch_full": 1 / math.sqrt(2), "cos_mean_exact": 1 / math.sqrt(2),
                                 "norm_ratio": math.sqrt(0.5) / 2, "rel_bias": math.sqrt(2.5) / 2,
                                 "rel_mc_noise": math.sqrt(0.5) / 2}, abs=1e-12)
    assert summarize(draws, None)["rel_bias"] is None


def test_task_variance_estimate_is_the_ascent_direction_of_each_delta_mode():
    """``estimate`` on fixed rollouts of the toy policy: 1/N sum_n delta_n score(y_n) (the ascent
    direction), with the scores from the enumeration; raw, centered (R - group mean) and the
    per-parameter optimal baseline (R - b*_k)."""
    from rlvr.analysis.task_variance import estimate
    from rlvr.config import load_config
    from rlvr.policies import build_policy
    from rlvr.rollout import Rollouts
    from rlvr.tasks import build_task

    cfg = load_config(None, {"task.length": 2, "task.vocab_size": 3, "task.prompts": "[[2,0],[1,1]]",
                             "policy.embedding_dim": 4, "algo.deltas": "raw", "train.group_size": 3,
                             "train.prompts_per_step": 2})
    torch.manual_seed(0)
    task = build_task(cfg.task)
    policy = build_policy(cfg.policy, task).double()
    prompts = [(2, 0), (1, 1)]
    responses = [[0, 2], [1, 0], [0, 2], [1, 1], [2, 1], [1, 1]]             # (N, T), prompt n // 3
    rewards = torch.tensor([[task.reward(prompts[n // 3], responses[n]) for n in range(s * 3, s * 3 + 3)]
                            for s in range(2)])
    rollouts = Rollouts(prompts=prompts, prompt_ids=torch.tensor(prompts), response_ids=torch.tensor(responses),
                        mask=torch.ones(6, 2), logprobs=torch.zeros(6, 2), rewards=rewards, group_size=3)
    problem = policy_problem(policy, task, prompts)
    index = [r[0] * 3 + r[1] for r in responses]                            # all_responses order
    scores = torch.stack([problem.scores[n // 3, index[n]] for n in range(6)])   # (N, P)
    flat_r = rewards.reshape(-1).double()
    b_star = optimal_baseline_vector(problem)
    expected = {"raw": flat_r.unsqueeze(1) * scores,
                "centered": (rewards - rewards.mean(1, keepdim=True)).reshape(-1, 1).double() * scores,
                "optimal-exact": (flat_r.unsqueeze(1) - b_star) * scores}
    assert rewards.std() > 0
    for mode, terms in expected.items():
        got = estimate(policy, rollouts, cfg, mode, task)
        assert torch.allclose(got, terms.mean(0), atol=1e-9), mode
