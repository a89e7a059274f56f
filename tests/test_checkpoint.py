"""Checkpoints: exact round trips, atomic writes, checksums, pruning, and resume in process."""

import inspect
import json
import random

import numpy as np
import pytest
import torch

from rlvr.config import load_config
from rlvr.runs.checkpoint import MANIFEST, STATE, TENSORS, Checkpoints, join_tensors, split_tensors
from rlvr.trainer import Trainer, train


def comparable(rows):  # timings (time/*, perf/*) differ between any two runs
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in rows]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def config(run_dir, **overrides):
    base = {"run_dir": str(run_dir), "train.outer_steps": 8, "train.inner_steps": 3, "eval.every": 4,
            "checkpoint.every": 2, "algo.loss": "clipped", "algo.kl_coef": 0.1, "algo.ref_refresh_every": 3,
            "optim.name": "adamw"}
    return load_config(None, {**base, **overrides})


def test_split_and_join_restore_an_optimizer_state_exactly():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "python": random.getstate(), "np": np.random.default_rng(1).bit_generator.state}
    skeleton, tensors = split_tensors(state)
    back = join_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert set(back["optimizer"]["state"]) == {0, 1}  # integer keys, not "0", "1"
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"] == optimizer.state_dict()["param_groups"]  # betas stay a tuple
    assert back["python"] == state["python"] and back["np"] == state["np"]


def test_save_load_round_trip_and_only_the_newest_and_best_are_kept(tmp_path):
    store = Checkpoints(tmp_path, keep=2, best_metric="eval/reward_mean")
    for step, reward in [(1, 0.5), (2, 3.0), (3, 1.0), (4, None), (5, 2.0)]:
        held_out = {} if reward is None else {"eval/reward_mean": reward}
        store.save(step, {"w": torch.full((2, 2), float(step)), "step": step}, metrics=held_out)
    assert [s for s, _ in store.steps()] == [5, 4, 2]  # newest two, plus the best (step 2)
    assert store.best().name == "step-000002"
    found = store.latest()
    assert found.step == 5 and found.state["step"] == 5 and torch.equal(found.state["w"], torch.full((2, 2), 5.0))
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary leftovers


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "no-manifest", "bad-json", "extra-file-in-manifest"])
def test_a_corrupted_checkpoint_is_detected_and_the_previous_one_is_used(tmp_path, damage):
    warnings = []
    store = Checkpoints(tmp_path, keep=3, on_warning=warnings.append)
    for step in (1, 2):
        store.save(step, {"w": torch.full((64,), float(step))})
    newest = tmp_path / "checkpoints" / "step-000002"
    if damage == "flip-byte":
        data = bytearray((newest / TENSORS).read_bytes())
        data[-3] ^= 0xFF
        (newest / TENSORS).write_bytes(bytes(data))
    elif damage == "truncate":
        (newest / TENSORS).write_bytes((newest / TENSORS).read_bytes()[:40])
    elif damage == "no-manifest":
        (newest / MANIFEST).unlink()
    elif damage == "bad-json":
        (newest / STATE).write_text("{")
    else:
        manifest = json.loads((newest / MANIFEST).read_text())
        manifest["files"]["model.pt"] = {"sha256": "0", "bytes": 0}
        (newest / MANIFEST).write_text(json.dumps(manifest))
    found = store.latest()
    assert found.step == 1 and torch.equal(found.state["w"], torch.full((64,), 1.0))
    assert len(warnings) == 1 and "step-000002" in warnings[0]


def test_a_checkpoint_interrupted_before_its_rename_is_invisible(tmp_path):
    store = Checkpoints(tmp_path, keep=3)
    store.save(1, {"w": torch.ones(2)})
    partial = tmp_path / "checkpoints" / ".step-000002.abc.tmp"  # what a crash mid-write leaves
    partial.mkdir()
    (partial / TENSORS).write_bytes(b"partial")
    assert store.latest().step == 1
    store.save(3, {"w": torch.ones(2)})
    assert not partial.exists()


class Crash(Exception):
    pass


def crash_during_step(trainer, crash_step):
    """Run ``trainer`` until it dies in the middle of outer step ``crash_step``."""
    outer_step = trainer.outer_step

    def dying(step):
        row = outer_step(step)
        if step == crash_step:
            raise Crash
        return row

    trainer.outer_step = dying
    with pytest.raises(Crash):
        trainer.run()


