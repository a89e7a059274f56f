"""Off-policy correction (algo.rollout_correction, algorithms/correction.py): the weights, masks, loss and
gradient pinned by hand on 2x3 tensors; through the trainer, a perturbed sampler changes the gradient
exactly as the formula says, and with the sampler = the learner every mode gives the uncorrected gradient;
micro-batches still add up to the whole batch."""

import dataclasses
import math

import pytest
import torch

from rlvr.algorithms import ROLLOUT_CORRECTIONS, aggregate, policy_loss
from rlvr.algorithms.correction import correction_metrics, rollout_correction
from rlvr.config import field_help, load_config
from rlvr.errors import ConfigError
from rlvr.trainer import Trainer, compute_loss

D = torch.double
MODES = ["tis-token", "tis-seq", "mis-token", "mis-seq", "seq-mask"]
# w = pi_old / pi_sampler per token: response 0 has 3 real tokens, response 1 two (and one padded)
W = [[0.4, 1.5, 3.0], [0.6, 0.8, 1.0]]
SAMPLER = torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, -0.7]], dtype=D)
OLD = SAMPLER + torch.tensor(W, dtype=D).log()
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=D)
ADV = torch.tensor([[-0.5, -0.5, -0.5], [-1.0, -1.0, 0.0]], dtype=D)


def weights(mode, old=OLD, sampler=SAMPLER, adv=ADV, mask=MASK, **settings):
    old_logp, c = rollout_correction(mode, sampler, lambda: old, adv, mask, **settings)
    return old_logp, c


def test_the_modes_are_registered_with_none_the_default():
    assert ROLLOUT_CORRECTIONS.names() == sorted(["none", *MODES])
    assert load_config(None).algo.rollout_correction == "none"


# ---------------------------------------------------------------- weights and masks by hand (C = 2, delta = 0.1)
# W_0 = 0.4 * 1.5 * 3 = 1.8, W_1 = 0.6 * 0.8 = 0.48 (below 1/C = 0.5)
# D_i = mean_t log(pi_sampler / pi_old): D_0 = -log(1.8) / 3 = -0.196, D_1 = -log(0.48) / 2 = 0.367
EXPECTED = {
    "tis-token": [[0.4, 1.5, 2.0], [0.6, 0.8, 0.0]],      # min(w, 2)
    "tis-seq": [[1.8, 1.8, 1.8], [0.48, 0.48, 0.0]],       # min(W, 2)
    "mis-token": [[0.0, 1.5, 0.0], [0.6, 0.8, 0.0]],      # w inside [0.5, 2]
    "mis-seq": [[1.8, 1.8, 1.8], [0.0, 0.0, 0.0]],         # W_1 = 0.48 < 0.5: response 1 left out whole
    "seq-mask": [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]],        # A_1 < 0 and D_1 = 0.367 > 0.1
}


@pytest.mark.parametrize("mode", MODES)
def test_weights_by_hand(mode):
    settings = {"correction_delta": 0.1} if mode == "seq-mask" else {"correction_cap": 2.0}
    old_logp, c = weights(mode, **settings)
    assert torch.equal(old_logp, OLD)                       # pi_old of the ratio: the learner's own
    torch.testing.assert_close(c, torch.tensor(EXPECTED[mode], dtype=D), rtol=1e-12, atol=1e-12)
    assert not c.requires_grad


def test_a_smaller_cap_truncates_and_masks_the_sequence_weight():
    _, tis = weights("tis-seq", correction_cap=1.5)
    _, mis = weights("mis-seq", correction_cap=1.5)         # band [2/3, 1.5]: W_0 = 1.8 and W_1 = 0.48 outside
    torch.testing.assert_close(tis, torch.tensor([[1.5, 1.5, 1.5], [0.48, 0.48, 0.0]], dtype=D))
    assert torch.equal(mis, torch.zeros_like(mis))
    _, mis_wide = weights("mis-token", correction_cap=4.0)  # band [0.25, 4]: every token kept with its w
    torch.testing.assert_close(mis_wide, torch.tensor([[0.4, 1.5, 3.0], [0.6, 0.8, 0.0]], dtype=D))


