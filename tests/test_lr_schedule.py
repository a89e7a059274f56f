"""The learning-rate schedule (rlvr/optim.py): warmup and decay by hand, and in the trainer's rows."""

import math

import pytest

from rlvr.config import load_config
from rlvr.optim import lr_multiplier
from rlvr.trainer import Trainer


def test_warmup_then_constant_by_hand():
    values = [lr_multiplier(s, total=10, warmup=4, schedule="constant", min_ratio=0.0) for s in range(10)]
    assert values == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_linear_and_cosine_decay_to_the_floor_by_hand():
    # warmup 2 of 12 steps: the decay covers steps 2..12, p = (s - 2) / 10
    linear = [lr_multiplier(s, total=12, warmup=2, schedule="linear", min_ratio=0.1) for s in (0, 1, 2, 7, 11, 12)]
    assert linear == pytest.approx([0.5, 1.0, 1.0, 0.1 + 0.9 * 0.5, 0.1 + 0.9 * 0.1, 0.1])
    cosine = [lr_multiplier(s, total=12, warmup=2, schedule="cosine", min_ratio=0.0) for s in (2, 7, 12)]
    assert cosine == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert lr_multiplier(4, total=12, warmup=2, schedule="cosine", min_ratio=0.2) == pytest.approx(
        0.2 + 0.8 * (1 + math.cos(math.pi * 0.2)) / 2)


def test_the_trainer_steps_the_schedule_once_per_inner_step_and_logs_it(tmp_path):
    cfg = load_config(None, {"train.outer_steps": 3, "train.inner_steps": 2, "eval.every": 3, "optim.lr": 0.01,
                             "optim.warmup_steps": 2, "optim.lr_schedule": "linear",
                             "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    t.run()
    # steps 0..5 of 6: 0.5, 1 (warmup), then 1 - (s - 2) / 4 = 1, 0.75, 0.5, 0.25; each row the mean of its two
    assert [row["optim/lr"] for row in t.history[1:]] == pytest.approx([0.0075, 0.00875, 0.00375])
    assert t.state.optimizer_steps == 6
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)


def test_without_a_schedule_the_rows_do_not_log_a_learning_rate(tmp_path):
    cfg = load_config(None, {"train.outer_steps": 1, "train.inner_steps": 2, "eval.every": 1,
                             "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    t.run()
    assert "optim/lr" not in t.history[1] and t.optimizer.param_groups[0]["lr"] == 1e-3
