"""W1 time to solution (benchmarks/w1_time_to_solution.py): the training clock, the first time a curve
reaches a threshold and the censored median pinned by hand; rlvr's and TRL's held-out evaluators give
the same completions and score on the same weights; a tiny rlvr-only run of the script; bad arguments.

Nothing here is timed: the clock and thresholds are checked on given numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_w1  # noqa: E402
import w1_time_to_solution as tts  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "w1_time_to_solution.py"


# ---------------------------------------------------------------- pure: clock, first reach, median
def test_the_training_clock_leaves_out_every_evaluation():
    # evaluations at [0, 2], [5, 6], [9, 12], [12.5, 13]: training ran 2-5, 6-9, 12-12.5
    marks = [(0.0, 2.0), (5.0, 6.0), (9.0, 12.0), (12.5, 13.0)]
    assert tts.training_seconds(marks) == [0.0, 3.0, 6.0, 6.5]
    assert tts.training_seconds([(4.0, 7.0)]) == [0.0]
    assert tts.training_seconds([]) == []


def test_first_reach_is_the_first_evaluation_at_or_above_the_threshold():
    curve = [{"step": 0, "reward": 0.0, "train_s": 0.0}, {"step": 20, "reward": 0.19, "train_s": 30.0},
             {"step": 40, "reward": 0.2, "train_s": 66.0}, {"step": 60, "reward": 0.1, "train_s": 90.0},
             {"step": 80, "reward": 0.26, "train_s": 120.0}]
    assert tts.first_reach(curve, 0.2) == {"step": 40, "train_s": 66.0, "minutes": 1.1}  # equal counts
    assert tts.first_reach(curve, 0.25) == {"step": 80, "train_s": 120.0, "minutes": 2.0}  # the dip is ignored
    assert tts.first_reach(curve, 0.15) == {"step": 20, "train_s": 30.0, "minutes": 0.5}
    assert tts.first_reach(curve, 0.3) is None                                         # never reached
    assert tts.first_reach(curve[:1], 0.0) == {"step": 0, "train_s": 0.0, "minutes": 0.0}


def test_the_minutes_to_a_threshold_exclude_the_evaluations_before_it():
    # a run evaluated at steps 0, 20, 40: 10 s evaluating each time, 30 s training between
    hook = tts.EvalHook(lambda model: [], [], None, every=20, last=40)
    hook.points = [{"step": 0, "reward": 0.0}, {"step": 20, "reward": 0.1}, {"step": 40, "reward": 0.22}]
    hook.marks = [(100.0, 110.0), (140.0, 150.0), (180.0, 190.0)]
    curve = hook.curve()
    assert [(p["train_s"], p["eval_s"]) for p in curve] == [(0.0, 10.0), (30.0, 10.0), (60.0, 10.0)]
    assert tts.first_reach(curve, 0.2) == {"step": 40, "train_s": 60.0, "minutes": 1.0}  # 80 s of wall time


def test_censored_median_counts_never_reached_as_infinitely_late():
    assert tts.censored_median([3.0, 1.0, 2.0]) == 2.0
    assert tts.censored_median([3.0, None, 1.0]) == 3.0          # [1, 3, inf]
    assert tts.censored_median([None, None, 1.0]) is None        # [1, inf, inf]
    assert tts.censored_median([1.0, None]) is None              # (1 + inf) / 2
    assert tts.censored_median([2.0, 4.0]) == 3.0
    assert tts.censored_median([]) is None


def test_time_to_solution_reports_medians_and_the_ratio_of_median_minutes():
    def run(*hits):
        return {"time_to_solution": {"0.2": hits[0], "0.25": hits[1]}}
    hit = lambda step, minutes: {"step": step, "minutes": minutes, "train_s": 60 * minutes}  # noqa: E731
    runs = {"rlvr": [run(hit(40, 1.0), hit(80, 2.0)), run(hit(20, 0.5), None), run(hit(60, 1.5), hit(100, 2.5))],
            "trl": [run(hit(40, 4.0), None), run(hit(40, 4.0), None), run(hit(20, 2.0), hit(200, 20.0))]}
    out = tts.time_to_solution(runs, [0.2, 0.25])
    assert out["0.2"]["rlvr"] == {"minutes_by_seed": [1.0, 0.5, 1.5], "steps_by_seed": [40, 20, 60],
                                  "median_minutes": 1.0, "median_steps": 40, "reached": 3, "seeds": 3}
    assert out["0.2"]["trl"]["median_minutes"] == 4.0 and out["0.2"]["trl_over_rlvr_minutes"] == 4.0
    assert out["0.25"]["rlvr"]["median_minutes"] == 2.5 and out["0.25"]["rlvr"]["reached"] == 2
    assert out["0.25"]["trl"]["median_minutes"] is None and out["0.25"]["trl"]["steps_by_seed"] == [None, None, 200]
    assert out["0.25"]["trl_over_rlvr_minutes"] is None


def test_score_is_w1s_reward_on_the_completion_ids():
    from rlvr.tokenizer import CharTokenizer

    codec = CharTokenizer.from_texts(bench_w1.sort_task().alphabet_texts())
    ids = lambda text, eos=True: tuple(codec.encode_answer(text)) + ((codec.eos_id,) if eos else ())  # noqa: E731
    prompts = ["3 1 4 1 5>", "3 1 4 1 5>", "9 0 0 2 2>", "9 0 0 2 2>"]
    completions = [ids("1 1 3 4 5"), ids("11354"), ids("0 0 2 2 9", eos=False), ids("0 2")]
    # 5/5, 3/5 (positions 1, 2, 3), 0 (no <eos>), 1/5 (position 1)
    assert tts.score(prompts, completions, codec) == {"reward": pytest.approx((1 + 0.6 + 0 + 0.2) / 4),
                                                      "exact": 0.25}


# ---------------------------------------------------------------- the two evaluators agree
@pytest.fixture(scope="module")
def w1_folders(tmp_path_factory):
    """The W1 folder (initial weights) and one with every weight moved by N(0, 0.3^2) noise (seed 1),
    whose greedy completions are varied and sometimes earn reward (the initial model writes only '>')."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    initial, moved = tmp_path_factory.mktemp("w1-initial"), tmp_path_factory.mktemp("w1-moved")
    bench_w1.build_folder(initial)
    model = AutoModelForCausalLM.from_pretrained(initial, dtype=torch.float32)
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=noise))
    model.save_pretrained(moved)
    for f in initial.iterdir():  # the tokenizer's files
        if f.name.startswith(("tokenizer", "special_tokens")):
            (moved / f.name).write_bytes(f.read_bytes())
    return initial, moved


