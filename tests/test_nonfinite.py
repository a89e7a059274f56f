"""A non-finite loss or gradient skips its update (logged); K in a row stop the run cleanly."""

import json

import pytest
import torch

import rlvr.trainer
from rlvr.config import load_config
from rlvr.errors import RunStopped
from rlvr.runs.checkpoint import Checkpoints
from rlvr.trainer import Trainer


def poison_losses(monkeypatch, bad_calls):
    """Make the loss NaN on the given (1-based) calls of compute_loss."""
    real = rlvr.trainer.compute_loss
    calls = {"n": 0}

    def compute_loss(*args, **kwargs):
        calls["n"] += 1
        loss, metrics = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] in bad_calls else loss), metrics

    monkeypatch.setattr(rlvr.trainer, "compute_loss", compute_loss)


def config(tmp_path, **overrides):
    base = {"run_dir": str(tmp_path / "run"), "train.outer_steps": 4, "train.inner_steps": 2,
            "eval.every": 10, "checkpoint.every": 1, "train.nonfinite_patience": 3,
            "train.diagnostics_every": 0}  # diagnostics call compute_loss too: keep the call count to the inner loop
    return load_config(None, {**base, **overrides})


def test_a_nan_loss_skips_its_update_leaves_weights_and_optimizer_untouched_and_is_logged(tmp_path, monkeypatch):
    poison_losses(monkeypatch, bad_calls={3})  # the first inner step of outer step 2
    trainer = Trainer(config(tmp_path), show_progress=False)
    trainer.outer_step(1)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    adam_before = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items()}
    step = trainer.optimizer.step

    taken = []
    trainer.optimizer.step = lambda *a, **k: (taken.append(1), step(*a, **k))
    row = trainer.outer_step(2)
    assert row["fault/skipped_updates"] == 0.5 and len(taken) == 1  # one of the two inner updates skipped
    assert trainer.state.nonfinite_streak == 0                            # the next one was finite again
    assert all(torch.isfinite(v).all() for v in trainer.policy.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in trainer.policy.state_dict().items())
    assert int(trainer.optimizer.state_dict()["state"][0]["step"]) == int(adam_before["step"]) + 1


def test_k_nonfinite_updates_in_a_row_stop_the_run_with_its_last_checkpoint_intact(tmp_path, monkeypatch):
    poison_losses(monkeypatch, bad_calls={5, 6, 7})  # outer steps 3 (both inner steps) and 4 (the first)
    trainer = Trainer(config(tmp_path), show_progress=False)
    with pytest.raises(RunStopped, match=r"3 non-finite losses or gradients in a row \(train.nonfinite_patience 3\).*step-000003"):
        trainer.run()
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and rows[3]["fault/skipped_updates"] == 1.0
    found = Checkpoints(run, keep=5).latest()  # the checkpoint at step 3 was written after a skipped step:
    assert found.step == 3                       # its weights are those of step 2, all finite
    assert all(torch.isfinite(v).all() for v in found.state["policy"].values())
    assert not (run / "summary.json").exists()
