"""W1 time to solution: training minutes until held-out greedy reward first reaches a threshold, rlvr vs TRL.

    python benchmarks/w1_time_to_solution.py                          # 300 steps, 3 seeds, beta 0
    python benchmarks/w1_time_to_solution.py --steps 4 --eval-every 2 --seeds 1   # a smoke run

Per seed and beta, rlvr then TRL's GRPOTrainer train W1 (benchmarks/bench_w1.py: the same model folder,
settings and per-seed prompt list; each run its own subprocess, through bench_w1's run_rlvr / run_trl
and their ``on_step`` hook) and are evaluated at step 0 and every ``--eval-every`` steps (and at the
last step) on the same held-out prompts: the first ``--eval-prompts`` (64) prompts of rlvr's sort-text
held-out split (``Task.eval_prompts``, split seed 0: never a training prompt). The score is W1's
reward, the fraction of the 5 sorted positions right (0 for a malformed completion), averaged over the
prompts; ``exact`` is the fraction sorted completely.

How each tool is evaluated (greedy, 12 new tokens, stop at <eos>):
- rlvr: ``policy.greedy(policy.encode_prompts(prompts))`` on the Trainer's own policy, the same greedy
  decoding as rlvr's evaluation (rlvr.evaluation.evaluate); the completion is the masked ids.
- TRL: in a TrainerCallback, ``model.generate`` on the model TRL trains, prompts tokenized by the
  folder's tokenizer as TRL tokenizes them (<bos> in front), left-padded, ``do_sample=False``,
  ``max_new_tokens=12``, eos/pad ids of the character tokenizer; the completion is cut after its
  first <eos>, as TRL cuts its own.
Both completions are scored by the same function, rlvr's task reward on the completion ids (bench_w1's
TRL reward). On the same weights the two give the same completions, hence the same score
(tests/test_w1_time_to_solution.py pins this on the initial model; each run's step-0 score is that
number and is compared in the output). Greedy decoding draws no random numbers, so evaluating leaves
each run's training as it would be without it.

The training clock: wall time from the end of the step-0 evaluation, minus every later evaluation's
time (``training_seconds``; evaluation time is recorded beside it). Both tools' construction (Trainer,
GRPOTrainer) is outside it. Time to solution per threshold (``--thresholds``, default 0.2 and 0.25:
W1 plateaus near 0.3) is the first evaluation at or above it (``first_reach``): its step and training
minutes, None when never reached; over seeds, the median with never-reached counted as infinitely late
(``censored_median``: None when half or more never reach it), and TRL / rlvr of the median minutes.
Writes benchmarks/results/w1-tts-<date>.json (``--out``) with bench_w1's provenance block, the curves
and the times, and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import bench_w1
from provenance import LoadWatch, free_results_path, provenance, rss_now_mb, summary

RSS_AFTER_IMPORTS = rss_now_mb()
RESULTS = bench_w1.RESULTS
TOOLS = ("rlvr", "trl")
Completions = list[tuple[int, ...]]


# ---------------------------------------------------------------- pure: clocks, thresholds, medians
def training_seconds(marks: Sequence[tuple[float, float]]) -> list[float]:
    """Training time at each evaluation, from the (enter, leave) clock readings of the evaluations in
    order: the time between the first evaluation's end and evaluation k's start, less the evaluations
    in between. marks [(0, 2), (5, 6), (9, 12)] -> [0, 3, 6]."""
    out, total = [], 0.0
    for k, (enter, _) in enumerate(marks):
        if k:
            total += enter - marks[k - 1][1]
        out.append(total)
    return out


def first_reach(curve: Sequence[dict], threshold: float) -> dict | None:
    """The first evaluation point (``{"step", "train_s", "reward", ...}``, in step order) whose reward is
    at least ``threshold``: {"step", "train_s", "minutes"}; None when none is."""
    for point in curve:
        if point["reward"] >= threshold:
            return {"step": point["step"], "train_s": point["train_s"], "minutes": point["train_s"] / 60}
    return None


def censored_median(values: Sequence[float | None]) -> float | None:
    """The median over seeds with None (never reached) as +infinity: None when the median is infinite."""
    if not values:
        return None
    median = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(median) else median


# ---------------------------------------------------------------- the two evaluators and one score
def held_out_prompts(count: int) -> list[str]:
    """The first ``count`` prompts of rlvr's sort-text held-out split (W1's task, split seed 0)."""
    from rlvr.config import load_config
    from rlvr.tasks import build_task
    return build_task(load_config(None, {"task.name": "sort-text", "task.length": 5,
                                         "task.num_eval_prompts": count}).task).eval_prompts()


@torch.no_grad()
def rlvr_greedy(policy: Any, prompts: Sequence[str]) -> Completions:
    """rlvr's greedy completions (ids up to and with <eos>), as rlvr.evaluation.evaluate decodes them."""
    ids, mask = policy.greedy(policy.encode_prompts(list(prompts)))            # (N, T), (N, T)
    return [tuple(t for t, m in zip(row, keep, strict=True) if m) for row, keep in zip(ids.tolist(), mask.tolist(),
                                                                                       strict=True)]


