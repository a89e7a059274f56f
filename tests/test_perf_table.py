"""scripts/perf_table.py: docs/performance.md's generated tables equal what their JSON gives (the drift
test), and the rendering of small hand-made results files, number by number."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import perf_table  # noqa: E402


def test_the_performance_doc_matches_its_json():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "perf_table.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_every_generated_table_names_files_that_exist():
    text = (ROOT / "docs" / "performance.md").read_text()
    blocks = list(perf_table.BLOCK.finditer(text))
    assert {m["name"] for m in blocks} == {"w1", "decode", "w2", "tts", "w2trl"}
    for m in blocks:
        for name in m["files"].split():
            assert (perf_table.RESULTS / name).is_file(), name


def w1_result(**extra) -> dict:
    """Two tools at beta 0, two seeds each, hand-made round numbers."""
    def tool(median, per_seed, rss, imports):
        return {"step_median": median, "step_min": median / 2, "step_max": median * 2, "gen_median": 0.01,
                "train_median": median - 0.01, "completion_tokens_per_s": 1000.0, "mean_completion_tokens": 100.0,
                "peak_rss_mb": rss, "rss_after_imports_mb": imports, "reward_at_20": 0.05, "reward_at_200": None,
                "reward_last": 0.1, "achieved_gflops": 12.34, "step_median_per_seed": per_seed}
    return {"date": "2026-12-01", "steps": 20, "seeds": 2, "threads": 2,
            "machine": {"fp32_gflops": 300.4, "bf16_gflops": 700.6},
            "settings": {"rlvr_norm_eps": 1e-4},
            "prompt_lists": {"same_for_every_run": True},
            "tools": {"rlvr": {"0.0": tool(0.1, [0.1, 0.125], 400.0, 250.0)},
                      "trl": {"0.0": tool(0.4, [0.3, 0.5], 700.0, 450.0)}},
            "generation": {"rlvr": {"tokens_per_s": 3000.0,
                                    "tokens_per_s_per_repeat": {"median": 3000.0, "min": 2500.0, "max": 3500.0, "n": 4}},
                           "hf": {"tokens_per_s": 1500.0,
                                  "tokens_per_s_per_repeat": {"median": 1500.0, "min": 1400.0, "max": 1600.0, "n": 4}},
                           "rlvr_over_hf": 2.0},
            "provenance": {"commit": "0123456789abcdef", "dirty": False, "recorded_at": "2026-12-01T10:00:00",
                           "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.24.0", "trl": None},
                           "cpu_model": "Test CPU", "cpu_count": 2,
                           "load": {"load1_before": 0.25, "load1_after": 2.5, "busy": False}},
            **extra}


W1_EXPECTED = """\
<!-- perf:w1 begin: w1-test.json -->
From `w1-test.json`: 20 steps x 2 seeds, 2 threads, A B A B; matmul 512x512 fp32 300 GFLOP/s, bf16 701. \
Medians and full ranges over every step but each run's first; peak RSS with the RSS right after the imports in brackets:

| tool | beta | s/step median | min | max | generation s | training s | completion tok/s | peak RSS MB | useful GFLOP/s | reward @20 | reward @200 |
|---|---|---|---|---|---|---|---|---|---|---|---|
| rlvr | 0 | **0.100** | 0.050 | 0.200 | 0.010 | 0.090 | 1000 | 400 (250) | 12.3 | 0.050 | — |
| TRL | 0 | 0.400 | 0.200 | 0.800 | 0.010 | 0.390 | 1000 | 700 (450) | 12.3 | 0.050 | — |

TRL / rlvr step time, ratio of the medians: **4.00x at beta 0 (per seed 3.00-4.00x)**.
Generation alone (`w1-test.json`): rlvr 3000 tokens/s, HF `generate` 1500: **2.00x** (per repeat: rlvr 2500-3500, HF 1400-1600).
Same prompt list per seed for both tools: yes (hashes in the JSON); rlvr's norm_eps 0.0001.

