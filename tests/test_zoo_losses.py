"""Dual clip, GSPO and CISPO: values and gradients against their definitions."""

import pytest
import torch

from rlvr.algorithms import aggregate, policy_loss

RATIOS = torch.tensor([0.3, 0.7, 0.95, 1.0, 1.1, 1.5, 2.9, 3.1, 5.0, 20.0], dtype=torch.double)


def loss_and_grad(name, ratios, advantages, mode="token-mean", **hyper):
    logp = ratios.log().reshape(1, -1).clone().requires_grad_()
    old = torch.zeros_like(logp)
    adv = torch.full_like(logp, advantages) if isinstance(advantages, float) else advantages
    mask = torch.ones_like(logp)
    per_token, metrics = policy_loss(name, logp, old, adv, mask, **hyper)
    (grad,) = torch.autograd.grad(per_token.sum(), logp)
    return per_token.detach()[0], grad[0], metrics


@pytest.mark.parametrize("c", [2.0, 3.0])
def test_dual_clip_bounds_the_loss_of_negative_advantages_beyond_c_and_nowhere_else(c):
    for advantage in (-1.5, 2.0):
        dual, dual_grad, _ = loss_and_grad("dual-clip", RATIOS, advantage, dual_clip_c=c)
        ppo, ppo_grad, _ = loss_and_grad("clipped", RATIOS, advantage, dual_clip_c=c)
        bounded = (RATIOS > c) if advantage < 0 else torch.zeros_like(RATIOS, dtype=torch.bool)
        # where bounded: the loss is exactly c |A| (below PPO's) and has no gradient
        assert torch.allclose(dual[bounded], torch.full_like(dual[bounded], c * abs(advantage)))
        assert (ppo[bounded] > dual[bounded]).all()
        assert (dual_grad[bounded] == 0).all()
        # everywhere else: PPO clip, value and gradient
        assert torch.equal(dual[~bounded], ppo[~bounded])
        assert torch.equal(dual_grad[~bounded], ppo_grad[~bounded])
    assert ((RATIOS > 3.0).sum() > 0) and ((RATIOS < 3.0).sum() > 0)


def ragged_batch(seed=0):
    torch.manual_seed(seed)
    lengths = torch.tensor([1, 3, 5, 2])
    mask = (torch.arange(5)[None] < lengths[:, None]).double()
    logp = (torch.rand(4, 5, dtype=torch.double) * -2).requires_grad_()
    old = (logp.detach() + torch.randn(4, 5, dtype=torch.double) * 0.1)
    adv = torch.randn(4, 1, dtype=torch.double).expand(4, 5) * mask
    return logp, old, adv, mask, lengths


def gspo_by_definition(logp, old, adv, mask, lengths, eps_low, eps_high):
    """mean_i -min(s_i A_i, clip(s_i) A_i), s_i = exp(mean over y_i's tokens of log r_it), per response."""
    losses = []
    for i, n in enumerate(lengths.tolist()):
        s = (logp[i, :n] - old[i, :n]).mean().exp()
        a = adv[i, 0]
        losses.append(-torch.minimum(s * a, s.clamp(1 - eps_low, 1 + eps_high) * a))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.05, 0.08), (10.0, 10.0)])
def test_gspo_ratio_and_gradient_match_the_sequence_level_definition(eps):
    logp, old, adv, mask, lengths = ragged_batch()
    per_token, metrics = policy_loss("gspo", logp, old, adv, mask, clip_eps_low=eps[0], clip_eps_high=eps[1])
    seq_ratio = [(logp[i, :n] - old[i, :n]).mean().exp().item() for i, n in enumerate(lengths.tolist())]
    assert metrics["policy/seq_ratio_mean"].item() == pytest.approx(sum(seq_ratio) / len(seq_ratio))
    ours = aggregate(per_token, mask, "seq-mean-token-mean")
    reference = gspo_by_definition(logp, old, adv, mask, lengths, *eps)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-10)
    (g_ours,) = torch.autograd.grad(ours, logp)
    (g_ref,) = torch.autograd.grad(reference, logp)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)
    assert g_ours.abs().sum() > 0 or eps[0] < 1e-3


def test_gspo_clips_whole_sequences():
    """With a tiny range, a response whose mean log-ratio is outside it gets no gradient at all."""
    logp, old, adv, mask, lengths = ragged_batch(1)
    per_token, _ = policy_loss("gspo", logp, old, adv, mask, clip_eps_low=3e-4, clip_eps_high=4e-4)
    (grad,) = torch.autograd.grad(aggregate(per_token, mask, "seq-mean-token-mean"), logp)
    for i, n in enumerate(lengths.tolist()):
        s = (logp[i, :n] - old[i, :n]).mean().exp().item()
        a = adv[i, 0].item()
        outside = (a > 0 and s > 1 + 4e-4) or (a < 0 and s < 1 - 3e-4)
        assert (grad[i, :n] == 0).all() == outside


def test_cispo_weighs_log_pi_by_the_clipped_ratio_and_never_drops_a_token():
    for advantage in (-1.0, 2.0):
        loss, grad, metrics = loss_and_grad("cispo", RATIOS, advantage, clip_eps_low=0.2, clip_eps_high=0.28)
        weight = RATIOS.clamp(0.8, 1.28)
        assert torch.allclose(loss, -weight * advantage * RATIOS.log())
        assert torch.allclose(grad, -weight * advantage)           # d/dlogp of -sg[w] A logp
        assert (grad != 0).all()                                   # PPO's clip would zero some
        _, ppo_grad, _ = loss_and_grad("clipped", RATIOS, advantage, clip_eps_low=0.2, clip_eps_high=0.28)
        assert (ppo_grad == 0).any()
        assert metrics["policy/clip_frac"].item() == pytest.approx(float((weight != RATIOS).double().mean()))
