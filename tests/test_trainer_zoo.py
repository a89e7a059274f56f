"""The zoo inside the trainer: overlong filtering, KL in the reward, the adaptive coefficient."""

import math

import torch

from rlvr.config import load_config
from rlvr.trainer import Trainer, compute_loss


def trainer(tmp_path, **overrides):
    cfg = load_config(None, {"task.reward": "position-match", "train.prompts_per_step": 3, "train.group_size": 4,
                             "train.outer_steps": 4, "train.inner_steps": 1, "eval.every": 4,
                             "run_dir": str(tmp_path / "run"), **overrides})
    return Trainer(cfg, show_progress=False)


def fresh_rollouts(t):
    return t.rollout_backend.rollouts(3)


def test_truncated_responses_leave_the_loss_when_masked(tmp_path):
    t = trainer(tmp_path, **{"algo.mask_truncated": True, "algo.deltas": "raw"})
    rollouts = fresh_rollouts(t)
    rollouts.truncated = torch.zeros(12, dtype=torch.bool)
    rollouts.truncated[[1, 6]] = True
    batch = t.make_batch(rollouts)
    assert batch.loss_mask[[1, 6]].sum() == 0 and batch.loss_mask.sum() == 10 * 3
    loss, _ = compute_loss(t.policy, batch, t.cfg.algo, temperature=1.0, aggregation_constant=3.0, entropy_coef=0.0)
    # changing a masked response's reward changes nothing
    rollouts.rewards[0, 1] += 100.0
    rollouts.rewards[1, 2] -= 100.0
    loss_again, _ = compute_loss(t.policy, t.make_batch(rollouts), t.cfg.algo, temperature=1.0,
                                 aggregation_constant=3.0, entropy_coef=0.0)
    assert torch.allclose(loss, loss_again)
    unmasked = trainer(tmp_path, **{"algo.deltas": "raw"}).make_batch(rollouts)
    assert unmasked.loss_mask.sum() == 12 * 3


def test_kl_in_the_reward_shapes_the_deltas_and_leaves_the_loss(tmp_path):
    t = trainer(tmp_path, **{"algo.kl_coef": 0.5, "algo.kl_in": "reward", "algo.kl_estimator": "k1", "algo.deltas": "raw"})
    with torch.no_grad():
        for p in t.reference.parameters():
            p.add_(torch.randn_like(p) * 0.3)   # a reference that differs from the policy
    rollouts = fresh_rollouts(t)
    batch = t.make_batch(rollouts)
    seq_kl = t.sequence_kl(batch).reshape(3, 4)
    assert seq_kl.abs().sum() > 0
    assert torch.allclose(batch.deltas, rollouts.rewards - 0.5 * seq_kl)
    assert batch.kl_loss_coef == 0.0
    in_loss = trainer(tmp_path, **{"algo.kl_coef": 0.5, "algo.deltas": "raw"})
    in_loss.reference.load_state_dict(t.reference.state_dict())
    batch = in_loss.make_batch(rollouts)
    assert torch.equal(batch.deltas, rollouts.rewards) and batch.kl_loss_coef == 0.5


def test_adaptive_kl_coefficient_rises_while_the_kl_is_above_target(tmp_path):
    t = trainer(tmp_path, **{"algo.kl_coef": 0.1, "algo.kl_target": 1e-9, "algo.kl_horizon": 12,
                             "algo.ref_refresh_every": 0, "optim.lr": 0.05})
    t.run()
    coefs = [r["algo/kl_coef"] for r in t.history[1:]]
    # step 1 samples from the reference itself (KL 0 < target): down by the clipped 20%, n / horizon = 1
    assert coefs[0] == 0.1 and abs(coefs[1] - 0.08) < 1e-12
    # from then on the policy has moved away: the KL exceeds the target and beta rises by 20% a step
    assert all(abs(b - a * 1.2) < 1e-12 for a, b in zip(coefs[1:], coefs[2:], strict=False))