def test_seq_mask_spares_positive_advantages_and_small_divergences():
    _, positive = weights("seq-mask", adv=-ADV, correction_delta=0.1)
    assert torch.equal(positive, MASK)
    _, loose = weights("seq-mask", correction_delta=0.4)    # D_1 = 0.367 < 0.4
    assert torch.equal(loose, MASK)
    mixed = ADV.clone()
    mixed[1, 0] = 2.0                                        # per token (process credit): only A < 0 is masked
    _, c = weights("seq-mask", adv=mixed, correction_delta=0.1)
    assert c[1].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("mode,mean,masked", [("tis-token", 5.3 / 5, 0.0), ("tis-seq", (3 * 1.8 + 2 * 0.48) / 5, 0.0),
                                              ("mis-token", 2.9 / 5, 0.4), ("mis-seq", 5.4 / 5, 0.4),
                                              ("seq-mask", 3 / 5, 0.4)])
def test_metrics_by_hand(mode, mean, masked):
    old_logp, c = weights(mode)
    metrics = correction_metrics(old_logp, SAMPLER, c, MASK)
    k3 = sum(w - 1 - math.log(w) for w in (0.4, 1.5, 3.0, 0.6, 0.8)) / 5   # KL(pi_sampler || pi_old) per token
    assert metrics["policy/sampler_kl"].item() == pytest.approx(k3, rel=1e-12)
    assert metrics["policy/correction_weight_mean"].item() == pytest.approx(mean, rel=1e-12)
    assert metrics["policy/correction_masked_frac"].item() == pytest.approx(masked, abs=1e-15)


def test_none_skips_the_learner_forward():
    def never():
        raise AssertionError("the learner's log-probs were asked for")
    assert rollout_correction("none", SAMPLER, never, ADV, MASK) == (None, None)


# ---------------------------------------------------------------- the loss and its gradient by hand
# ratios r = pi_theta / pi_old, chosen: response 0 (A = +1) 1.0, 1.3 (clipped), 0.9; response 1 (A = -1)
# 1.1, 0.7 (clipped). PPO clip 0.2, token-mean over the 5 real tokens, tis-token weights c from above.
RATIOS = torch.tensor([[1.0, 1.3, 0.9], [1.1, 0.7, 1.0]], dtype=D)
SIGNS = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]], dtype=D)


def corrected_loss_and_grad(mode, old, sampler, **settings):
    old_logp, c = rollout_correction(mode, sampler, lambda: old, SIGNS, MASK, **settings)
    logp = (OLD + RATIOS.log()).requires_grad_()
    per_token, _ = policy_loss("clipped", logp, old_logp if old_logp is not None else sampler, SIGNS, MASK,
                               clip_eps_low=0.2)
    loss = aggregate(per_token * (c if c is not None else 1.0), MASK, "token-mean")
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.item(), grad


def test_tis_token_clipped_loss_and_gradient_by_hand():
    loss, grad = corrected_loss_and_grad("tis-token", OLD, SAMPLER, correction_cap=2.0)
    # per token: -min(r A, clip(r) A) = -1.0, -1.2, -0.9 | 1.1, 0.8; weighted by c = 0.4, 1.5, 2.0 | 0.6, 0.8
    assert loss == pytest.approx((0.4 * -1.0 + 1.5 * -1.2 + 2.0 * -0.9 + 0.6 * 1.1 + 0.8 * 0.8) / 5, rel=1e-12)
    # gradient c (-A r) / 5 where the clip is not active, 0 where it is (r = 1.3 with A > 0, r = 0.7 with A < 0)
    expected = torch.tensor([[0.4 * -1.0, 0.0, 2.0 * -0.9], [0.6 * 1.1, 0.0, 0.0]], dtype=D) / 5
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def test_seq_mask_removes_the_masked_response_but_keeps_its_tokens_in_the_denominator():
    signs = -MASK                                            # both responses negative: D_1 = 0.367 > 0.1 masks 1
    old_logp, c = rollout_correction("seq-mask", SAMPLER, lambda: OLD, signs, MASK, correction_delta=0.1)
    assert c[1].tolist() == [0.0, 0.0, 0.0] and c[0].tolist() == [1.0, 1.0, 1.0]
    logp = (OLD + RATIOS.log()).requires_grad_()
    per_token, _ = policy_loss("clipped", logp, old_logp, signs, MASK, clip_eps_low=0.2)
    loss = aggregate(per_token * c, MASK, "token-mean")
    (grad,) = torch.autograd.grad(loss, logp)
    # response 0 with A = -1: -min(-r, -clip(r)) = max(r, clip(r)) = 1.0, 1.3, 0.9; over 5 tokens, not 3
    assert loss.item() == pytest.approx((1.0 + 1.3 + 0.9) / 5, rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[1.0, 1.3, 0.9], [0.0, 0.0, 0.0]], dtype=D) / 5)