def evaluate_both(folder: Path, prompts: list[str]):
    """rlvr: the policy bench_w1.run_rlvr's Trainer builds (a 1-step run; its on_step hook at step 0);
    TRL: the model run_trl loads, through the TrainerCallback's evaluator."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.tokenizer import CharTokenizer

    codec = CharTokenizer.load(folder)
    seen = {}
    bench_w1.run_rlvr(str(folder), 1, 0.0, 0, bench_w1.seed_prompts(0, 1), on_step=lambda step, policy: seen.update(
        {step: tts.rlvr_greedy(policy, prompts) if step == 0 else None}))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    hf = tts.hf_greedy(model, AutoTokenizer.from_pretrained(str(folder)), prompts, eos_id=codec.eos_id,
                       pad_id=codec.pad_id)
    return list(seen), seen[0], hf, codec


@pytest.mark.parametrize("which", ["initial", "moved"])
def test_rlvr_and_trl_evaluators_give_the_same_completions_and_score(w1_folders, which, monkeypatch):
    monkeypatch.setattr(bench_w1, "THREADS", 1)
    folder = w1_folders[0] if which == "initial" else w1_folders[1]
    prompts = tts.held_out_prompts(64)
    assert len(prompts) == len(set(prompts)) == 64
    assert all(bench_w1.sort_task().is_heldout(p) for p in prompts)   # never a training prompt
    steps, ours, theirs, codec = evaluate_both(folder, prompts)
    assert steps == [0, 1]
    assert ours == theirs                                                 # token for token
    assert tts.score(prompts, ours, codec) == tts.score(prompts, theirs, codec)
    if which == "initial":   # W1's random init writes '>' for all 12 tokens: reward 0
        assert set(ours) == {(15,) * 12} and tts.score(prompts, ours, codec)["reward"] == 0.0
    else:                    # not a trivial agreement: varied completions, some ending in <eos>, some reward
        assert len(set(ours)) > 48 and sum(c[-1] == codec.eos_id for c in ours) > 0
        assert tts.score(prompts, ours, codec)["reward"] > 0


def test_trls_run_evaluates_the_model_it_trains_through_the_callback(w1_folders, monkeypatch):
    """bench_w1.run_trl's on_step: step 0 at the start of training (the same completions as rlvr's
    evaluator on the folder), then after each step (a 1-step run)."""
    pytest.importorskip("trl")
    from transformers import AutoTokenizer

    from rlvr.tokenizer import CharTokenizer

    monkeypatch.setattr(bench_w1, "THREADS", 1)
    folder, prompts = w1_folders[1], tts.held_out_prompts(64)
    codec, tokenizer = CharTokenizer.load(folder), AutoTokenizer.from_pretrained(str(folder))
    seen = {}
    out = bench_w1.run_trl(str(folder), 1, 0.0, 0, bench_w1.seed_prompts(0, 1), on_step=lambda step, model: seen.update(
        {step: tts.hf_greedy(model, tokenizer, prompts, eos_id=codec.eos_id, pad_id=codec.pad_id)}))
    assert list(seen) == [0, 1] and len(out["step_s"]) == 1
    _, ours, _, _ = evaluate_both(folder, prompts)
    assert seen[0] == ours and seen[1] != ours      # lr 1e-3: one step changes some greedy completions


# ---------------------------------------------------------------- the script
def run_script(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_tiny_rlvr_run_writes_curves_and_times(tmp_path):
    out = tmp_path / "tts.json"
    done = run_script("--steps", "4", "--eval-every", "2", "--seeds", "1", "--no-trl", "--threads", "1",
                      "--eval-prompts", "16", "--thresholds", "0.2", "1e-9", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    run = result["runs"]["0.0"]["rlvr"][0]
    assert [p["step"] for p in run["curve"]] == [0, 2, 4]
    assert run["curve"][0]["train_s"] == 0.0 and all(p["eval_s"] > 0 for p in run["curve"])
    assert run["curve"][0]["train_s"] < run["curve"][1]["train_s"] < run["curve"][2]["train_s"]
    assert run["curve"][0]["reward"] == 0.0            # the initial model writes only '>'
    assert len(run["train_reward"]) == 4 and result["prompt_lists"]["same_for_every_run"]
    assert result["held_out"]["count"] == 16 and result["settings"]["tools"] == ["rlvr"]
    tts_ = result["time_to_solution"]["0.0"]
    assert set(tts_) == {"0.2", "1e-09"}
    hit = run["time_to_solution"]["1e-09"]       # reached when any held-out position is right
    assert hit == tts.first_reach(run["curve"], 1e-9)
    assert tts_["1e-09"]["rlvr"]["reached"] == (hit is not None)
    assert tts_["0.2"]["trl_over_rlvr_minutes"] is None
    assert {"commit", "versions", "load"} <= set(result["provenance"])
    assert "TRL / rlvr" not in done.stdout and "step-0 held-out reward the same for both tools: True" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: 0 (must be at least 1)"),
    (["--eval-every", "-2"], "--eval-every: -2 (must be at least 1)"),
    (["--thresholds", "0.2", "1.5"], "--thresholds: 1.5 (each must be in (0, 1]: a mean reward)"),
    (["--betas", "-0.1"], "--betas: -0.1 (each must be a finite number >= 0)"),
    (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        tts.main(args)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"w1_time_to_solution: error: {message}"]
