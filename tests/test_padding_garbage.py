"""Whatever padded positions hold (inf, -inf, NaN, 1e30, a log-ratio of 100), every loss, KL,
aggregation and metric gives exactly the value and gradient of clean padding."""

import itertools

import pytest
import torch

from rlvr.algorithms import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    aggregate,
    kl_penalty,
    policy_loss,
)
from rlvr.algorithms.credit import CREDIT, token_advantages
from rlvr.algorithms.kl import kl_shaped_rewards
from rlvr.algorithms.logprobs import sequence_logprob
from rlvr.config import load_config
from rlvr.trainer import Trainer, compute_loss

GARBAGE = [float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 100.0, -100.0, 88.8]
MASK = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float64)


def inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    old = logp + torch.randn(4, 5, generator=g, dtype=torch.float64) * 0.3
    ref = logp + torch.randn(4, 5, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(4, 5, generator=g, dtype=torch.float64)
    return logp, old, ref, adv


def soiled(x: torch.Tensor, seed: int) -> torch.Tensor:
    """x with every padded position replaced by a value drawn from GARBAGE."""
    g = torch.Generator().manual_seed(seed)
    junk = torch.tensor(GARBAGE, dtype=x.dtype)[torch.randint(len(GARBAGE), x.shape, generator=g)]
    return torch.where(MASK != 0, x, junk)


def value_and_grad(fn, logp: torch.Tensor, *rest: torch.Tensor):
    leaf = logp.clone().requires_grad_(True)
    value, metrics = fn(leaf, *rest)
    value.backward()
    return value.detach(), leaf.grad, {k: v for k, v in metrics.items()}


@pytest.mark.parametrize("loss,aggregation,seed", list(itertools.product(
    POLICY_LOSSES.names(), AGGREGATIONS.names(), range(3))))
def test_a_loss_ignores_any_garbage_on_padding(loss, aggregation, seed):
    logp, old, _, adv = inputs(seed)

    def fn(lp, old_lp, advantages):
        per_token, metrics = policy_loss(loss, lp, old_lp, advantages, MASK, clip_eps_low=0.2,
                                         clip_eps_high=0.28, dual_clip_c=3.0)
        return aggregate(per_token, MASK, aggregation, constant=5.0), metrics

    clean = value_and_grad(fn, logp * MASK, old * MASK, adv * MASK)
    dirty = value_and_grad(fn, soiled(logp, seed), soiled(old, seed + 1), soiled(adv, seed + 2))
    assert torch.isfinite(dirty[0]) and torch.isfinite(dirty[1]).all()
    assert torch.equal(clean[0], dirty[0]) and torch.equal(clean[1], dirty[1])
    assert (dirty[1][MASK == 0] == 0).all()
    for key, value in clean[2].items():
        assert torch.equal(value, dirty[2][key]), key


@pytest.mark.parametrize("estimator,grad_name,aggregation", list(itertools.product(
    KL_ESTIMATORS.names(), [None, "k2"], AGGREGATIONS.names())))
def test_a_kl_ignores_any_garbage_on_padding(estimator, grad_name, aggregation):
    logp, _, ref, _ = inputs(7)

    def fn(lp, ref_lp):
        kl = kl_penalty(estimator, lp, ref_lp, mask=MASK, grad_name=grad_name)
        return aggregate(kl, MASK, aggregation, constant=5.0), {}

    clean = value_and_grad(fn, logp * MASK, ref * MASK)
    dirty = value_and_grad(fn, soiled(logp, 1), soiled(ref, 2))
    assert torch.equal(clean[0], dirty[0]) and torch.equal(clean[1], dirty[1])
    assert torch.isfinite(dirty[1]).all()


def test_kl_in_the_reward_sequence_log_probs_and_credit_ignore_garbage_on_padding():
    logp, old, ref, _ = inputs(3)
    rewards = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)
    clean = kl_shaped_rewards(rewards, old * MASK, ref * MASK, MASK, coef=0.1, estimator="k3")
    dirty = kl_shaped_rewards(rewards, soiled(old, 4), soiled(ref, 5), MASK, coef=0.1, estimator="k3")
    assert all(torch.equal(a, b) for a, b in zip(clean, dirty, strict=True))
    assert torch.equal(sequence_logprob(logp * MASK, MASK), sequence_logprob(soiled(logp, 6), MASK))
    deltas = torch.tensor([[0.5, -0.5], [1.0, -1.0]], dtype=torch.float64)
    norms = logp.exp()  # per-token score norms (optimal-token-baseline weighs by them)
    for name in CREDIT.names():
        a = token_advantages(name, deltas, logp * MASK, MASK, mode="centered", score_norms=norms * MASK)
        b = token_advantages(name, deltas, soiled(logp, 8), MASK, mode="centered", score_norms=soiled(norms, 9))
        assert torch.equal(a, b), name


def test_a_real_token_past_the_clamp_gives_a_finite_loss_and_gradient():
    """log r = 100 on a real token would be r = inf in float32: clamped at 20, finite everywhere."""
    logp = torch.tensor([[100.0, 0.0]], requires_grad=True)
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    for name in POLICY_LOSSES.names():
        per_token, metrics = policy_loss(name, logp, old, -torch.ones(1, 2), mask)
        per_token.sum().backward()
        assert torch.isfinite(per_token).all() and torch.isfinite(logp.grad).all(), name
        assert all(torch.isfinite(v).all() for v in metrics.values()), name
        logp.grad = None
    kl = kl_penalty("k3", -logp, torch.zeros(1, 2), mask=mask)   # log r = 100 in k3's exp
    assert torch.isfinite(kl).all()


def test_the_trainers_loss_ignores_garbage_on_padding(tmp_path):
    """compute_loss with KL (ratio-weighted), entropy and every per-token input soiled on padding:
    the same loss and the same parameter gradients as with clean padding."""
    cfg = load_config(None, {"train.prompts_per_step": 2, "train.group_size": 2, "algo.kl_coef": 0.1,
                             "algo.kl_ratio_weight": True, "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    batch = t.make_batch(t.rollout_backend.rollouts(2))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    batch.loss_mask = mask

    def loss_and_grads(b):
        t.policy.zero_grad()
        loss, _ = compute_loss(t.policy, b, cfg.algo, temperature=1.0, aggregation_constant=3.0,
                               entropy_coef=0.01)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in t.policy.parameters()]

    clean = loss_and_grads(batch)
    junk = torch.tensor([float("nan"), float("inf"), -1e30, 100.0])[torch.arange(12).reshape(4, 3) % 4]
    batch.rollouts.logprobs = torch.where(mask != 0, batch.rollouts.logprobs, junk)
    batch.ref_logprobs = torch.where(mask != 0, batch.ref_logprobs, -junk)
    batch.advantages = torch.where(mask != 0, batch.advantages, junk)
    dirty = loss_and_grads(batch)
    assert torch.isfinite(dirty[0]) and torch.equal(clean[0], dirty[0])
    assert all(torch.equal(a, b) for a, b in zip(clean[1], dirty[1], strict=True))
