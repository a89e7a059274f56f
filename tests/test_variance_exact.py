"""The exact variance machinery of rlvr.analysis, checked against Monte Carlo and against theory.

Random finite problems (states x actions with arbitrary scores) and the real toy policy by
enumeration: the exact moments agree with sampled ones; the notes' per-parameter optimal baseline
has the smallest variance among constant baselines; every valid baseline leaves E[g] at grad J
(group mean: (G-1)/G of it); a baseline that uses the sampled action's own reward does not.
"""

import pytest
import torch

from rlvr.analysis.enumerate import policy_problem
from rlvr.analysis.exact import (
    FiniteProblem,
    exact_gradient,
    exact_moments,
    monte_carlo_moments,
    optimal_baseline_vector,
)
from rlvr.analysis.two_state import REWARDS, TrainSetup, outcome, softmax_problem, train_runs
from rlvr.config import load_config
from rlvr.policies import build_policy
from rlvr.tasks import build_task

UNBIASED = ["none", "constant", "value", "optimal", "optimal-per-state", "rloo"]


def random_problem(seed, states=2, actions=3, params=4):
    """A softmax policy whose scores are a random linear map of the logits' scores (shared params)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(states, actions, generator=g, dtype=torch.double)
    features = torch.randn(states, actions, params, generator=g, dtype=torch.double)
    probs = torch.softmax(logits, -1)
    # logits = features @ theta: score(a) = phi(a) - sum_a' pi(a') phi(a')
    scores = features - (probs.unsqueeze(-1) * features).sum(1, keepdim=True)
    rewards = torch.rand(states, actions, generator=g, dtype=torch.double) * 10
    return FiniteProblem(probs=probs, rewards=rewards, scores=scores)


@pytest.mark.parametrize("baseline", ["none", "value", "optimal", "group-mean", "rloo"])
def test_exact_moments_agree_with_monte_carlo(baseline):
    problem = random_problem(0)
    exact = exact_moments(problem, baseline, group_size=3)
    mc = monte_carlo_moments(problem, baseline, group_size=3, num_groups=200_000,
                             generator=torch.Generator().manual_seed(1))
    assert exact.trace > 1e-3
    assert mc.trace == pytest.approx(exact.trace, rel=0.03)
    assert torch.allclose(mc.variance, exact.variance, rtol=0.06, atol=1e-3)
    assert torch.allclose(mc.mean, exact.mean, atol=0.03 * exact.mean.norm())


@pytest.mark.parametrize("seed", range(6))
def test_optimal_baseline_beats_every_constant_baseline(seed):
    """b*_k minimises each parameter's variance: no scalar constant, nor a perturbed b*, does better."""
    problem = random_problem(seed, states=3, actions=4, params=5)
    best = exact_moments(problem, "optimal", group_size=2)
    b_star = optimal_baseline_vector(problem)
    for c in torch.linspace(-5, 15, 21).tolist() + b_star.tolist():
        other = exact_moments(problem, "constant", group_size=2, constant=c)
        assert (best.variance <= other.variance + 1e-10).all()
    per_state = exact_moments(problem, "optimal-per-state", group_size=2)
    value = exact_moments(problem, "value", group_size=2)
    assert (per_state.variance <= best.variance + 1e-10).all() and (per_state.variance <= value.variance + 1e-10).all()
    for scale in (0.9, 1.1):
        perturbed = exact_moments(problem, lambda p, r, constant, scale=scale: (b_star * scale).reshape(1, 1, 1, -1), group_size=2)
        assert perturbed.trace > best.trace


@pytest.mark.parametrize("seed", range(3))
def test_every_baseline_leaves_the_expected_gradient_unchanged(seed):
    problem = random_problem(seed)
    true_grad = exact_gradient(problem)
    assert true_grad.norm() > 1e-3
    for baseline in UNBIASED:
        mean = exact_moments(problem, baseline, group_size=3, constant=4.0).mean
        assert torch.allclose(mean, true_grad, atol=1e-12), baseline
    group_mean = exact_moments(problem, "group-mean", group_size=3).mean
    assert torch.allclose(group_mean, true_grad * 2 / 3, atol=1e-12)