def test_a_step_without_any_group_with_a_reward_spread_skips_the_update(tmp_path):
    """Binary reward, a near-uniform policy over 5^3 responses, no refills: most draws are all-zero."""
    t = trainer(tmp_path, **{"algo.dynamic_sampling": True, "algo.max_refills": 0, "task.reward": "binary",
                             "train.group_size": 2, "train.prompts_per_step": 1, "train.outer_steps": 6})
    before = [p.detach().clone() for p in t.policy.parameters()]
    t.run()
    rows = t.history[1:]
    skipped = [r for r in rows if r["sampling/kept_groups"] == 0]
    assert skipped and all("loss/total" not in r and r["sampling/dropped_groups"] == 1 for r in skipped)
    if len(skipped) == len(rows):
        assert all(torch.equal(p, b) for p, b in zip(t.policy.parameters(), before, strict=True))


def test_ratio_weighted_kl_keeps_k3s_value_on_policy_and_takes_the_log_ratio_gradient(tmp_path):
    """TRL's use_bias_correction_kl: k3 x (pi_theta / pi_old). On-policy the ratio is 1, so the value
    is k3's, but its gradient is (k3 + 1 - q) grad log pi = log(pi/pi_ref) grad log pi: k2's."""
    def grads_and_kl(**overrides):
        t = trainer(tmp_path, **{"algo.kl_coef": 0.5, "algo.deltas": "raw", **overrides})
        torch.manual_seed(0)
        with torch.no_grad():
            for p in t.reference.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        torch.manual_seed(1)
        batch = t.make_batch(fresh_rollouts(t))
        loss, metrics = compute_loss(t.policy, batch, t.cfg.algo, temperature=1.0, aggregation_constant=3.0,
                                     entropy_coef=0.0)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in t.policy.parameters()]), metrics["policy/kl"], t, batch

    g_weighted, kl_weighted, t, batch = grads_and_kl(**{"algo.kl_ratio_weight": True})
    g_k3, kl_k3, _, _ = grads_and_kl()
    g_k2, _, _, _ = grads_and_kl(**{"algo.kl_grad_estimator": "k2"})
    assert torch.allclose(kl_weighted, kl_k3, rtol=1e-5) and kl_k3 > 0.01
    assert torch.allclose(g_weighted, g_k2, rtol=1e-4, atol=1e-6)
    assert (g_weighted - g_k3).norm() > 0.01 * g_k3.norm()
    # off-policy (the weights moved since sampling): the logged KL is the ratio-weighted mean
    with torch.no_grad():
        for p in t.policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    _, metrics = compute_loss(t.policy, batch, t.cfg.algo, temperature=1.0, aggregation_constant=3.0, entropy_coef=0.0)
    r = batch.rollouts
    logp, _ = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size)
    log_q = batch.ref_logprobs - logp
    expected = ((logp - r.logprobs).exp() * (log_q.exp() - 1 - log_q) * r.mask).sum() / r.mask.sum()
    assert torch.allclose(metrics["policy/kl"], expected.detach(), rtol=1e-5)


def test_bf16_trains_and_its_reference_log_probs_are_close_to_float32(tmp_path):
    t16 = trainer(tmp_path / "a", **{"train.bf16": True, "algo.kl_coef": 0.1, "algo.ref_refresh_every": 0})
    t32 = trainer(tmp_path / "b", **{"algo.kl_coef": 0.1, "algo.ref_refresh_every": 0})
    with torch.no_grad():
        for p in t16.reference.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    t32.reference.load_state_dict(t16.reference.state_dict())
    rollouts = fresh_rollouts(t16)
    ref16, ref32 = t16.make_batch(rollouts).ref_logprobs, t32.make_batch(rollouts).ref_logprobs
    assert ref16.dtype == torch.float32 and not torch.equal(ref16, ref32)
    assert bool(((ref16 - ref32).abs() <= 0.01 * ref32.abs() + 0.02).all())   # bf16: ~3 significant digits
    t16.run()
    losses = [r["loss/total"] for r in t16.history if "loss/total" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
