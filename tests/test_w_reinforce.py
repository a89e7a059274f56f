"""Positive and negative sample reinforcement (Zhu et al. 2025, arXiv:2506.01347): the deltas ``psr``,
``nsr`` and ``w-reinforce`` by hand, their expected gradient by enumeration, the settings' plumbing
(config, trainer, process credit) and the ``--algo w-reinforce`` recipe from the command line."""

import json
import math

import pytest
import torch

from rlvr.algorithms import compute_deltas, token_advantages
from rlvr.algorithms.deltas import mode_settings
from rlvr.cli import main
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.recipes import RECIPES
from rlvr.trainer import Trainer
from test_cli import rlvr
from test_gradient_unbiased import REWARD_TABLE, exact_gradient, expected_estimator

REWARDS = torch.tensor([[0.0, 1.0, 0.5, 0.25],
                        [1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)


def test_deltas_by_hand():
    """0/1 rewards: PSR 1 / 0, NSR 0 / -1, W-REINFORCE lambda / -1; partial credit R counts as R of a
    success and 1 - R of a failure: lambda R - (1 - R)."""
    assert compute_deltas(REWARDS, "psr").tolist() == [[0.0, 1.0, 0.5, 0.25], [1.0, 1.0, 1.0, 0.0]]
    assert compute_deltas(REWARDS, "nsr").tolist() == [[-1.0, 0.0, -0.5, -0.75], [0.0, 0.0, 0.0, -1.0]]
    default = compute_deltas(REWARDS, "w-reinforce")                         # lambda = 0.1
    torch.testing.assert_close(default, torch.tensor([[-1.0, 0.1, -0.45, -0.725], [0.1, 0.1, 0.1, -1.0]],
                                                     dtype=torch.float64))
    half = compute_deltas(REWARDS, "w-reinforce", settings={"positive_weight": 0.5})
    assert half.tolist() == [[-1.0, 0.5, -0.25, -0.625], [0.5, 0.5, 0.5, -1.0]]


def test_w_reinforce_is_lambda_psr_plus_nsr_with_reinforce_and_nsr_at_the_ends():
    rewards = torch.rand(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.4 - 0.2
    psr, nsr = compute_deltas(rewards, "psr"), compute_deltas(rewards, "nsr")
    for weight in (0.0, 0.1, 0.37, 1.0, 3.0):
        w = compute_deltas(rewards, "w-reinforce", settings={"positive_weight": weight})
        torch.testing.assert_close(w, weight * psr + nsr)
    assert torch.equal(compute_deltas(rewards, "w-reinforce", settings={"positive_weight": 0.0}), nsr)
    torch.testing.assert_close(compute_deltas(rewards, "w-reinforce", settings={"positive_weight": 1.0}),
                               2 * rewards - 1)  # REINFORCE on the +-1 reward


def test_no_baseline_a_delta_depends_on_its_own_reward_alone():
    other = REWARDS.clone()
    other[:, 1:] = torch.tensor([[0.9, 0.0, 0.3], [0.2, 0.7, 1.0]], dtype=torch.float64)
    for mode in ("psr", "nsr", "w-reinforce"):
        assert torch.equal(compute_deltas(other, mode)[:, 0], compute_deltas(REWARDS, mode)[:, 0])
        assert torch.equal(compute_deltas(REWARDS[:, :1], mode), compute_deltas(REWARDS, mode)[:, :1])  # G = 1


@pytest.mark.parametrize(("mode", "settings", "factor"), [("psr", None, 1.0), ("nsr", None, 1.0),
                                                          ("w-reinforce", None, 1.1),
                                                          ("w-reinforce", {"positive_weight": 0.5}, 1.5)])
def test_the_expected_gradient_is_a_multiple_of_the_exact_one(tiny_toy, mode, settings, factor):
    """delta = (1 + lambda) R - 1: the -1 is a constant baseline, so E[delta grad log pi] =
    (1 + lambda) grad E[R] exactly (by enumeration; PSR: lambda -> the R term alone, NSR: lambda = 0).
    PSR and NSR have the same expected gradient; they differ in which samples carry it."""
    policy, responses = tiny_toy
    exact = exact_gradient(policy, responses)
    assert exact.norm() > 1e-3 and REWARD_TABLE.max() > 1  # rewards beyond [0, 1] extend the same lines
    expected = expected_estimator(policy, responses, mode, group_size=2, settings=settings)
    torch.testing.assert_close(expected, factor * exact, rtol=1e-9, atol=1e-10)


def test_settings_reach_the_mode_and_only_known_ones_pass():
    assert mode_settings("w-reinforce") == {"positive_weight": 0.1}
    assert mode_settings("w-reinforce", {"positive_weight": 0.3, "norm_eps": 1.0}) == {"positive_weight": 0.3}
    assert mode_settings("grpo", {"positive_weight": 0.3, "unbiased_std": False}) == {}
    with pytest.raises(TypeError, match="no deltas mode has the setting"):
        mode_settings("psr", {"positive_wieght": 0.3})


def test_the_config_owns_positive_weight_for_w_reinforce_only():
    assert load_config(None, {"algo.deltas": "w-reinforce"}).algo.positive_weight == 0.1
    assert load_config(None, {"algo.deltas": "w-reinforce", "algo.positive_weight": 0}).algo.positive_weight == 0
    assert load_config(None, {"algo.deltas": "nsr", "train.group_size": 1}).train.group_size == 1  # no group needed
    with pytest.raises(ConfigError, match=r"algo.positive_weight: -0.5 must be >= 0.0"):
        load_config(None, {"algo.deltas": "w-reinforce", "algo.positive_weight": -0.5})
    with pytest.raises(ConfigError, match="algo.positive_weight: a setting of algo.deltas 'w-reinforce', not of "
                                          "the chosen 'psr'"):
        load_config(None, {"algo.deltas": "psr", "algo.positive_weight": 0.5})
    # the recipe's lambda goes with its deltas when a flag picks another mode
    assert load_config(None, {"algo.deltas": "nsr"}, recipe="w-reinforce").algo.deltas == "nsr"


def trainer(tmp_path, **overrides):
    cfg = load_config(None, {"task.reward": "position-match", "train.prompts_per_step": 3, "train.group_size": 4,
                             "algo.deltas": "w-reinforce", "algo.positive_weight": 0.5,
                             "run_dir": str(tmp_path / "run"), **overrides})
    return Trainer(cfg, show_progress=False)


def test_the_trainer_passes_the_modes_settings(tmp_path):
    """make_batch: deltas = 0.5 R - (1 - R) with the configured lambda, broadcast over the tokens."""
    t = trainer(tmp_path)
    rollouts = t.rollout_backend.rollouts(3)
    batch = t.make_batch(rollouts)
    assert len(set(rollouts.rewards.flatten().tolist())) > 1
    torch.testing.assert_close(batch.deltas, 0.5 * rollouts.rewards - (1 - rollouts.rewards))
    torch.testing.assert_close(batch.advantages, batch.deltas.reshape(-1, 1).expand_as(rollouts.mask) * rollouts.mask)


def test_process_credit_applies_the_mode_with_its_settings_to_each_rewards_to_go(tmp_path):
    """credit process: A_it = lambda G_it - (1 - G_it), G_it the reward-to-go of position t."""
    t = trainer(tmp_path, **{"algo.credit": "process"})
    rollouts = t.rollout_backend.rollouts(3)
    batch = t.make_batch(rollouts)
    token_rewards = torch.tensor([t.task.token_rewards(rollouts.prompts[n // 4], response)
                                  for n, response in enumerate(rollouts.responses())], dtype=torch.float)
    to_go = token_rewards.flip(-1).cumsum(-1).flip(-1)
    torch.testing.assert_close(batch.advantages, (0.5 * to_go - (1 - to_go)) * rollouts.mask)
    direct = token_advantages("process", batch.deltas, token_rewards, rollouts.mask, mode="w-reinforce",
                              settings={"positive_weight": 0.5})
    torch.testing.assert_close(direct, batch.advantages)


def test_the_recipe_values():
    assert RECIPES.get("w-reinforce") == {"algo.deltas": "w-reinforce", "algo.positive_weight": 0.1,
                                          "algo.loss": "naive", "algo.aggregation": "token-mean", "algo.kl_coef": 0.0,
                                          "algo.dynamic_sampling": False, "algo.adaptive_sampling": "none"}
    cfg = load_config(None, recipe="w-reinforce")
    assert (cfg.algo.deltas, cfg.algo.positive_weight, cfg.algo.loss, cfg.algo.kl_coef) == ("w-reinforce", 0.1,
                                                                                           "naive", 0.0)


@pytest.mark.parametrize("extra", [[], ["--algo.deltas", "nsr"], ["--rewards.sources", "[{kind: exact, weight: 1}]"]])
def test_w_reinforce_trains_sort_toy_from_the_command_line(tmp_path, extra):
    run = tmp_path / "run"
    out = rlvr("train", "--config", "sort-toy", "--algo", "w-reinforce", *extra, "--train.outer_steps", "3",
               "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    text = (run / "config.yaml").read_text()
    assert "loss: naive" in text and "kl_coef: 0.0" in text
    assert ("deltas: nsr" in text) == ("nsr" in extra) and ("deltas: w-reinforce" in text) == ("nsr" not in extra)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss/total" in r]
    assert len(trained) == 3 and all(math.isfinite(r["loss/total"]) for r in trained)
    assert all(r["train/delta_abs_mean"] > 0 for r in trained)   # no baseline: every response has a delta
    assert any(r["policy/approx_kl"] > 0 for r in trained)


def test_a_bad_positive_weight_is_one_line_and_exit_code_2(capsys):
    assert main(["train", "--config", "sort-toy", "--algo", "w-reinforce", "--algo.positive_weight", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "rlvr: error: algo.positive_weight: -1.0 must be >= 0.0\n"
