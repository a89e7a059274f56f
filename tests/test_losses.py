"""Losses: the frozen old policy, the ratio, clipping -- by their gradients."""

import pytest
import torch

from rlvr.algorithms import POLICY_LOSSES, aggregate, policy_loss


def grad_of(name, logp_param, old_logp, adv, *, eps_low=0.2, eps_high=0.2):
    mask = torch.ones_like(adv)
    loss, metrics = policy_loss(name, logp_param, old_logp, adv, mask, clip_eps_low=eps_low, clip_eps_high=eps_high)
    (grad,) = torch.autograd.grad(aggregate(loss, mask, "token-mean"), logp_param)
    return grad, metrics


def test_ratio_at_the_old_policy_is_one_and_its_gradient_is_the_naive_gradient():
    torch.manual_seed(0)
    logp = (torch.rand(4, 3) * -2).requires_grad_()
    adv = torch.randn(4, 3)
    naive, _ = grad_of("naive", logp, logp.detach(), adv)
    for name in ("ratio", "clipped"):
        grad, metrics = grad_of(name, logp, logp.detach(), adv)
        assert torch.allclose(grad, naive)
        assert metrics["policy/ratio_mean"] == pytest.approx(1.0)


def test_an_undetached_old_policy_would_kill_the_gradient_and_ours_never_does():
    """The notes' pitfall: pi_theta / pi_theta with both sides differentiated is constant 1."""
    torch.manual_seed(0)
    logp = (torch.rand(4, 3) * -2).requires_grad_()
    adv = torch.randn(4, 3)
    pitfall = -((logp - logp).exp() * adv).mean()
    (dead,) = torch.autograd.grad(pitfall, logp)
    assert torch.count_nonzero(dead) == 0
    # our losses detach old_logp themselves, even when handed a tensor that carries a gradient
    naive, _ = grad_of("naive", logp, logp.detach(), adv)
    for name in ("ratio", "clipped"):
        grad, _ = grad_of(name, logp, logp, adv)
        assert torch.allclose(grad, naive)
        assert torch.count_nonzero(grad) == grad.numel()


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.2), (0.1, 0.3)])
def test_clipping_zeroes_the_gradient_outside_the_trust_region_on_the_advantage_side(eps_low, eps_high):
    ratios = torch.tensor([0.5, 1 - eps_low - 0.01, 1.0, 1 + eps_high - 0.01, 1 + eps_high + 0.01, 2.0])
    old = torch.zeros(1, 6)
    logp = ratios.log().reshape(1, 6).requires_grad_()
    grad_pos, metrics = grad_of("clipped", logp, old, torch.ones(1, 6), eps_low=eps_low, eps_high=eps_high)
    grad_neg, _ = grad_of("clipped", logp, old, -torch.ones(1, 6), eps_low=eps_low, eps_high=eps_high)
    above = ratios > 1 + eps_high
    below = ratios < 1 - eps_low
    # positive advantage: no gradient once the ratio is above 1 + eps_high; still one below 1 - eps_low
    assert (grad_pos[0][above] == 0).all() and (grad_pos[0][~above] != 0).all()
    # negative advantage: no gradient below 1 - eps_low; still one above 1 + eps_high
    assert (grad_neg[0][below] == 0).all() and (grad_neg[0][~below] != 0).all()
    assert metrics["policy/clip_frac"] == pytest.approx(above.float().mean().item())


def test_naive_loss_is_minus_delta_times_logp():
    logp = torch.tensor([[-1.0, -2.0]])
    loss, _ = policy_loss("naive", logp, logp, torch.tensor([[2.0, 2.0]]), torch.ones(1, 2))
    assert loss.tolist() == [[2.0, 4.0]]
    assert {"naive", "ratio", "clipped"} <= set(POLICY_LOSSES.names())
