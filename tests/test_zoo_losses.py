"""Dual clip, GSPO, CISPO, SAPO, GMPO, GPG, Clip-Cov and KL-Cov: values and gradients against their
definitions, and padding that changes nothing."""

import math

import pytest
import torch

from rlvr.algorithms import POLICY_LOSSES, aggregate, policy_loss
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.trainer import Trainer, compute_loss

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


# ---------------------------------------------------------------- SAPO, GMPO, GPG, Clip-Cov, KL-Cov
NEW_LOSSES = {
    "sapo": {"sapo_tau_pos": 1.0, "sapo_tau_neg": 1.05},
    "gmpo": {"gmpo_clip_low": 0.05, "gmpo_clip_high": 0.08},
    "clip-cov": {"clip_eps_low": 0.05, "clip_eps_high": 0.05, "clip_cov_ratio": 0.25, "clip_cov_lower": -10.0,
                 "clip_cov_upper": 10.0},
    "kl-cov": {"kl_cov_ratio": 0.25, "kl_cov_coef": 1.0},
}


def value_grad_metrics(name, logp, old, adv, mask, mode="seq-mean-token-mean", **settings):
    leaf = logp.detach().clone().requires_grad_()
    per_token, metrics = policy_loss(name, leaf, old, adv, mask, **settings)
    value = aggregate(per_token, mask, mode)
    (grad,) = torch.autograd.grad(value, leaf)
    return per_token.detach(), value.detach(), grad, metrics


@pytest.mark.parametrize("name", NEW_LOSSES)
def test_padded_columns_change_nothing_whatever_they_hold(name):
    """Two more padded positions per row holding garbage (logp 50, old -50, A 1e3): the real tokens'
    loss, the aggregate, the gradient and every metric stay the same. Catches a mean (GMPO's sequence
    ratio, the covariance's centring) or a selection count over padding: 11 real tokens of 25 -> 2
    selected, while 0.25 of every position would be 6 or 7."""
    logp, old, adv, mask, _ = ragged_batch(2)
    old = old.clone()
    old[1] += 0.3                                           # some ratios far from 1: clips and penalties act
    settings = NEW_LOSSES[name]
    base = value_grad_metrics(name, logp, old, adv, mask, **settings)

    def pad(x, junk):
        return torch.cat([x.detach(), torch.full((4, 2), junk, dtype=x.dtype)], dim=1)
    wide_mask = pad(mask, 0.0)
    wide = value_grad_metrics(name, pad(logp, 50.0), pad(old, -50.0), pad(adv, 1e3), wide_mask, **settings)
    # equal up to summation order (a row of 7 sums in another order than a row of 5)
    assert torch.allclose(wide[0][:, :5], base[0], rtol=1e-12, atol=1e-14) and (wide[0][:, 5:] == 0).all()
    assert torch.allclose(wide[1], base[1], rtol=1e-12)
    assert torch.allclose(wide[2][:, :5], base[2], rtol=1e-12, atol=1e-14)
    assert (wide[2][:, 5:] == 0).all() and base[2].abs().sum() > 0
    for key, value in base[3].items():
        assert torch.allclose(wide[3][key], value, rtol=1e-12, atol=1e-14), key
    if "policy/cov_selected_frac" in base[3]:
        assert math.isclose(float(base[3]["policy/cov_selected_frac"]), 2 / 11)


def test_sapo_is_naive_on_policy_and_damps_the_gradient_as_the_ratio_leaves_one():
    for advantage in (-1.5, 2.0):
        loss, grad, metrics = loss_and_grad("sapo", RATIOS, advantage, sapo_tau_pos=1.0, sapo_tau_neg=1.05)
        tau = 1.0 if advantage > 0 else 1.05
        sigma = torch.sigmoid(tau * (RATIOS - 1))
        assert torch.allclose(loss, -sigma * 4 / tau * advantage)
        assert torch.allclose(grad, -4 * sigma * (1 - sigma) * RATIOS * advantage)
        weight = (grad / (-advantage * RATIOS)).abs()       # 4 sigma (1 - sigma): 1 at r = 1, falling on both sides
        assert weight[RATIOS == 1.0].item() == pytest.approx(1.0)
        assert (weight[RATIOS != 1.0] < 1).all() and weight[-1] < 1e-6
    # at r = 1 the gradient is naive's whatever tau
    logp, old, adv, mask, _ = ragged_batch(3)
    for taus in ((1.0, 1.05), (0.5, 4.0)):
        _, _, g_sapo, _ = value_grad_metrics("sapo", logp, logp.detach(), adv, mask, sapo_tau_pos=taus[0],
                                             sapo_tau_neg=taus[1])
        _, _, g_naive, _ = value_grad_metrics("naive", logp, logp.detach(), adv, mask)
        assert torch.allclose(g_sapo, g_naive, atol=1e-12)


