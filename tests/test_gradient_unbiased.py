"""The policy gradient is unbiased: checked exactly, by enumeration, on the toy policy.

Vocabulary 3 and response length 2 give 9 responses, so the expected reward
J = sum_y pi(y) R(y) and its exact gradient come from autograd on the full sum. The expectation
of a delta estimator over groups of G responses is also computed exactly, by enumerating all
9**G groups with their probabilities; then a Monte-Carlo run checks convergence.
"""

import itertools

import pytest
import torch

from rlvr.algorithms import compute_deltas
from rlvr.algorithms.logprobs import sequence_logprob

PROMPT = torch.tensor([[2, 0]])
REWARD_TABLE = torch.tensor([0.0, 1.0, 3.0, 2.0, 0.5, 4.0, 1.5, 0.0, 2.5], dtype=torch.double)  # R of each response


def response_logprobs(policy, responses):
    """log pi(y) (9,) for every response of the prompt, with gradient."""
    logp, _ = policy.logprobs(PROMPT, responses, torch.ones_like(responses, dtype=torch.double),
                              group_size=len(responses))
    return sequence_logprob(logp, torch.ones_like(logp))


def flat_grad(policy, scalar):
    grads = torch.autograd.grad(scalar, list(policy.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


def exact_gradient(policy, responses):
    logp = response_logprobs(policy, responses)
    return flat_grad(policy, (logp.exp() * REWARD_TABLE).sum())


def expected_estimator(policy, responses, mode, group_size, settings=None):
    """E over groups of (1/G) sum_i delta_i grad log pi(y_i), by enumerating every group (``settings``:
    the mode's own, ``compute_deltas``)."""
    logp = response_logprobs(policy, responses)
    probs = logp.detach().exp()
    groups = torch.tensor(list(itertools.product(range(len(responses)), repeat=group_size)))  # (9**G, G)
    group_prob = probs[groups].prod(-1)                                                     # (9**G,)
    deltas = compute_deltas(REWARD_TABLE[groups], mode, settings=settings)                 # (9**G, G)
    surrogate = (group_prob[:, None] * deltas * logp[groups]).sum() / group_size
    return flat_grad(policy, surrogate)


def monte_carlo_estimator(policy, responses, mode, group_size, num_groups, seed):
    logp = response_logprobs(policy, responses)
    generator = torch.Generator().manual_seed(seed)
    groups = torch.multinomial(logp.detach().exp(), num_groups * group_size, replacement=True,
                               generator=generator).reshape(num_groups, group_size)
    deltas = compute_deltas(REWARD_TABLE[groups], mode)
    return flat_grad(policy, (deltas * logp[groups]).sum() / (num_groups * group_size))


@pytest.mark.parametrize("mode", ["raw", "rloo"])
def test_unbiased_estimators_have_the_exact_gradient_as_expectation(tiny_toy, mode):
    policy, responses = tiny_toy
    exact = exact_gradient(policy, responses)
    assert exact.norm() > 1e-3
    assert torch.allclose(expected_estimator(policy, responses, mode, group_size=3), exact, atol=1e-10)


def test_group_mean_that_includes_the_sample_shrinks_the_gradient_by_g_minus_1_over_g(tiny_toy):
    """Centered deltas subtract a mean that contains R_i itself: E[estimate] = (G-1)/G grad J.
    The direction is exact, only the step length shrinks (a documented property, not a bug)."""
    policy, responses = tiny_toy
    exact = exact_gradient(policy, responses)
    for mode in ("centered", "dr-grpo"):
        for group_size in (2, 3):
            expected = expected_estimator(policy, responses, mode, group_size)
            assert torch.allclose(expected, exact * (group_size - 1) / group_size, atol=1e-10)
            assert not torch.allclose(expected, exact, atol=1e-3)


@pytest.mark.parametrize("group_size", [2, 3])
def test_leave_one_out_max_is_unbiased_for_the_best_of_group_gradient(tiny_toy, group_size):
    """pass-at-k deltas: E[sum_i delta_i grad log pi(y_i)] = grad E[max(R_1..R_G)], by enumeration."""
    policy, responses = tiny_toy
    probs = response_logprobs(policy, responses).exp()
    groups = torch.tensor(list(itertools.product(range(len(responses)), repeat=group_size)))
    best_of_group = (probs[groups].prod(-1) * REWARD_TABLE[groups].max(-1).values).sum()
    exact = flat_grad(policy, best_of_group)
    expected = expected_estimator(policy, responses, "pass-at-k", group_size) * group_size
    assert torch.allclose(expected, exact, atol=1e-10)
    # ... which is not the gradient of the mean reward
    assert not torch.allclose(expected, exact_gradient(policy, responses), atol=1e-3)


def test_normalized_deltas_are_biased(tiny_toy):
    """Dividing by the group std is not a baseline: the expectation leaves the gradient's line."""
    policy, responses = tiny_toy
    exact = exact_gradient(policy, responses)
    expected = expected_estimator(policy, responses, "normalized", group_size=3)
    cosine = torch.nn.functional.cosine_similarity(expected, exact, dim=0)
    assert cosine < 0.9999


@pytest.mark.parametrize("mode", ["raw", "rloo"])
def test_monte_carlo_estimate_converges_to_the_exact_gradient(tiny_toy, mode):
    policy, responses = tiny_toy
    exact = exact_gradient(policy, responses)
    errors = [(monte_carlo_estimator(policy, responses, mode, 4, n, seed=1) - exact).norm() / exact.norm()
              for n in (100, 20_000)]
    assert errors[1] < 0.05
    assert errors[1] < errors[0]
