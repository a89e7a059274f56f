"""The zoo's delta modes against their definitions (unbiasedness: tests/test_gradient_unbiased.py)."""

import pytest
import torch

from rlvr.algorithms import DELTAS, compute_deltas

torch.manual_seed(0)
REWARDS = torch.randn(4, 6) * 2 + torch.arange(4.0)[:, None] * 5  # (B, G), prompts of different difficulty


def test_grpo_is_the_normalized_estimator_under_its_own_name():
    assert DELTAS.get("grpo") is DELTAS.get("normalized")
    assert torch.equal(compute_deltas(REWARDS, "grpo", eps=1e-4), compute_deltas(REWARDS, "normalized", eps=1e-4))


def test_dr_grpo_only_centres_and_keeps_the_reward_scale():
    deltas = compute_deltas(REWARDS, "dr-grpo")
    assert torch.allclose(deltas, REWARDS - REWARDS.mean(-1, keepdim=True))
    assert torch.allclose(compute_deltas(REWARDS * 10, "dr-grpo"), deltas * 10, atol=1e-5)


@pytest.mark.parametrize("unbiased", [True, False])
def test_reinforce_plus_plus_whitens_over_the_whole_batch_not_per_group(unbiased):
    deltas = compute_deltas(REWARDS, "reinforce++", eps=0.0, unbiased_std=unbiased)
    assert deltas.mean().abs() < 1e-5
    assert deltas.reshape(-1).std(correction=1 if unbiased else 0) == pytest.approx(1.0, abs=1e-5)
    # easy prompts (large rewards) keep positive deltas: there is no per-prompt baseline
    assert (deltas[-1] > 0).all() and (deltas[0] < 0).all()
    group_means = deltas.mean(-1)
    assert group_means.abs().max() > 0.5


def test_pass_at_k_is_the_leave_one_out_max_and_credits_only_a_unique_best():
    rewards = torch.tensor([[1.0, 4.0, 2.0, 3.0], [5.0, 0.0, 5.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    deltas = compute_deltas(rewards, "pass-at-k")
    for b, row in enumerate(rewards.tolist()):
        for i in range(len(row)):
            others = row[:i] + row[i + 1:]
            assert deltas[b, i].item() == pytest.approx(max(row) - max(others))
    assert deltas[0].tolist() == [0.0, 1.0, 0.0, 0.0]   # the best, by its margin over the runner-up
    assert deltas[1:].abs().sum() == 0                   # a tie for the best: nobody is decisive
