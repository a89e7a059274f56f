"""Behaviour unchanged, proven: short runs recorded before a reorganisation (tests/golden/, written by
``python tests/golden_runs.py --record``) replay to the same metric rows (timings aside) and the same
final weights, bit for bit (or to 1e-6 relative for a run listed in ``golden_runs.ALLCLOSE``, where a
move changed a summation order; the reason is given there), on a machine that rounds as the recording
one did (``golden_runs.skip_reason``; elsewhere they are skipped, saying why)."""

import functools
import json
import math

import pytest

from golden_runs import ADDED_METRICS, ALLCLOSE, GOLDEN, RUNS, run, skip_reason


@functools.cache
def machine_skip_reason():
    return skip_reason()


def skip_unless_this_machine_replays():
    reason = machine_skip_reason()
    if reason:
        pytest.skip(reason)


def local_runs():
    return [name for name, (_, _, ray) in RUNS.items() if not ray]


def compare(name, recorded, replayed):
    assert recorded["args"] == replayed["args"], f"{name}: the recorded command changed; record it again"
    assert len(replayed["metrics"]) == len(recorded["metrics"]), name
    for old, new in zip(recorded["metrics"], replayed["metrics"], strict=True):
        assert set(old) == set(new) - ADDED_METRICS, (name, old["step"], set(old) ^ (set(new) - ADDED_METRICS))
        for key, value in old.items():
            if name in ALLCLOSE and isinstance(value, float) and new[key] is not None:
                assert math.isclose(new[key], value, rel_tol=1e-6, abs_tol=1e-9), (name, old["step"], key)
            else:
                assert new[key] == value, (name, old["step"], key, value, new[key])
    if name in ALLCLOSE:
        for tensor, (total, squares) in recorded["weights"]["tensors"].items():
            got = replayed["weights"]["tensors"][tensor]
            assert math.isclose(got[0], total, rel_tol=1e-6, abs_tol=1e-6), (name, tensor)
            assert math.isclose(got[1], squares, rel_tol=1e-6), (name, tensor)
    else:
        assert replayed["weights"]["sha256"] == recorded["weights"]["sha256"], f"{name}: final weights differ"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", local_runs())
def test_a_golden_run_replays_exactly(name, tmp_path):
    if name == "hf-5steps":
        pytest.importorskip("transformers")
    skip_unless_this_machine_replays()
    recorded = json.loads((GOLDEN / f"{name}.json").read_text())
    compare(name, recorded, run(name, tmp_path))


@pytest.mark.distributed
@pytest.mark.timeout(900)
def test_the_ray_golden_run_replays_exactly(tmp_path):
    pytest.importorskip("ray")
    skip_unless_this_machine_replays()
    recorded = json.loads((GOLDEN / "ray-2workers.json").read_text())
    compare("ray-2workers", recorded, run("ray-2workers", tmp_path))