@torch.no_grad()
def hf_greedy(model: Any, tokenizer: Any, prompts: Sequence[str], *, eos_id: int, pad_id: int,
              max_new_tokens: int = bench_w1.MAX_NEW) -> Completions:
    """Greedy ``model.generate`` on TRL's prompt ids (the tokenizer adds <bos>), left-padded, each
    completion cut after its first <eos> as TRL cuts it."""
    from transformers import GenerationConfig

    rows = tokenizer(text=list(prompts))["input_ids"]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows])           # (N, S)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos_id,
                              pad_token_id=pad_id)
    training = model.training
    model.eval()
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, width:].tolist()
    model.train(training)
    return [tuple(row[:row.index(eos_id) + 1] if eos_id in row else row) for row in out]


@functools.cache
def w1_task() -> Any:
    return bench_w1.sort_task()


def score(prompts: Sequence[str], completions: Completions, codec: Any) -> dict[str, float]:
    """Mean W1 reward (rlvr's task reward on the completion ids) and the fraction sorted exactly."""
    from rlvr.tasks.text import Completion

    task = w1_task()
    done = [Completion(ids, codec.eos_id, codec.special_ids, codec.decode) for ids in completions]
    rewards = [task.reward(p, c) for p, c in zip(prompts, done, strict=True)]
    return {"reward": statistics.fmean(rewards), "exact": statistics.fmean(r >= 1.0 for r in rewards)}


class EvalHook:
    """bench_w1's ``on_step(step, model)``: evaluates at step 0, every ``every`` steps and at ``last``,
    reading the clock as it enters and leaves each evaluation."""

    def __init__(self, greedy: Callable[[Any], Completions], prompts: Sequence[str], codec: Any, *,
                 every: int, last: int) -> None:
        self.greedy, self.prompts, self.codec, self.every, self.last = greedy, prompts, codec, every, last
        self.points: list[dict] = []
        self.marks: list[tuple[float, float]] = []

    def __call__(self, step: int, model: Any) -> None:
        if step % self.every and step != self.last:
            return
        enter = time.perf_counter()
        result = score(self.prompts, self.greedy(model), self.codec)
        self.marks.append((enter, time.perf_counter()))
        self.points.append({"step": step, **result})

    def curve(self) -> list[dict]:
        return [{**p, "train_s": t, "eval_s": leave - enter}
                for p, t, (enter, leave) in zip(self.points, training_seconds(self.marks), self.marks, strict=True)]


# ---------------------------------------------------------------- a child: one run of one tool
def child(args: argparse.Namespace) -> None:
    from rlvr.tokenizer import CharTokenizer

    torch.set_num_threads(args.threads)
    bench_w1.THREADS = args.threads
    prompts, held_out = json.loads(Path(args.prompts).read_text()), held_out_prompts(args.eval_prompts)
    codec = CharTokenizer.load(Path(args.folder))
    if args.child == "rlvr":
        greedy = lambda policy: rlvr_greedy(policy, held_out)  # noqa: E731
        run = bench_w1.run_rlvr
    else:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.folder)
        greedy = lambda model: hf_greedy(model, tokenizer, held_out, eos_id=codec.eos_id, pad_id=codec.pad_id)  # noqa: E731
        run = bench_w1.run_trl
    hook = EvalHook(greedy, held_out, codec, every=args.eval_every, last=args.steps)
    out = run(args.folder, args.steps, args.beta, args.seed, prompts, on_step=hook)
    result = {"curve": hook.curve(), "step_s": summary(out["step_s"][1:] or out["step_s"]),
              "train_reward": out["reward"], "rss_mb": out["rss_mb"], "prompts_sha256": out["prompts_sha256"]}
    Path(args.child_out).write_text(json.dumps(result))