def test_without_correction_the_ratio_is_against_the_sampler():
    loss, grad = corrected_loss_and_grad("none", OLD, SAMPLER)
    # r_sampler = r w = 0.4, 1.95, 2.7 | 0.66, 0.56: clipped to 1.2 above for A > 0, to 0.8 below for A < 0
    # -min(rA, clip(r)A): -0.4, -1.2, -1.2 | 0.8, 0.8; gradient -A r where unclipped: only the first token
    assert loss == pytest.approx((-0.4 - 1.2 - 1.2 + 0.8 + 0.8) / 5, rel=1e-12)
    torch.testing.assert_close(grad, torch.tensor([[-0.4, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=D) / 5)


# ---------------------------------------------------------------- padding, overflow, settings
@pytest.mark.parametrize("mode", MODES)
def test_padding_holds_garbage_and_changes_nothing(mode):
    old, sampler, adv = OLD.clone(), SAMPLER.clone(), ADV.clone()
    old[1, 2], sampler[1, 2], adv[1, 2] = float("nan"), -float("inf"), -1e9
    base_old, base = weights(mode)
    got_old, got = weights(mode, old=old, sampler=sampler, adv=adv)
    assert torch.equal(got, base) and got[1, 2] == 0
    for key, value in correction_metrics(base_old, SAMPLER, base, MASK).items():
        assert torch.equal(correction_metrics(got_old, sampler, got, MASK)[key], value), key


def test_sequence_weights_far_from_one_stay_finite():
    far = torch.full((2, 3), 15.0, dtype=D)                  # W = e^45 and e^-45
    far[1] = -15.0
    sampler = torch.zeros(2, 3, dtype=D)
    for mode, expected in [("tis-seq", [2.0, math.exp(-45)]), ("mis-seq", [0.0, 0.0]),
                           ("tis-token", [2.0, math.exp(-15)]), ("mis-token", [0.0, 0.0])]:
        _, c = rollout_correction(mode, sampler, lambda: far, ADV, torch.ones(2, 3, dtype=D), correction_cap=2.0)
        assert torch.isfinite(c).all()
        torch.testing.assert_close(c[:, 0], torch.tensor(expected, dtype=D), rtol=1e-12, atol=0.0)


def test_settings_default_and_unknown_ones_are_refused():
    assert torch.equal(weights("tis-token")[1], weights("tis-token", correction_cap=2.0, correction_delta=5.0)[1])
    with pytest.raises(TypeError, match="correction_capp"):
        weights("tis-token", correction_capp=2.0)
    with pytest.raises(ConfigError, match="did you mean 'tis-token'"):
        weights("tis_token")


def test_config_fields_are_validated_and_owned_by_their_modes():
    cfg = load_config(None, {"algo.rollout_correction": "mis-seq", "algo.correction_cap": 5.0})
    assert (cfg.algo.rollout_correction, cfg.algo.correction_cap) == ("mis-seq", 5.0)
    with pytest.raises(ConfigError, match=r"^algo.correction_cap: 1.0 must be > 1.0"):
        load_config(None, {"algo.rollout_correction": "tis-token", "algo.correction_cap": 1.0})
    with pytest.raises(ConfigError, match=r"^algo.correction_delta: 0.0 must be > 0.0"):
        load_config(None, {"algo.rollout_correction": "seq-mask", "algo.correction_delta": 0.0})
    with pytest.raises(ConfigError, match=r"^algo.correction_cap: a setting of algo.rollout_correction 'mis-seq', "
                                          r"'mis-token', 'tis-seq', 'tis-token', not of the chosen 'none'"):
        load_config(None, {"algo.correction_cap": 3.0})
    with pytest.raises(ConfigError, match=r"^algo.correction_delta: a setting of algo.rollout_correction 'seq-mask'"):
        load_config(None, {"algo.rollout_correction": "tis-seq", "algo.correction_delta": 0.3})
    with pytest.raises(ConfigError, match=r"^algo.rollout_correction: 'tis' is not one of"):
        load_config(None, {"algo.rollout_correction": "tis"})
    recipe = load_config(None, {"algo.rollout_correction": "tis-token"}, recipe="grpo")
    assert (recipe.algo.loss, recipe.algo.rollout_correction) == ("clipped", "tis-token")
    rows = dict(field_help())
    assert rows["--algo.correction_cap"].startswith("[algo.rollout_correction mis-seq, mis-token, tis-seq, tis-token] ")
    assert rows["--algo.correction_delta"].startswith("[algo.rollout_correction seq-mask] ")


# ---------------------------------------------------------------- through the trainer
def make_trainer(tmp_path, mode, aggregation="seq-mean-token-mean", **extra):
    settings = {"algo.correction_cap": 1.5} if mode.startswith(("tis", "mis")) else {}
    if mode == "seq-mask":
        settings = {"algo.correction_delta": 0.05}
    cfg = load_config(None, {"train.prompts_per_step": 3, "train.group_size": 4, "algo.deltas": "centered",
                             "algo.loss": "clipped", "algo.aggregation": aggregation, "train.diagnostics_every": 0,
                             "algo.rollout_correction": mode, "run_dir": str(tmp_path / mode), **settings, **extra})
    return Trainer(cfg, show_progress=False)


def sampled(tmp_path):
    """A batch sampled by the policy of ``make_trainer`` (same seed: the same for every mode)."""
    t = make_trainer(tmp_path, "none")
    return t.rollout_backend.rollouts(3)


def perturbed(rollouts, scale=0.3):
    """The sampler's log-probs with noise: a sampler that is not the learner (another engine, stale weights)."""
    generator = torch.Generator().manual_seed(1)
    noise = scale * torch.randn(rollouts.logprobs.shape, generator=generator)
    return dataclasses.replace(rollouts, logprobs=rollouts.logprobs + noise * rollouts.mask)


def loss_gradient(t, batch):
    t.policy.zero_grad(set_to_none=True)
    loss, _ = compute_loss(t.policy, batch, t.cfg.algo, temperature=1.0, aggregation_constant=1.0, entropy_coef=0.0)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in t.policy.parameters()])