def gmpo_by_definition(logp, old, adv, lengths, low, high):
    """mean_i -A_i exp(mean_t c_it), c = min(log r, high) for A > 0, max(log r, -low) for A < 0."""
    losses = []
    for i, n in enumerate(lengths.tolist()):
        log_r, a = logp[i, :n] - old[i, :n], adv[i, 0]
        c = log_r.clamp(max=high) if a > 0 else log_r.clamp(min=-low)
        losses.append(-a * c.mean().exp())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("clip", [(0.05, 0.08), (0.4, 0.4), (10.0, 10.0)])
def test_gmpo_matches_the_sequence_level_definition(clip):
    logp, old, adv, mask, lengths = ragged_batch(4)
    old = old + torch.linspace(-0.3, 0.3, 5, dtype=torch.double)       # both clip sides reached
    _, ours, grad, _ = value_grad_metrics("gmpo", logp, old, adv, mask, gmpo_clip_low=clip[0],
                                          gmpo_clip_high=clip[1])
    leaf = logp.detach().clone().requires_grad_()
    reference = gmpo_by_definition(leaf, old, adv, lengths, *clip)
    (g_ref,) = torch.autograd.grad(reference, leaf)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(grad, g_ref, atol=1e-12)
    assert grad.abs().sum() > 0


def test_gpg_is_naive_on_its_own_deltas_and_its_recipe_says_so():
    assert POLICY_LOSSES.get("gpg") is POLICY_LOSSES.get("naive")
    cfg = load_config(None, recipe="gpg")
    assert (cfg.algo.deltas, cfg.algo.loss, cfg.algo.kl_coef) == ("gpg", "gpg", 0.0)


def test_clip_cov_without_candidates_is_ppo_and_selects_by_rank_deterministically():
    logp, old, adv, mask, _ = ragged_batch(5)
    ppo = value_grad_metrics("clipped", logp, old, adv, mask, clip_eps_low=0.2, clip_eps_high=0.2)
    none = value_grad_metrics("clip-cov", logp, old, adv, mask, clip_eps_low=0.2, clip_eps_high=0.2,
                              clip_cov_lower=50.0, clip_cov_upper=60.0)
    assert torch.equal(none[0], ppo[0]) and torch.equal(none[2], ppo[2])
    assert none[3]["policy/cov_selected_frac"].item() == 0
    settings = {"clip_eps_low": 0.2, "clip_eps_high": 0.2, "clip_cov_ratio": 0.3, "clip_cov_lower": -10.0,
                "clip_cov_upper": 10.0}
    first = value_grad_metrics("clip-cov", logp, old, adv, mask, **settings)
    again = value_grad_metrics("clip-cov", logp, old, adv, mask, **settings)
    assert torch.equal(first[2], again[2])
    dropped = (first[2] == 0) & (ppo[2] != 0)                          # floor(0.3 * 11) = 3 tokens
    assert int(dropped.sum()) == 3
    cov = (logp - logp[mask != 0].mean()) * (adv - adv[mask != 0].mean())
    kept = (mask != 0) & ~dropped & (ppo[2] != 0)
    assert cov[dropped].min() > cov[kept].max()                        # the top candidates by covariance


def test_kl_cov_with_zero_weight_is_the_ratio_loss_and_penalises_only_the_selected():
    logp, old, adv, mask, _ = ragged_batch(6)
    ratio = value_grad_metrics("ratio", logp, old, adv, mask)
    zero = value_grad_metrics("kl-cov", logp, old, adv, mask, kl_cov_ratio=0.5, kl_cov_coef=0.0)
    assert torch.equal(zero[0], ratio[0]) and torch.equal(zero[2], ratio[2])
    loss, _, _, metrics = value_grad_metrics("kl-cov", logp, old, adv, mask, kl_cov_ratio=0.5, kl_cov_coef=2.0)
    penalised = loss != ratio[0]
    assert int(penalised.sum()) == 5 == round(metrics["policy/cov_selected_frac"].item() * 11)   # floor(5.5)
    assert torch.allclose((loss - ratio[0])[penalised], 2.0 * (logp - old)[penalised].abs())


