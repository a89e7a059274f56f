"""KL: estimator gradients against the exact KL gradient, mixed value/gradient, KL in the reward,
the adaptive coefficient."""

import pytest
import torch

from rlvr.algorithms import adaptive_kl_coef, kl_penalty, kl_shaped_rewards

REF_LOGITS = torch.tensor([0.3, -1.0, 0.8, 0.0, -0.4], dtype=torch.double)


def exact_and_expected(estimator, grad_name=None):
    """Over a 5-way categorical pi_theta: exact KL(pi || ref) and its gradient, and the exact
    expectation (by enumeration, samples drawn from pi) of the estimator's value and gradient."""
    logits = torch.tensor([1.0, 0.2, -0.5, 0.4, -1.2], dtype=torch.double, requires_grad=True)
    logp = torch.log_softmax(logits, -1)
    ref = torch.log_softmax(REF_LOGITS, -1)
    exact = (logp.exp() * (logp - ref)).sum()
    (exact_grad,) = torch.autograd.grad(exact, logits, retain_graph=True)
    per_sample = kl_penalty(estimator, logp, ref, grad_name=grad_name)             # one value per outcome
    probs = logp.detach().exp()
    value = (probs * per_sample.detach()).sum()
    # E_pi[grad k(y)]: differentiate k(y) only (the sampling distribution is not differentiated)
    (grad,) = torch.autograd.grad((probs * per_sample).sum(), logits)
    return exact.item(), exact_grad, value.item(), grad


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_unbiased_estimators_have_the_exact_kl_as_expectation(name):
    exact, _, value, _ = exact_and_expected(name)
    assert value == pytest.approx(exact, rel=1e-12)


def test_only_k2s_gradient_is_the_exact_kl_gradient():
    _, exact_grad, _, k2_grad = exact_and_expected("k2")
    assert torch.allclose(k2_grad, exact_grad, atol=1e-12)
    for name in ("k1", "k3"):
        _, _, _, grad = exact_and_expected(name)
        assert not torch.allclose(grad, exact_grad, atol=1e-3)


def test_k3_with_the_k2_gradient_has_k3s_value_and_k2s_gradient():
    torch.manual_seed(0)
    logp = (torch.rand(3, 4, dtype=torch.double) * -3).requires_grad_()
    ref = torch.rand(3, 4, dtype=torch.double) * -3
    mixed = kl_penalty("k3", logp, ref, grad_name="k2")
    assert torch.equal(mixed.detach(), kl_penalty("k3", logp, ref).detach())
    weights = torch.randn(3, 4, dtype=torch.double)
    (g_mixed,) = torch.autograd.grad((mixed * weights).sum(), logp)
    (g_k2,) = torch.autograd.grad((kl_penalty("k2", logp, ref) * weights).sum(), logp)
    (g_k3,) = torch.autograd.grad((kl_penalty("k3", logp, ref) * weights).sum(), logp)
    assert torch.allclose(g_mixed, g_k2, atol=1e-14)
    assert not torch.allclose(g_mixed, g_k3, atol=1e-3)
    # so in expectation its gradient is the exact one, while its value stays k3's (unbiased, >= 0)
    exact, exact_grad, value, grad = exact_and_expected("k3", grad_name="k2")
    assert value == pytest.approx(exact, rel=1e-12)
    assert torch.allclose(grad, exact_grad, atol=1e-12)


def test_kl_in_the_reward_subtracts_beta_times_the_sequence_k1():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.3, -0.3]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -1.3, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])   # the last token of response 2 is padding
    shaped, seq_kl = kl_shaped_rewards(torch.tensor([[2.0, 1.0]]), old, ref, mask, coef=0.5, estimator="k1")
    assert seq_kl.tolist() == pytest.approx([0.5 - 1.0 + 0.0, 0.0 + 1.0])
    assert shaped[0].tolist() == pytest.approx([2.0 - 0.5 * -0.5, 1.0 - 0.5 * 1.0])


def test_adaptive_coefficient_moves_towards_the_target_and_at_most_20_percent_scaled():
    beta = 0.1
    assert adaptive_kl_coef(beta, 0.5, target=0.1, horizon=100, num_samples=10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert adaptive_kl_coef(beta, 0.0, target=0.1, horizon=100, num_samples=10) == pytest.approx(0.1 * (1 - 0.2 * 0.1))
    assert adaptive_kl_coef(beta, 0.11, target=0.1, horizon=100, num_samples=10) == pytest.approx(0.1 * (1 + 0.1 * 0.1))
    assert adaptive_kl_coef(beta, 0.1, target=0.1, horizon=100, num_samples=10) == pytest.approx(beta)
