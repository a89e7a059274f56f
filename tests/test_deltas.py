"""Deltas: the properties each mode promises, against plain definitions."""

import pytest
import torch

from rlvr.algorithms import DELTAS, compute_deltas
from rlvr.errors import ConfigError

torch.manual_seed(0)
REWARDS = torch.randn(6, 5) * 3 + 1  # (B, G)


def test_centered_has_zero_mean_per_prompt():
    deltas = compute_deltas(REWARDS, "centered")
    assert torch.allclose(deltas.mean(-1), torch.zeros(6), atol=1e-6)
    assert not torch.allclose(deltas, torch.zeros_like(deltas))


@pytest.mark.parametrize("mode", ["centered", "normalized", "rloo"])
def test_adding_a_constant_changes_nothing(mode):
    assert torch.allclose(compute_deltas(REWARDS, mode), compute_deltas(REWARDS + 7.5, mode), atol=1e-5)


@pytest.mark.parametrize("mode", ["raw", "max-only"])
def test_raw_and_max_only_do_see_a_constant_shift(mode):
    assert not torch.allclose(compute_deltas(REWARDS, mode), compute_deltas(REWARDS + 7.5, mode))


def test_normalized_is_invariant_to_positive_scaling():
    assert torch.allclose(compute_deltas(REWARDS, "normalized"), compute_deltas(REWARDS * 40.0, "normalized"), atol=1e-4)


def test_normalized_divides_by_the_unbiased_group_std_plus_eps():
    r = torch.tensor([[0.0, 1.0, 2.0, 5.0]])
    mean, std = r.mean(), ((r - r.mean()) ** 2).sum().div(3).sqrt()  # N-1
    assert torch.allclose(compute_deltas(r, "normalized", eps=1e-5), (r - mean) / (std + 1e-5))
    std_n = ((r - r.mean()) ** 2).mean().sqrt()
    assert torch.allclose(compute_deltas(r, "normalized", eps=1e-5, unbiased_std=False), (r - mean) / (std_n + 1e-5))


@pytest.mark.parametrize("mode", ["centered", "normalized", "rloo"])
def test_a_group_of_equal_rewards_gives_zeros_never_nan(mode):
    rewards = torch.tensor([[3.0, 3.0, 3.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    deltas = compute_deltas(rewards, mode)
    assert torch.isfinite(deltas).all()
    assert torch.equal(deltas[:2], torch.zeros(2, 3))
    assert deltas[2].abs().sum() > 0


def test_max_only_matches_its_definition():
    rewards = torch.tensor([[1.0, 4.0, 4.0, 2.0], [5.0, 0.0, 1.0, 5.0]])
    expected = [[r if r == max(row) else 0.0 for r in row] for row in rewards.tolist()]
    assert compute_deltas(rewards, "max-only").tolist() == expected


def test_rloo_matches_its_definition():
    deltas = compute_deltas(REWARDS, "rloo")
    batch, group = REWARDS.shape
    for b in range(batch):
        for i in range(group):
            others = torch.cat([REWARDS[b, :i], REWARDS[b, i + 1:]])
            assert deltas[b, i] == pytest.approx(float(REWARDS[b, i] - others.mean()), abs=1e-5)


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(ConfigError, match="did you mean 'centered'"):
        compute_deltas(REWARDS, "centred")
    assert {"raw", "centered", "normalized", "max-only", "rloo"} <= set(DELTAS.names())


def test_modes_that_compare_within_a_group_declare_it_and_validation_reads_the_registry():
    from rlvr.config import load_config
    needs = {name for name in DELTAS.names() if DELTAS.meta(name).get("needs_group")}
    assert needs == {"centered", "normalized", "grpo", "dr-grpo", "rloo", "pass-at-k", "gpg", "gdpo"}
    for name in DELTAS.names():
        overrides = {"algo.deltas": name, "train.group_size": 1}
        if name in needs:
            with pytest.raises(ConfigError, match=f"algo.deltas {name!r} needs group_size >= 2"):
                load_config(None, overrides)
        else:
            assert load_config(None, overrides).algo.deltas == name
