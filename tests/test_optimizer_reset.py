"""optim.reset_every (ProRL's optimizer half of a hard reset): which outer steps clear the optimizer,
that the first update after a reset is a fresh Adam's first step (|delta theta| = lr on every
coordinate with a gradient) at the learning rate of the GLOBAL step, and that a run killed and
resumed across reset steps ends where the uninterrupted run ends."""

from pathlib import Path

import pytest
import torch

from rlvr.config import load_config
from rlvr.hooks import TrainerHook
from rlvr.optim import lr_multiplier
from rlvr.recipes import RECIPES
from rlvr.trainer import Trainer, periodic
from test_checkpoint import comparable, crash_during_step, snapshot

SORT_TOY = Path(__file__).resolve().parents[1] / "configs" / "sort-toy.yaml"
LR = 0.01
EPS = 1e-8  # torch Adam's default eps (rlvr does not change it)


def test_reset_and_refresh_steps_are_1_plus_k_n():
    assert [s for s in range(1, 12) if periodic(s, 3)] == [4, 7, 10]
    assert [s for s in range(1, 6) if periodic(s, 1)] == [2, 3, 4, 5]
    assert [s for s in range(1, 12) if periodic(s, 0)] == []
    assert [s for s in range(1, 12) if periodic(s, 10)] == [11]


class Updates(TrainerHook):
    """Per outer step: the parameters before and after its (single) inner step, and that step's gradient."""

    def __init__(self):
        self.before, self.grad, self.after = {}, {}, {}

    @staticmethod
    def flat(policy, attr=None):
        params = list(policy.trainable_parameters())
        return torch.cat([(p.grad if attr == "grad" else p).detach().reshape(-1).clone() for p in params])

    def before_inner(self, step, policy, batch, loss_of):
        self.step = step
        self.before[step] = self.flat(policy)
        return {}

    def after_backward(self, policy, batch, loss_of):
        self.grad[self.step] = self.flat(policy, "grad")
        return {}

    def after_inner(self, step, policy, batch):
        self.after[step] = self.flat(policy)
        return {}


def run(tmp_path, name, **overrides):
    """sort-toy (entropy bonus on: every step has a gradient), one inner step per outer step."""
    base = {"run_dir": str(tmp_path / name), "train.outer_steps": 5, "train.inner_steps": 1,
            "optim.lr": LR, "eval.every": 5, "checkpoint.every": 0}
    cfg = load_config(SORT_TOY, {**base, **overrides})
    hook = Updates()
    trainer = Trainer(cfg, show_progress=False, hooks=[hook])
    trainer.run()
    return trainer, hook


def fresh_adam_step(grad, lr):
    """Adam's first update from m = v = 0 (bias-corrected m / sqrt(v) = g / |g|), no weight decay."""
    return -lr * grad / (grad.abs() + EPS)


def test_the_first_update_after_a_reset_is_a_fresh_adams_first_step(tmp_path):
    trainer, hook = run(tmp_path, "reset", **{"optim.reset_every": 2})        # resets at steps 3 and 5
    plain_trainer, plain = run(tmp_path, "plain")
    for step in (1, 3, 5):
        grad = hook.grad[step]
        assert (grad.abs() > 1e-4).sum() >= 20, "the checked step must have a gradient"
        delta = hook.after[step] - hook.before[step]
        torch.testing.assert_close(delta, fresh_adam_step(grad, LR), rtol=1e-5, atol=3e-7)  # float32 theta_after - theta_before
        moved = grad.abs() > 1e-4
        torch.testing.assert_close(delta[moved].abs(), torch.full((int(moved.sum()),), LR), rtol=1e-3, atol=0)
    for step in (2, 4):  # between resets Adam has a history: its update is not the first step's
        delta = hook.after[step] - hook.before[step]
        assert not torch.allclose(delta, fresh_adam_step(hook.grad[step], LR), rtol=1e-3, atol=1e-7)
    # without resets step 3's update carries the moments of steps 1-2; the runs agree until the reset
    assert torch.equal(plain.after[2], hook.after[2])
    assert not torch.allclose(plain.after[3] - plain.before[3], fresh_adam_step(plain.grad[3], LR),
                              rtol=1e-3, atol=1e-7)
    # Adam's step count restarted at the reset of step 5: one step since
    steps = {float(s["step"]) for s in trainer.optimizer.state.values()}
    assert steps == {1.0} and {float(s["step"]) for s in plain_trainer.optimizer.state.values()} == {5.0}
    assert [row["optim/reset"] for row in trainer.history[1:]] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert "optim/reset" not in plain_trainer.history[-1]


def test_the_learning_rate_schedule_is_not_reset(tmp_path):
    schedule = {"optim.warmup_steps": 2, "optim.lr_schedule": "cosine", "optim.min_lr_ratio": 0.1}
    trainer, hook = run(tmp_path, "reset", **schedule, **{"optim.reset_every": 2})
    plain_trainer, _ = run(tmp_path, "plain", **schedule)
    lrs = [row["optim/lr"] for row in trainer.history[1:]]
    assert lrs == [row["optim/lr"] for row in plain_trainer.history[1:]]
    # after the reset of step 5: the global step's rate (optimizer step 4 of 5: 2/3 of the cosine),
    # not the warmup's first (0.5 lr)
    expected = LR * lr_multiplier(4, total=5, warmup=2, schedule="cosine", min_ratio=0.1)
    assert expected == pytest.approx(LR * (0.1 + 0.9 * 0.25)) and lrs[4] == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(hook.after[5] - hook.before[5], fresh_adam_step(hook.grad[5], expected),
                               rtol=1e-5, atol=3e-7)  # float32 theta_after - theta_before


@pytest.mark.parametrize("crash_step", [4, 5])
def test_a_run_killed_and_resumed_across_a_reset_equals_the_uninterrupted_one(tmp_path, crash_step):
    """Resets (and reference refreshes) at steps 4 and 7; checkpoints every 2 steps. Crashing in step 4
    resumes from step 2's checkpoint (both resets in the resumed part); in step 5, from step 4's (the
    checkpoint holds the optimizer just after a reset)."""
    def config(name):
        return load_config(None, {"run_dir": str(tmp_path / name), "train.outer_steps": 8, "train.inner_steps": 3,
                                  "eval.every": 4, "checkpoint.every": 2, "algo.loss": "clipped",
                                  "algo.kl_coef": 0.1, "algo.ref_refresh_every": 3, "optim.reset_every": 3})
    whole = Trainer(config("whole"), show_progress=False)
    whole.run()
    crash_during_step(Trainer(config("run"), show_progress=False), crash_step)
    resumed = Trainer(config("run"), show_progress=False)
    resumed.run(resume=True)
    assert snapshot(resumed) == snapshot(whole)
    assert comparable(resumed.history) == comparable(whole.history)
    assert [row["optim/reset"] for row in whole.history[1:]] == [0, 0, 0, 1, 0, 0, 1, 0]
    assert {float(s["step"]) for s in whole.optimizer.state.values()} == {6.0}  # reset at 7: steps 7, 8 x 3


def test_the_prorl_recipe_pairs_the_reference_refresh_with_the_optimizer_reset():
    values = RECIPES.get("prorl")
    assert values["algo.ref_refresh_every"] == values["optim.reset_every"] > 0
    cfg = load_config(None, recipe="prorl")
    assert cfg.algo.kl_coef > 0 and cfg.algo.dynamic_sampling and cfg.algo.clip_eps_high == 0.4