- `w1-test.json`: commit 0123456789, 2026-12-01 10:00:00; python 3.11.7, torch 2.13.0, transformers 5.24.0; \
Test CPU, 2 cores, 1-minute load 0.25 -> 2.50 (quiet at the start)
<!-- perf:w1 end -->"""


def write(folder: Path, name: str, result: dict) -> None:
    (folder / name).write_text(json.dumps(result))


def doc_with(folder: Path, block: str) -> Path:
    doc = folder / "doc.md"
    doc.write_text(f"# Title\n\nprose before\n\n{block}\n\nprose after\n")
    return doc


def test_a_w1_table_is_rendered_as_pinned_and_the_prose_around_it_kept(tmp_path):
    write(tmp_path, "w1-test.json", w1_result())
    doc = doc_with(tmp_path, "<!-- perf:w1 begin: w1-test.json -->\nstale\n<!-- perf:w1 end -->")
    assert perf_table.main(["--doc", str(doc), "--results", str(tmp_path), "--check"]) == 1
    assert "stale" in doc.read_text()  # --check changes nothing
    assert perf_table.main(["--doc", str(doc), "--results", str(tmp_path)]) == 0
    assert doc.read_text() == f"# Title\n\nprose before\n\n{W1_EXPECTED}\n\nprose after\n"
    assert perf_table.main(["--doc", str(doc), "--results", str(tmp_path), "--check"]) == 0


def test_w1_files_merge_by_tool_and_beta_and_a_busy_start_is_shown(tmp_path):
    busy = w1_result()
    busy["provenance"]["load"]["busy"] = True
    busy["provenance"]["dirty"] = True
    write(tmp_path, "a.json", busy)
    later = w1_result()
    del later["generation"]
    later["tools"] = {"rlvr": {"0.04": {**busy["tools"]["rlvr"]["0.0"], "step_median": 0.2}}}
    write(tmp_path, "b.json", later)
    text = perf_table.render_w1(perf_table.load_sources(["a.json", "b.json"], tmp_path))
    rows = [line for line in text.splitlines() if line.startswith(("| rlvr", "| TRL"))]
    assert [r.split(" | ")[:3] for r in rows] == [["| rlvr", "0", "**0.100**"], ["| TRL", "0", "0.400"],
                                                   ["| rlvr", "0.04", "**0.200**"]]
    assert "**4.00x at beta 0 (per seed 3.00-4.00x)**" in text  # no TRL at 0.04: no ratio there
    assert "Generation alone (`a.json`)" in text
    assert "commit 0123456789 (uncommitted changes)" in text and "(**busy at the start**)" in text


def test_use_points_a_block_at_other_files_and_names_them_in_its_marker(tmp_path):
    write(tmp_path, "w1-test.json", w1_result())
    results = tmp_path / "results"
    results.mkdir()
    doc = doc_with(tmp_path, "<!-- perf:w1 begin: old.json -->\nold\n<!-- perf:w1 end -->")
    assert perf_table.main(["--doc", str(doc), "--results", str(results),
                            "--use", f"w1={tmp_path / 'w1-test.json'}"]) == 0
    assert f"<!-- perf:w1 begin: {tmp_path / 'w1-test.json'} -->" in doc.read_text()
    (results / "w1-test.json").write_text((tmp_path / "w1-test.json").read_text())
    assert perf_table.main(["--doc", str(doc), "--results", str(results),
                            "--use", f"w1={results / 'w1-test.json'}"]) == 0
    assert "<!-- perf:w1 begin: w1-test.json -->" in doc.read_text()  # inside the results folder: its name


def test_a_decode_table_reports_medians_and_ranges(tmp_path):
    def spread(median):
        return {"median": median, "min": median * 0.9, "max": median * 1.2, "n": 5}
    split = {"total": 0.05, "prefill": 0.005, "expand": 0.001, "decode": 0.04, "rest": 0.004, "decode_steps": 12,
             "mean_rows": 97.4}
    write(tmp_path, "d.json", {"date": "2026-12-01", "reps": 5, "results": [{
        "threads": 2, "fused": spread(0.05), "module_path": spread(0.06), "hf_generate": spread(0.125),
        "fused_over_hf_median": 2.5, "fused_split_s": split, "fused_split_median_s": split,
        "decode_matmul_floor": {"seconds": 0.0095}}]})
    text = perf_table.render_decode(perf_table.load_sources(["d.json"], tmp_path))
    assert "`d.json`: one W1 rollout of 128 rows, median of 5 repeats (full range in brackets):" in text
    assert ("| 2 | 50.0 ms (45.0-60.0) | 60.0 ms (54.0-72.0) | 125.0 ms (112.5-150.0) | 2.50x | "
            "5.0, 1.0, 40.0 (97), 4.0 ms | 9.5 ms |") in text
    assert "- `d.json`: no provenance block (run before benchmarks/provenance.py); 2026-12-01" in text


def test_a_w2_table_reports_accuracy_minutes_and_step_time(tmp_path):
    add = {"eval/exact_match": 0.3125, "eval/pass@1": 0.1}
    write(tmp_path, "w2.json", {"preset": "configs/smollm2-add.yaml", "eval_prompts": 64, "runs": [{
        "seed": 0, "outer_steps": 250, "before": {"add": add},
        "after": {"add": {"eval/exact_match": 0.890625, "eval/pass@1": 0.884765625}},
        "train_minutes": 26.97, "eval_minutes": 3.37, "s_per_step": {"median": 4.99, "min": 2.59, "max": 16.71},
        "load_avg_before": 1.78, "load_avg_after": 1.93}]})
    text = perf_table.render_w2(perf_table.load_sources(["w2.json"], tmp_path))
    assert "| 0 | 250 | 0.31 -> **0.89** | 0.88 | 27.0 (3.4) | 4.99 (2.59-16.71) | 1.78 -> 1.93 |" in text


def test_a_time_to_solution_table_reports_median_minutes_seeds_reached_and_the_ratio(tmp_path):
    def entry(minutes, steps, reached):
        return {"minutes_by_seed": [], "steps_by_seed": [], "median_minutes": minutes, "median_steps": steps,
                "reached": reached, "seeds": 3}
    write(tmp_path, "t.json", {
        "settings": {"steps": 300, "seeds": [0, 1, 2], "eval_every": 20}, "held_out": {"count": 64},
        "time_to_solution": {"0.0": {
            "0.2": {"rlvr": entry(0.5, 80, 3), "trl": entry(2.0, 100, 2), "trl_over_rlvr_minutes": 4.0},
            "0.25": {"rlvr": entry(1.25, 200, 2), "trl": entry(None, None, 1), "trl_over_rlvr_minutes": None}}}})
    text = perf_table.render_tts(perf_table.load_sources(["t.json"], tmp_path))
    assert "`t.json`: up to 300 steps per run, seeds 0, 1, 2, held-out greedy reward on 64 prompts every 20 steps" in text
    assert "| 0 | 0.2 | 0.50 (80 steps; 3/3 seeds) | 2.00 (100 steps; 2/3 seeds) | **4.00x** |" in text
    assert "| 0 | 0.25 | 1.25 (200 steps; 2/3 seeds) | not reached (1/3 seeds) | — |" in text


def test_a_w2_side_by_side_table_reports_both_tools_and_the_step_ratio(tmp_path):
    def tool(median, rss, curve, tts, minutes):
        return {"steps_run": 20, "step_s": {"median": median, "min": median - 1, "max": median + 2, "n": 19},
                "gen_s": {"median": 1.5}, "train_s": {"median": median - 1.5}, "peak_rss_mb": rss,
                "rss_after_imports_mb": 260.0, "eval_curve": [{"accuracy": a} for a in curve],
                "time_to_solution": tts, "train_minutes": minutes}
    write(tmp_path, "w.json", {
        "seed": 0, "eval_prompts": 32, "eval_every": 4, "stop_at": 0.8, "max_steps": 40, "thresholds": [0.6, 0.8],
        "prompt_lists": {"same_for_every_tool": True}, "trl_over_rlvr_step_time": 5.0,
        "tools": {"rlvr": tool(5.0, 3900.0, [0.25, 0.5, 0.8125], {"0.6": 1.25, "0.8": 1.75}, 1.9),
                  "trl": tool(25.0, 7700.0, [0.25, 0.40625], {"0.6": None, "0.8": None}, 8.3)}})
    text = perf_table.render_w2trl(perf_table.load_sources(["w.json"], tmp_path))
    assert "| rlvr | 20 | 5.00 (4.00-7.00) | 1.50 | 3.50 | 3900 (260) | 0.25 -> 0.81 | 1.2 | 1.8 | 1.9 |" in text
    assert "| TRL | 20 | 25.00 (24.00-27.00) | 1.50 | 23.50 | 7700 (260) | 0.25 -> 0.41 | not reached | not reached | 8.3 |" in text
    assert "TRL / rlvr step time, ratio of the medians: **5.00x**. Same prompts for both tools: yes." in text


@pytest.mark.parametrize("block, message", [
    ("<!-- perf:nope begin: a.json -->\n<!-- perf:nope end -->", "unknown table 'nope'"),
    ("<!-- perf:w1 begin: missing.json -->\n<!-- perf:w1 end -->", "no results file 'missing.json'"),
    ("<!-- perf:w1 begin: w2.json -->\n<!-- perf:w1 end -->", "w1: w2.json lacks"),
    ("<!-- perf:w1 begin: w1-test.json -->\n", "a perf marker without its pair"),
])
def test_a_bad_marker_or_file_is_one_line_naming_it(tmp_path, capsys, block, message):
    write(tmp_path, "w1-test.json", w1_result())
    write(tmp_path, "w2.json", {"runs": []})
    doc = doc_with(tmp_path, block)
    assert perf_table.main(["--doc", str(doc), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