def test_a_baseline_that_depends_on_the_action_biases_the_gradient():
    """b = R(s, a_i) / 2, the sampled action's own reward: halves the gradient here; b = R(s, a_i)
    zeroes it. Neither is a baseline the notes allow."""
    problem = random_problem(0)
    true_grad = exact_gradient(problem)
    own = exact_moments(problem, lambda p, r, constant: (r / 2).unsqueeze(-1), group_size=2).mean
    assert not torch.allclose(own, true_grad, atol=1e-3)
    assert torch.allclose(own, true_grad / 2, atol=1e-12)
    zero = exact_moments(problem, lambda p, r, constant: r.unsqueeze(-1), group_size=2).mean
    assert zero.abs().max() < 1e-12
    # an action-dependent offset that is not proportional to R: a different direction entirely
    skew = exact_moments(problem, lambda p, r, constant: (r ** 2 / 10).unsqueeze(-1), group_size=2).mean
    assert torch.nn.functional.cosine_similarity(skew, true_grad, dim=0) < 0.999


def test_toy_policy_enumeration_matches_autograd_of_the_expected_reward(tiny_toy):
    """The toy policy's finite problem: exact grad J equals autograd of sum_y pi(y) R(y), and the
    baselines keep E[g] there."""
    policy, _ = tiny_toy
    cfg = load_config(None, {"task.length": 2, "task.vocab_size": 3, "task.reward": "position-match"})
    task = build_task(cfg.task)
    prompts = [(2, 0), (1, 1)]
    problem = policy_problem(policy, task, prompts)
    from rlvr.analysis.enumerate import all_responses, response_logprobs
    logp = response_logprobs(policy, prompts, all_responses(task))
    objective = (logp.exp() * problem.rewards).sum() / len(prompts)
    reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(objective, list(policy.parameters()))])
    assert torch.allclose(exact_gradient(problem), reference, atol=1e-12)
    for baseline in UNBIASED:
        assert torch.allclose(exact_moments(problem, baseline, group_size=2).mean, reference, atol=1e-10)
    assert exact_moments(problem, "optimal", group_size=2).trace < exact_moments(problem, "none", group_size=2).trace


def test_two_state_softmax_scores_are_the_autograd_scores():
    theta = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.double, requires_grad=True)
    problem = softmax_problem(theta.detach())
    logp = torch.log_softmax(theta, -1)
    for s in range(2):
        for a in range(2):
            (grad,) = torch.autograd.grad(logp[s, a], theta, retain_graph=True)
            assert torch.allclose(problem.scores[s, a], grad.reshape(-1))
    assert torch.equal(problem.rewards, REWARDS)


def test_two_state_naive_updates_get_stuck_and_baselines_do_not():
    """The notes' failure, for real: without a baseline a quarter of the seeds lock onto a2 (the
    9) in s1; the per-state value and RLOO baselines reach the global optimum from every seed."""
    setup = TrainSetup(seeds=100, steps=60)
    naive = outcome(train_runs("none", setup), setup.success)
    assert naive["s1_stuck_on_a2"] >= 0.1 and naive["converged"] <= 0.9
    for baseline in ("value", "rloo", "optimal"):
        assert outcome(train_runs(baseline, setup), setup.success)["converged"] == 1.0


def test_build_policy_problem_refuses_a_response_space_too_large():
    from rlvr.errors import ConfigError

    cfg = load_config(None, {"task.length": 6, "task.vocab_size": 9})
    task = build_task(cfg.task)
    with pytest.raises(ConfigError, match="too many"):
        policy_problem(build_policy(cfg.policy, task), task, [(0,) * 6])