def test_a_loss_takes_its_own_settings_and_refuses_unknown_ones():
    logp, old, adv, mask, _ = ragged_batch(7)
    a = policy_loss("sapo", logp, old, adv, mask)[0]
    b = policy_loss("sapo", logp, old, adv, mask, sapo_tau_pos=1.0, sapo_tau_neg=1.05, clip_eps_low=0.9)[0]
    assert torch.equal(a, b)                                           # defaults; another loss's setting ignored
    with pytest.raises(TypeError, match="sapo_tau"):
        policy_loss("sapo", logp, old, adv, mask, sapo_tau=1.0)


def test_config_refuses_settings_of_another_loss_and_micro_batches_for_batch_statistics():
    with pytest.raises(ConfigError, match="algo.sapo_tau_pos: a setting of algo.loss 'sapo', not of the chosen 'clipped'"):
        load_config(None, {"algo.loss": "clipped", "algo.sapo_tau_pos": 2.0})
    with pytest.raises(ConfigError, match="algo.gmpo_clip_high: a setting of algo.loss 'gmpo'"):
        load_config(None, {"algo.loss": "gspo", "algo.gmpo_clip_high": 0.2})
    for loss in ("clip-cov", "kl-cov"):
        with pytest.raises(ConfigError, match=f"train.micro_batch_size: algo.loss '{loss}' selects tokens"):
            load_config(None, {"algo.loss": loss, "train.micro_batch_size": 10})
    with pytest.raises(ConfigError, match="algo.clip_cov_lower: 5.0 must be below algo.clip_cov_upper"):
        load_config(None, {"algo.loss": "clip-cov", "algo.clip_cov_lower": 5.0})
    cfg = load_config(None, {"algo.loss": "clip-cov", "algo.clip_eps_high": 0.3, "algo.clip_cov_ratio": 0.01})
    assert (cfg.algo.clip_eps_high, cfg.algo.clip_cov_ratio) == (0.3, 0.01)


def test_clip_eps_high_left_unset_is_eps_low():
    logp, old, adv, mask, _ = ragged_batch(8)
    for name in ("clipped", "clip-cov"):
        alone = policy_loss(name, logp, old, adv, mask, clip_eps_low=0.05)[0]
        both = policy_loss(name, logp, old, adv, mask, clip_eps_low=0.05, clip_eps_high=0.05)[0]
        wider = policy_loss(name, logp, old, adv, mask, clip_eps_low=0.05, clip_eps_high=0.2)[0]
        assert torch.equal(alone, both) and not torch.equal(alone, wider), name


def test_the_trainer_hands_the_chosen_loss_its_settings(tmp_path):
    cfg = load_config(None, {"train.prompts_per_step": 2, "train.group_size": 3, "algo.deltas": "raw",
                             "algo.loss": "gmpo", "algo.gmpo_clip_low": 0.01, "algo.gmpo_clip_high": 0.02,
                             "algo.aggregation": "seq-mean-token-mean", "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    batch = t.make_batch(t.rollout_backend.rollouts(2))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move the policy off the sampler: ratios != 1, so the clip range matters
        for p in t.policy.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))
    loss, _ = compute_loss(t.policy, batch, cfg.algo, temperature=1.0, aggregation_constant=3.0, entropy_coef=0.0)
    r = batch.rollouts
    logp, _ = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size)

    def expected(**settings):
        per_token, _ = policy_loss("gmpo", logp, r.logprobs, batch.advantages, batch.loss_mask, **settings)
        return aggregate(per_token, batch.loss_mask, "seq-mean-token-mean")
    assert torch.allclose(loss, expected(gmpo_clip_low=0.01, gmpo_clip_high=0.02))
    assert not torch.allclose(loss, expected())                        # the defaults (0.4) give another loss


def test_kl_cov_never_selects_padding_even_where_its_covariance_would_win():
    """Padding enters as logp = A = 0, so its 'covariance' (0 - mean logp)(0 - mean A) is
    (0 + 1.0)(0 + 0.5) = 0.5 here, above every real token's (0, 0.02, 0.02). With ratio 0.2 one of
    the 3 real tokens is penalised: the first of the two tied at 0.02 (position 1), never the pad."""
    logp = torch.tensor([[-1.0, -1.2, -0.8, -0.3]])
    old = logp - 0.1                              # log r = 0.1 on every real token: penalty 0.1
    advantages = torch.tensor([[-0.5, -0.6, -0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, metrics = policy_loss("kl-cov", logp, old, advantages, mask, kl_cov_ratio=0.2, kl_cov_coef=1.0)
    plain, _ = policy_loss("ratio", logp, old, advantages, mask)
    torch.testing.assert_close(loss - plain, torch.tensor([[0.0, 0.1, 0.0, 0.0]]))
    assert float(metrics["policy/cov_selected_frac"]) == pytest.approx(1 / 3)
