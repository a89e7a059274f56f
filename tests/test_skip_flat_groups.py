"""train.skip_flat_groups: the groups whose advantages are all 0 are left out of the training pass.
Exact because every policy loss is 0, with zero gradient, where the advantage is 0 (checked over the
registry here), and the trained groups keep their share of the whole batch's aggregate
(rlvr.batching): the gradient equals the whole batch's for every aggregation."""

import pytest
import torch

from rlvr.algorithms import AGGREGATIONS, POLICY_LOSSES, aggregate
from rlvr.algorithms.losses import policy_loss
from rlvr.batching import groups_with_gradient
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.trainer import Trainer
from test_micro_batches import POLICIES, trainer_and_batch


@pytest.mark.parametrize("name", [n for n in POLICY_LOSSES.names() if not POLICY_LOSSES.meta(n).get("whole_batch")])
def test_every_loss_is_zero_with_zero_gradient_where_the_advantage_is_zero(name):
    generator = torch.Generator().manual_seed(1)
    old = -torch.rand(6, 5, generator=generator) - 0.1
    logp = (old + 0.4 * torch.randn(6, 5, generator=generator)).clamp(max=-0.01).requires_grad_(True)
    advantages = torch.randn(6, 5, generator=generator)
    advantages[2:4] = 0.0  # two responses (a flat group of 2) with no advantage
    mask = torch.ones(6, 5)
    per_token, _ = policy_loss(name, logp, old, advantages, mask)
    per_token.sum().backward()
    assert logp.grad is not None
    assert float(logp.grad[[0, 1, 4, 5]].abs().max()) > 0  # the other rows do learn
    assert torch.equal(per_token[2:4].detach(), torch.zeros(2, 5)), name
    assert torch.equal(logp.grad[2:4], torch.zeros(2, 5)), name


@pytest.mark.parametrize("name", [n for n in POLICY_LOSSES.names() if POLICY_LOSSES.meta(n).get("whole_batch")])
def test_losses_that_read_the_whole_batch_are_refused(name):
    with pytest.raises(ConfigError, match=f"train.skip_flat_groups: algo.loss '{name}'"):
        load_config(None, {"algo.loss": name, "train.skip_flat_groups": True, "algo.kl_coef": 0.0})


def flatten_grad(t):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in t.policy.parameters()])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("aggregation", AGGREGATIONS.names())
def test_the_trained_groups_give_the_whole_batch_gradient(tmp_path, policy, aggregation):
    t, batch = trainer_and_batch(tmp_path, policy, aggregation, 0.0)
    t.cfg.train.skip_flat_groups = True
    group = batch.rollouts.group_size
    batch.advantages = torch.randn(batch.advantages.shape, generator=torch.Generator().manual_seed(2))
    batch.advantages[group:2 * group] = 0.0  # the middle group is flat, the others are not
    parts = t.learner_slices(batch)
    assert [p.rollouts.prompts for p in parts] == [[batch.rollouts.prompts[0], batch.rollouts.prompts[2]]]
    t.optimizer.zero_grad(set_to_none=True)
    whole_loss, _ = t.accumulate_gradient([batch], entropy_coef=0.0)
    whole = flatten_grad(t)
    t.optimizer.zero_grad(set_to_none=True)
    skipped_loss, metrics = t.accumulate_gradient(parts, entropy_coef=0.0)
    assert float(whole.abs().max()) > 0
    torch.testing.assert_close(flatten_grad(t), whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    torch.testing.assert_close(skipped_loss, whole_loss, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("aggregation", AGGREGATIONS.names())
def test_the_metrics_are_the_trained_groups_own(tmp_path, aggregation):
    t, batch = trainer_and_batch(tmp_path, "transformer", aggregation, 0.0)
    t.cfg.train.skip_flat_groups = True
    group = batch.rollouts.group_size
    batch.advantages = torch.randn(batch.advantages.shape, generator=torch.Generator().manual_seed(2))
    batch.advantages[:group] = 0.0  # the first group is flat
    r, keep = batch.rollouts, slice(group, None)
    with torch.no_grad():  # before the step changes the policy
        logp, entropy = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=group,
                                          temperature=t.cfg.train.temperature)
    metrics = t.inner_step(batch, t.learner_slices(batch), entropy_coef=0.0)
    mask = batch.loss_mask[keep]
    by_hand = float(aggregate(entropy[keep], mask, aggregation, constant=t.aggregation_constant))  # theirs alone
    assert metrics["policy/entropy"] == pytest.approx(by_hand, rel=1e-5)
    log_ratio = (logp - r.logprobs)[keep]
    approx_kl = float(((log_ratio.exp() - 1 - log_ratio) * mask).sum() / mask.sum())  # k3, as the losses log it
    assert metrics["policy/approx_kl"] == pytest.approx(approx_kl, rel=1e-4, abs=1e-7)


def test_no_trained_group_is_a_zero_gradient_and_a_step(tmp_path):
    t, batch = trainer_and_batch(tmp_path, "toy", "token-mean", 0.0)
    t.cfg.train.skip_flat_groups = True
    batch.advantages.zero_()
    assert groups_with_gradient(batch, mode="token-mean", constant=1.0) is None
    assert t.learner_slices(batch) == []
    before = [p.detach().clone() for p in t.policy.parameters()]
    metrics = t.inner_step(batch, [], entropy_coef=0.0)
    assert metrics["loss/policy"] == 0.0 and metrics["policy/grad_norm"] == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in t.policy.parameters())
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, t.policy.parameters(), strict=True))
    assert t.state.optimizer_steps == 1  # the learning-rate schedule moves on as without skipping


def test_a_run_that_skips_flat_groups_follows_the_run_that_does_not(tmp_path):
    def run(name, skip):
        cfg = load_config(None, {**POLICIES["transformer"], "train.outer_steps": 4, "train.inner_steps": 2,
                                 "train.prompts_per_step": 4, "train.group_size": 4, "eval.every": 4,
                                 "algo.kl_coef": 0.0, "algo.entropy_coef": 0.0, "train.skip_flat_groups": skip,
                                 "train.diagnostics_every": 0, "run_dir": str(tmp_path / name)})
        t = Trainer(cfg, show_progress=False)
        t.run()
        return t
    plain, skipping = run("plain", False), run("skip", True)
    trained = [row["train/trained_groups"] for row in skipping.history if "train/trained_groups" in row]
    assert len(trained) == 4 and min(trained) < 4  # some step left a flat group out
    for old, new in zip(plain.history, skipping.history, strict=True):
        for key in ("loss/policy", "train/reward_mean", "policy/grad_norm"):
            if key in old:
                assert new[key] == pytest.approx(old[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(plain.policy.parameters(), skipping.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