def hand_weights(mode, log_w, adv, mask, *, cap=1.5, delta=0.05):
    """The docstring's formulas, written out again: (N, T) log w -> c."""
    seq = (log_w * mask).sum(-1, keepdim=True).expand_as(log_w)
    if mode == "tis-token":
        c = torch.minimum(log_w.exp(), torch.tensor(cap))
    elif mode == "tis-seq":
        c = torch.minimum(seq.exp(), torch.tensor(cap))
    elif mode == "mis-token":
        c = torch.where((log_w.exp() >= 1 / cap) & (log_w.exp() <= cap), log_w.exp(), 0.0)
    elif mode == "mis-seq":
        c = torch.where((seq.exp() >= 1 / cap) & (seq.exp() <= cap), seq.exp(), 0.0)
    else:
        divergence = -(log_w * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
        c = torch.where((adv < 0) & (divergence > delta), 0.0, 1.0)
    return c * mask


@pytest.mark.parametrize("mode", MODES)
def test_a_perturbed_sampler_changes_the_gradient_as_the_formula_says(tmp_path, mode):
    rollouts = perturbed(sampled(tmp_path))
    t = make_trainer(tmp_path, mode)
    batch = t.make_batch(rollouts)
    r = batch.rollouts
    learner_logp, _ = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size)
    torch.testing.assert_close(batch.old_logprobs, learner_logp.detach())        # pi_old: the learner's own
    c = hand_weights(mode, learner_logp.detach() - r.logprobs, batch.advantages, r.mask)
    torch.testing.assert_close(batch.correction, c, rtol=1e-6, atol=1e-7)
    assert 0 < float((c * r.mask).sum()) and not torch.allclose(c, r.mask)        # a real correction
    with torch.no_grad():  # an inner step moved the learner: the ratio is against pi_old, not the sampler
        for p in t.policy.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    got = loss_gradient(t, batch)

    def expected_loss():
        logp, _ = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size)
        per_token, _ = policy_loss("clipped", logp, learner_logp.detach(), batch.advantages, batch.loss_mask,
                                   clip_eps_low=0.2)
        return aggregate(per_token * c, batch.loss_mask, "seq-mean-token-mean")
    t.policy.zero_grad(set_to_none=True)
    expected_loss().backward()
    expected = torch.cat([p.grad.flatten() for p in t.policy.parameters()])
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    uncorrected = loss_gradient(t, dataclasses.replace(batch, old_logprobs=None, correction=None))
    assert not torch.allclose(got, uncorrected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_on_policy_every_mode_gives_the_uncorrected_gradient(tmp_path, mode):
    rollouts = sampled(tmp_path)                             # the learner sampled them: w = 1
    plain = make_trainer(tmp_path, "none")
    t = make_trainer(tmp_path, mode)
    batch, reference = t.make_batch(rollouts), plain.make_batch(rollouts)
    assert reference.old_logprobs is None and reference.correction is None
    torch.testing.assert_close(batch.correction, rollouts.mask, rtol=1e-6, atol=1e-6)
    got, want = loss_gradient(t, batch), loss_gradient(plain, reference)
    assert float(want.abs().max()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
@pytest.mark.parametrize("mode", ["tis-seq", "mis-token", "seq-mask"])
def test_micro_batches_add_up_to_the_whole_batch_with_a_correction(tmp_path, mode, aggregation):
    rollouts = perturbed(sampled(tmp_path))
    t = make_trainer(tmp_path, mode, aggregation, **{"train.micro_batch_size": 4})
    batch = t.make_batch(rollouts)
    parts = t.learner_slices(batch)
    assert len(parts) == 3 and all(p.correction is not None for p in parts)
    whole = t.accumulate_gradient([batch], entropy_coef=0.0)
    whole_grad = torch.cat([p.grad.flatten() for p in t.policy.parameters()])
    t.optimizer.zero_grad(set_to_none=True)
    micro = t.accumulate_gradient(parts, entropy_coef=0.0)
    micro_grad = torch.cat([p.grad.flatten() for p in t.policy.parameters()])
    assert float(whole_grad.abs().max()) > 0
    torch.testing.assert_close(micro_grad, whole_grad, rtol=1e-5, atol=1e-6 * float(whole_grad.abs().max()))
    torch.testing.assert_close(micro[0], whole[0], rtol=1e-5, atol=1e-7)


def test_an_outer_step_logs_the_sampler_gap_only_with_a_correction(tmp_path):
    row = make_trainer(tmp_path, "tis-token").outer_step(1)
    assert row["policy/sampler_kl"] == pytest.approx(0.0, abs=1e-6)      # the local sampler is the learner
    assert row["policy/correction_weight_mean"] == pytest.approx(1.0, abs=1e-6)
    assert row["policy/correction_masked_frac"] == 0.0
    plain = make_trainer(tmp_path, "none").outer_step(1)
    assert not {k for k in plain if "sampler_kl" in k or "correction" in k}
