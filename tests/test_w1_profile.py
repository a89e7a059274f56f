"""W1's step profile (benchmarks/w1_profile.py): the operator table pinned by hand, bad arguments,
and a tiny run end to end on the W1 model (real trainer, real profiler). Times are never asserted,
only how they are put together."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import w1_profile  # noqa: E402


def test_the_operator_table_ranks_by_self_time_per_step_and_shares_the_matrix_products():
    self_us = {"aten::mm": 6000.0, "aten::mul": 3000.0, "aten::addmm": 2000.0, "aten::copy_": 1000.0}
    calls = {"aten::mm": 40, "aten::mul": 60, "aten::addmm": 20, "aten::copy_": 80}
    table = w1_profile.operator_table(self_us, calls, steps=2, top=2)
    assert table["self_ms_per_step"] == 6.0                    # 12 ms over 2 steps
    assert table["matmul_share"] == pytest.approx(8 / 12)      # mm + addmm
    assert table["operators"] == 100
    assert table["top"] == [{"op": "aten::mm", "self_ms_per_step": 3.0, "calls_per_step": 20},
                            {"op": "aten::mul", "self_ms_per_step": 1.5, "calls_per_step": 30}]
    assert w1_profile.operator_table({}, {}, steps=1, top=3) == {"self_ms_per_step": 0.0, "matmul_share": 0.0,
                                                                  "operators": 0.0, "top": []}


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: 0 (must be at least 1)"),
    (["--warmup", "-1"], "--warmup: -1 (must be at least 0)"),
    (["--betas", "-0.1"], "--betas: -0.1 (a KL coefficient is >= 0)"),
    (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        w1_profile.parse_args(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err


def test_a_tiny_profile_times_every_phase_and_lists_operators(tmp_path):
    out = tmp_path / "p.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w1_profile.py"), "--betas", "0.04",
                          "--warmup", "1", "--steps", "3", "--ops-steps", "1", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads(out.read_text())
    (beta,) = record["betas"]
    assert beta["beta"] == 0.04 and beta["steps"] == [2, 4]
    seconds = beta["seconds"]
    assert {"sample", "score", "reference", "inner", "step", "other"} <= set(seconds)
    assert all(seconds[p]["n"] == 3 for p in ("sample", "score", "reference", "inner", "step"))
    assert seconds["other"]["min"] >= 0  # every phase runs inside the step's clock
    for phase in ("sample", "reference", "inner"):
        table = beta["operators"][phase]
        assert 0 < table["matmul_share"] < 1 and table["operators"] > 10
        assert [t["self_ms_per_step"] for t in table["top"]] == sorted(
            (t["self_ms_per_step"] for t in table["top"]), reverse=True)
    assert any(t["op"] == "aten::mm" for t in beta["operators"]["inner"]["top"])
    assert record["provenance"]["commit"] and "beta 0.04: step" in run.stdout