def spawn(tool: str, folder: Path, args: argparse.Namespace, beta: float, seed: int, prompts: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--child", tool, "--folder", str(folder), "--steps", str(args.steps),
           "--eval-every", str(args.eval_every), "--eval-prompts", str(args.eval_prompts), "--beta", str(beta),
           "--seed", str(seed), "--prompts", str(prompts), "--threads", str(args.threads), "--child-out", str(out)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    out.unlink()
    print(f"  {tool:4s} beta {beta:<5g} seed {seed}: {time.perf_counter() - t:6.1f} s wall, held-out reward "
          + " ".join(f"{p['step']}:{p['reward']:.3f}" for p in result["curve"]), flush=True)
    return result


# ---------------------------------------------------------------- the parent: runs, times, table
def time_to_solution(runs: dict[str, list[dict]], thresholds: Sequence[float]) -> dict:
    """Per threshold: each tool's per-seed steps and minutes, their censored medians, and TRL / rlvr of
    the median minutes (None when either median is)."""
    out = {}
    for thr in thresholds:
        per_tool = {}
        for tool, rs in runs.items():
            hits = [r["time_to_solution"][str(thr)] for r in rs]
            minutes, steps = [h and h["minutes"] for h in hits], [h and h["step"] for h in hits]
            per_tool[tool] = {"minutes_by_seed": minutes, "steps_by_seed": steps,
                              "median_minutes": censored_median(minutes), "median_steps": censored_median(steps),
                              "reached": sum(h is not None for h in hits), "seeds": len(hits)}
        rlvr, trl = per_tool.get("rlvr", {}).get("median_minutes"), per_tool.get("trl", {}).get("median_minutes")
        per_tool["trl_over_rlvr_minutes"] = trl / rlvr if trl is not None and rlvr else None
        out[str(thr)] = per_tool
    return out


def results_path(date: str) -> Path:
    return free_results_path(RESULTS, f"w1-tts-{date}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from rlvr.cli.parsing import Parser  # a bad argument: one line, exit 2
    from rlvr.errors import ConfigError

    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--eval-every", type=int, default=20, help="held-out evaluation every N steps (and at 0 and the last)")
    p.add_argument("--eval-prompts", type=int, default=64, help="held-out prompts per evaluation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--betas", type=float, nargs="+", default=[0.0], help="KL coefficients (k3, initial model)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.25], help="held-out mean rewards to reach")
    p.add_argument("--threads", type=int, default=bench_w1.THREADS, help="torch threads of every run, both tools "
                   "(workloads.md: 2; on a loaded shared machine 1 is far less noisy)")
    p.add_argument("--no-trl", action="store_true", help="rlvr only (also when trl is not installed)")
    p.add_argument("--out", type=Path, help="the results file (default benchmarks/results/w1-tts-<date>.json)")
    p.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--beta", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--prompts", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("steps", "eval_every", "eval_prompts", "seeds", "threads"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: {getattr(args, name)} (must be at least 1)")
    if args.first_seed < 0:
        raise ConfigError(f"--first-seed: {args.first_seed} (must be at least 0)")
    for beta in args.betas:
        if not (beta >= 0 and math.isfinite(beta)):
            raise ConfigError(f"--betas: {beta} (each must be a finite number >= 0)")
    for thr in args.thresholds:
        if not 0 < thr <= 1:
            raise ConfigError(f"--thresholds: {thr} (each must be in (0, 1]: a mean reward)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    from rlvr.errors import UserError

    try:
        args = parse_args(argv)
    except UserError as exc:
        print(f"w1_time_to_solution: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.child:
        return child(args)
    watch = LoadWatch()
    torch.set_num_threads(args.threads)
    tools = ["rlvr", "trl"] if not args.no_trl and importlib.util.find_spec("trl") is not None else ["rlvr"]
    folder = Path(tempfile.mkdtemp(prefix="w1-tts-"))
    params = bench_w1.build_folder(folder)
    held_out = held_out_prompts(args.eval_prompts)
    print(f"W1 time to solution: {params} parameters, {len(held_out)} held-out prompts, tools {', '.join(tools)}, "
          f"{args.steps} steps, evaluation every {args.eval_every}", flush=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    hashes = {}
    for seed in seeds:
        prompts = bench_w1.seed_prompts(seed, args.steps)
        hashes[str(seed)] = bench_w1.prompts_hash(prompts)
        (folder / f"prompts-seed{seed}.json").write_text(json.dumps(prompts))
    runs: dict[str, dict[str, list[dict]]] = {str(b): {t: [] for t in tools} for b in args.betas}
    for beta in args.betas:
        for seed in seeds:
            for tool in tools:  # rlvr then TRL, seed by seed
                run = spawn(tool, folder, args, beta, seed, folder / f"prompts-seed{seed}.json")
                run["seed"] = seed
                run["time_to_solution"] = {str(thr): first_reach(run["curve"], thr) for thr in args.thresholds}
                runs[str(beta)][tool].append(run)
    step0 = {b: {t: [r["curve"][0]["reward"] for r in rs] for t, rs in per.items()} for b, per in runs.items()}
    result = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "params": params,
              "settings": {"steps": args.steps, "eval_every": args.eval_every, "seeds": seeds, "betas": args.betas,
                           "thresholds": args.thresholds, "threads": args.threads, "tools": tools,
                           "prompts": bench_w1.PROMPTS, "group": bench_w1.GROUP, "max_new_tokens": bench_w1.MAX_NEW,
                           "lr": bench_w1.LR},
              "held_out": {"count": len(held_out), "sha256": bench_w1.prompts_hash(held_out),
                           "made_by": "rlvr sort-text Task.eval_prompts (split seed 0), the same for both tools"},
              "prompt_lists": {"sha256_by_seed": hashes, "same_for_every_run": all(
                  r["prompts_sha256"] == hashes[str(r["seed"])] for per in runs.values() for rs in per.values()
                  for r in rs)},
              "step0_reward": step0,
              "step0_same_for_both_tools": all(len(set(v for vs in per.values() for v in vs)) == 1
                                               for per in step0.values()),
              "time_to_solution": {b: time_to_solution(per, args.thresholds) for b, per in runs.items()},
              "runs": runs}
    result["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)
    path = args.out or results_path(result["date"])
    path.parent.mkdir(parents=True, exist_ok=True)
    from rlvr.runs.rundir import atomic_write_text
    atomic_write_text(path, json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")
    shutil.rmtree(folder, ignore_errors=True)


def print_table(result: dict) -> None:
    fmt = lambda v, spec: "never" if v is None else format(v, spec)  # noqa: E731
    print(f"{'beta':>5s} {'thresh':>6s} {'tool':5s} {'median min':>10s} {'median steps':>12s} {'reached':>7s}  "
          f"minutes by seed")
    for beta, per_thr in result["time_to_solution"].items():
        for thr, per in per_thr.items():
            for tool in result["settings"]["tools"]:
                t = per[tool]
                seeds = " ".join(fmt(m, ".2f") for m in t["minutes_by_seed"])
                print(f"{beta:>5s} {thr:>6s} {tool:5s} {fmt(t['median_minutes'], '10.2f')} "
                      f"{fmt(t['median_steps'], '12.0f')} {t['reached']:>3d}/{t['seeds']:<3d}  {seeds}")
            if per["trl_over_rlvr_minutes"] is not None:
                print(f"{beta:>5s} {thr:>6s} TRL / rlvr median minutes: {per['trl_over_rlvr_minutes']:.2f}x")
    for beta, per in result["runs"].items():
        for tool, rs in per.items():
            for r in rs:
                final = r["curve"][-1]
                print(f"beta {beta} {tool:4s} seed {r['seed']}: step {final['step']} held-out reward "
                      f"{final['reward']:.3f} after {final['train_s'] / 60:.2f} training min "
                      f"(+{sum(p['eval_s'] for p in r['curve']):.1f} s evaluating), {r['step_s']['median']:.3f} s/step")
    print(f"step-0 held-out reward the same for both tools: {result['step0_same_for_both_tools']}")
    if result["provenance"]["load"]["busy"]:
        print("(started on a busy machine: see provenance.load)")


if __name__ == "__main__":
    main()