def test_resume_in_process_continues_exactly(tmp_path):
    reference = train(config(tmp_path / "ref"), show_progress=False)

    run = tmp_path / "run"
    crash_during_step(Trainer(config(run), show_progress=False), 6)  # last checkpoint: step 4
    resumed = Trainer(config(run), show_progress=False)
    summary = resumed.run(resume=True)
    assert summary["final"] == reference["final"]
    assert comparable(metrics(run)) == comparable(metrics(tmp_path / "ref"))
    assert [r["step"] for r in metrics(run)] == list(range(9))
    for name in ("policy", "reference"):
        ref_state = Checkpoints(tmp_path / "ref", keep=1).latest().state[name]
        for key, value in getattr(resumed, name).state_dict().items():
            assert torch.equal(value, ref_state[key]), (name, key)


def test_resume_without_a_checkpoint_starts_over(tmp_path):
    run = tmp_path / "run"
    cfg = config(run, **{"checkpoint.every": 0})
    (run).mkdir()
    (run / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1}\n{"ste')  # a run killed early
    summary = Trainer(cfg, show_progress=False).run(resume=True)
    assert [r["step"] for r in metrics(run)] == list(range(9))
    assert summary["final"] == train(config(tmp_path / "ref"), show_progress=False)["final"]


def test_a_fresh_run_refuses_to_overwrite_an_unfinished_run(tmp_path):
    from rlvr.errors import UserError
    run = tmp_path / "run"
    crash_during_step(Trainer(config(run), show_progress=False), 3)
    with pytest.raises(UserError, match="unfinished run; continue it with --resume"):
        Trainer(config(run), show_progress=False).run()


SKIPPED = {"cfg", "task", "record", "started_at", "state", "hooks"}


def snapshot(trainer):
    """Every piece of a trainer's state that a resume must restore, by attribute name, so that state a
    future change adds (a scalar, a module, a generator) is compared without this test knowing it."""
    out = {}
    for name, value in vars(trainer).items():
        if name in SKIPPED or inspect.isroutine(value):
            continue
        if isinstance(value, torch.nn.Module):
            out[name] = {k: v.tolist() for k, v in value.state_dict().items()}
        elif isinstance(value, torch.Generator):
            out[name] = value.get_state().tolist()
        elif isinstance(value, torch.optim.Optimizer):
            out[name] = json.dumps(split_tensors(value.state_dict())[0]), {
                k: v.tolist() for k, v in split_tensors(value.state_dict())[1].items()}
        elif hasattr(value, "state_dict"):
            out[name] = repr(value.state_dict())
        elif isinstance(value, (int, float, str, bool, type(None))):
            out[name] = value
    return out


@pytest.mark.parametrize("lr_schedule", [{}, {"optim.warmup_steps": 5, "optim.lr_schedule": "cosine",
                                         "optim.min_lr_ratio": 0.1}])
def test_a_resumed_trainer_equals_the_uninterrupted_one_attribute_by_attribute(tmp_path, lr_schedule):
    from rlvr.config import AlgoConfig
    extra = dict(lr_schedule)  # a learning rate that changes each inner step continues exactly
    if "kl_target" in AlgoConfig.__dataclass_fields__:  # adaptive KL: a coefficient that changes each step
        extra["algo.kl_target"] = 0.001
    whole = Trainer(config(tmp_path / "whole", **extra), show_progress=False)
    whole.run()
    crash_during_step(Trainer(config(tmp_path / "run", **extra), show_progress=False), 7)
    resumed = Trainer(config(tmp_path / "run", **extra), show_progress=False)
    resumed.run(resume=True)
    assert snapshot(resumed) == snapshot(whole)
    assert comparable(resumed.history) == comparable(whole.history)
    # the declared state (TrainState) but the wall time, field by field
    for name in ("kl_coef", "nonfinite_streak", "sft_final", "optimizer_steps"):
        assert getattr(resumed.state, name) == getattr(whole.state, name), name


def test_a_checkpoint_written_before_train_state_still_resumes(tmp_path):
    """Older checkpoints held the loop's scalars, history, SFT metrics and wall time as loose keys."""
    t = Trainer(config(tmp_path / "run", **{"algo.kl_target": 0.001}), show_progress=False)
    t.run()
    state = t.state_dict()
    new = state.pop("train_state")
    old = {**state, "scalars": {"kl_coef": new["kl_coef"], "nonfinite_streak": 2, "aggregation_constant": 3.0},
           "history": new["history"], "sft_final": new["sft_final"], "wall_seconds": new["wall_seconds"]}
    fresh = Trainer(config(tmp_path / "other", **{"algo.kl_target": 0.001}), show_progress=False)
    fresh.load_state_dict(old)
    assert fresh.state.kl_coef == new["kl_coef"] != 0.1 and fresh.state.nonfinite_streak == 2
    assert fresh.history == new["history"] and fresh.state.wall_seconds == new["wall_seconds"]
