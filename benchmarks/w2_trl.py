"""W2 side by side: rlvr vs TRL 1.16's GRPOTrainer on SmolLM2-135M-Instruct, two-digit addition.

    python benchmarks/w2_trl.py                        # up to 40 steps each, held-out eval every 4 steps
    python benchmarks/w2_trl.py --quick --no-trl       # 2 steps, 2 held-out prompts, eval every step

Settings (workloads.md, W2; configs/smollm2-add.yaml with a constant lr and no warmup): prompts of
examples/compute-add.jsonl ("Compute 47+38. Reply with only the number.") in the model's chat template
(rlvr: ``policy.chat_template``; TRL: conversational prompts, one user turn), 4 prompts x 8 responses,
<= 16 new tokens, temperature 0.7, AdamW lr 2e-5 constant, clip 0.2, beta 0, fp32, 2 threads
(``--threads``), grad clip 1.0, activation checkpointing off; rlvr's normalisation epsilon is TRL's
(``algo.norm_eps`` 1e-4). Reward in both: rlvr's dataset task with its last-number verifier on the
token ids each tool sampled (a response that did not end with <|im_end|> within 16 tokens earns 0).
Training prompts: one list, made once here from rlvr's training split for the seed (its PromptSource),
written to a JSON file and given to both tools in the same order; each child reports the sha256 of the
prompts it actually trained on, checked against the list's prefix for the steps it ran.

Held-out evaluation, greedy, <= 16 new tokens, on the same N prompts (``--eval-prompts``, default 32,
rlvr's held-out split: ``task.eval_prompts()``), at step 0, every K steps (``--eval-every``, default
4) and after the last step; accuracy = the share of prompts whose greedy response the task calls
correct (``task.is_correct``: last-number verifier, response ended with <|im_end|>):
- rlvr: ``policy.greedy(policy.encode_prompts(prompts))`` -- the greedy half of
  rlvr.evaluation.evaluate (its sampled pass@k half is left out: TRL has no counterpart), rlvr's own
  KV-cached decoder, prompts through the chat template as in training;
- TRL: a TrainerCallback (on_train_begin for step 0, on_step_end after) that runs HF
  ``model.generate(do_sample=False, max_new_tokens=16)`` on the left-padded, chat-templated prompts
  (``apply_chat_template(add_generation_prompt=True)``, as TRL tokenizes its conversational prompts),
  cuts each row after its first eos and scores it with the same task.
Each child also reports the sha256 of the held-out prompts' token ids (the same when both tokenize alike).
Evaluation time is recorded but not counted in step times. "Time to solution": training minutes (the
sum of step times up to the evaluation's step) to the first evaluation with accuracy >= 0.6 and 0.8
(None if never). A tool stops at ``--stop-at`` (0.8) held-out accuracy or after ``--max-steps`` (40).

Each tool runs in its own subprocess (rlvr, then TRL) and reports its peak RSS next to its RSS right
after its imports. Step time (wall time of a whole step; rollout and training split: rlvr's own
time/rollout and time/train, TRL's time inside model.generate and the rest) is summarised as median
and full range over steps 2.. (provenance.summary); "trl_over_rlvr_step_time" is the ratio of the
medians. Writes benchmarks/results/w2-trl-<date>.json (``--out``) with a "provenance" block.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import (
    LoadWatch,
    OneLineParser,
    free_results_path,
    peak_rss_mb,
    provenance,
    rss_now_mb,
    summary,
)
from trl_clock import step_clock

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRESET = ROOT / "configs" / "smollm2-add.yaml"
DATA = ROOT / "examples" / "compute-add.jsonl"
MODEL = ROOT / "models" / "smollm2-135m-instruct"
PROMPTS, GROUP, MAX_NEW, TEMPERATURE, LR, CLIP, NORM_EPS = 4, 8, 16, 0.7, 2e-5, 0.2, 1e-4
THRESHOLDS = (0.6, 0.8)
QUICK = {"max_steps": 2, "eval_prompts": 2, "eval_every": 1}
DEFAULTS = {"max_steps": 40, "eval_prompts": 32, "eval_every": 4}


# ---------------------------------------------------------------- pure helpers
def prompts_hash(items: list[Any]) -> str:
    """sha256 of a list of prompts (or of token-id rows), one per line."""
    return hashlib.sha256("\n".join(map(str, items)).encode()).hexdigest()


def should_eval(step: int, *, every: int, max_steps: int) -> bool:
    """Held-out evaluation at step 0, every ``every`` steps and after the last step."""
    return step == 0 or step % every == 0 or step == max_steps


def train_minutes_at(step_s: list[float], step: int) -> float:
    """Training minutes after ``step`` steps: the sum of the first ``step`` step times / 60."""
    return sum(step_s[:step]) / 60.0


def time_to_solution(curve: list[dict[str, Any]], step_s: list[float],
                     thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float | None]:
    """Per threshold (key f"{t:g}"): training minutes to the first evaluation of ``curve`` (rows
    {"step", "accuracy"}, in step order) with accuracy >= t; None if no evaluation reached it."""
    out: dict[str, float | None] = {}
    for threshold in thresholds:
        first = next((row["step"] for row in curve if row["accuracy"] >= threshold), None)
        out[f"{threshold:g}"] = None if first is None else train_minutes_at(step_s, first)
    return out


def step_ratio(slow: dict[str, Any], fast: dict[str, Any]) -> float | None:
    """slow / fast median step time (steps 2..); None when either has no such step."""
    a, b = slow["step_s"]["median"], fast["step_s"]["median"]
    return None if a is None or b is None or b <= 0 else a / b


def summarise(run: dict[str, Any], train_prompts: list[str]) -> dict[str, Any]:
    """One tool's run -> its summary: step/rollout/training times over steps 2.., memory, curves,
    time to solution, and whether it trained on the given list's prefix."""
    step_s, steps = run["step_s"], len(run["step_s"])
    curve = [{**row, "train_minutes": train_minutes_at(step_s, row["step"])} for row in run["eval"]]
    return {"steps_run": steps, "stopped_at_target": run["stopped_at_target"],
            "step_s": summary(step_s[1:]), "gen_s": summary(run["gen_s"][1:]), "train_s": summary(run["train_s"][1:]),
            "train_minutes": train_minutes_at(step_s, steps),
            "eval_minutes": sum(row["eval_s"] for row in run["eval"]) / 60.0,
            "peak_rss_mb": run["peak_rss_mb"], "rss_after_imports_mb": run["rss_after_imports_mb"],
            "reward": run["reward"], "completion_length": run["completion_length"],
            "mean_completion_length": sum(run["completion_length"]) / max(steps, 1),
            "eval_curve": curve, "time_to_solution": time_to_solution(run["eval"], step_s),
            "prompts_sha256": run["prompts_sha256"], "eval_prompts_sha256": run["eval_prompts_sha256"],
            "eval_prompt_ids_sha256": run["eval_prompt_ids_sha256"],
            "prompts_match": run["prompts_sha256"] == prompts_hash(train_prompts[:steps * PROMPTS])}


# ---------------------------------------------------------------- rlvr's task and config
def rlvr_overrides(model: str, *, seed: int, steps: int, threads: int, eval_prompts: int) -> dict[str, Any]:
    """configs/smollm2-add.yaml's settings with a constant lr (no warmup), TRL's norm epsilon, no periodic
    evaluation, checkpoints or diagnostics of rlvr's own (this script evaluates)."""
    return {"name": "w2-trl", "seed": seed, "policy.model": model, "task.path": str(DATA),
            "task.num_eval_prompts": eval_prompts, "optim.lr_schedule": "constant", "optim.warmup_steps": 0,
            "algo.norm_eps": NORM_EPS, "train.outer_steps": steps, "train.threads": threads,
            "train.diagnostics_every": 0, "eval.every": 10 ** 6, "eval.samples_every": 10 ** 6,
            "checkpoint.every": 10 ** 6}


def add_task(eval_prompts: int) -> Any:
    from rlvr.config import load_config
    from rlvr.tasks import build_task
    return build_task(load_config(PRESET, rlvr_overrides(str(MODEL), seed=0, steps=1, threads=1,
                                                         eval_prompts=eval_prompts)).task)


def make_prompts(seed: int, steps: int, eval_prompts: int) -> dict[str, list[str]]:
    """The training prompts of every step (steps x 4, rlvr's PromptSource over its training split for
    ``seed``) and the held-out prompts (rlvr's ``task.eval_prompts()``), for both tools."""
    from rlvr.rollout import PromptSource

    task = add_task(eval_prompts)
    source = PromptSource(task, seed)
    return {"train": [p for _ in range(steps) for p in source.next_batch(PROMPTS)], "eval": task.eval_prompts()}


# ---------------------------------------------------------------- children (one tool each)
def run_rlvr(model: str, inputs: dict[str, list[str]], a: argparse.Namespace) -> dict[str, Any]:
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    after_imports = rss_now_mb()
    over = rlvr_overrides(model, seed=a.seed, steps=a.max_steps, threads=a.threads, eval_prompts=len(inputs["eval"]))
    cfg = load_config(PRESET, {**over, "run_dir": str(Path(a.work) / "run")})
    trainer = Trainer(cfg, show_progress=False)
    policy, task, queue, used = trainer.policy, trainer.task, iter(inputs["train"]), []

    def next_batch(count: int) -> list[str]:  # the given list, in order, instead of rlvr's own draws
        batch = [next(queue) for _ in range(count)]
        used.extend(batch)
        return batch
    trainer.prompts.next_batch = next_batch
    eval_ids = policy.encode_prompts(inputs["eval"])
    pad = policy.codec.pad_id  # left padding only (rlvr's prompt_mask): <pad> may be <|im_end|>, in every prompt
    prompt_rows = [row[next(i for i, t in enumerate(row) if t != pad):] for row in eval_ids.tolist()]

    def evaluate(step: int) -> dict[str, Any]:
        t = time.perf_counter()
        ids, mask = policy.greedy(eval_ids)
        responses = policy.decode_responses(ids, mask)
        right = [task.is_correct(p, r) for p, r in zip(inputs["eval"], responses, strict=True)]
        return {"step": step, "accuracy": sum(right) / len(right), "mean_length": float(mask.sum()) / len(right),
                "eval_s": time.perf_counter() - t}

    out: dict[str, Any] = {"step_s": [], "gen_s": [], "train_s": [], "reward": [], "completion_length": [],
                           "eval": [evaluate(0)], "stopped_at_target": False}
    for step in range(1, a.max_steps + 1):
        t = time.perf_counter()
        row = trainer.outer_step(step)
        out["step_s"].append(time.perf_counter() - t)
        out["gen_s"].append(row.get("time/rollout", 0.0))
        out["train_s"].append(row.get("time/train", 0.0))
        out["reward"].append(row["train/reward_mean"])
        out["completion_length"].append(row.get("train/response_length", 0.0))
        if should_eval(step, every=a.eval_every, max_steps=a.max_steps):
            out["eval"].append(evaluate(step))
            if out["eval"][-1]["accuracy"] >= a.stop_at:
                out["stopped_at_target"] = True
                break
    return {**out, "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": after_imports,
            "prompts_sha256": prompts_hash(used), "eval_prompts_sha256": prompts_hash(inputs["eval"]),
            "eval_prompt_ids_sha256": prompts_hash(prompt_rows)}


def run_trl(model_dir: str, inputs: dict[str, list[str]], a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.tasks.text import Completion

    after_imports = rss_now_mb()
    task = add_task(len(inputs["eval"]))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    eos, specials = int(tokenizer.eos_token_id), frozenset(int(i) for i in tokenizer.all_special_ids)

    def completion(ids: list[int]) -> Completion:  # rlvr's view of a response: ids up to and incl. <eos>
        return Completion(tuple(ids), eos, specials, lambda t: tokenizer.decode(list(t), skip_special_tokens=True))

    used: list[str] = []

    def reward(prompts, completions, completion_ids, **_):  # rlvr's task on TRL's ids
        texts = [p[-1]["content"] for p in prompts]  # conversational: the user turn
        used.extend(texts[::GROUP])  # each prompt's G completions are consecutive
        return [task.reward(p, completion(ids)) for p, ids in zip(texts, completion_ids, strict=True)]

    rows = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for p in inputs["eval"]]
    rows = [list(r[0]) if r and isinstance(r[0], list) else list(r) for r in rows]
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    width = max(len(r) for r in rows)
    eval_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    eval_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    greedy = GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, pad_token_id=pad, eos_token_id=eos)
    out: dict[str, Any] = {"eval": [], "stopped_at_target": False}
    clock, generate = step_clock(model, out)  # first among the callbacks: evaluation is outside the step's time

    def evaluate(net: Any, step: int) -> dict[str, Any]:
        t, was_training = time.perf_counter(), net.training
        net.eval()
        with torch.no_grad():
            new = generate(input_ids=eval_ids, attention_mask=eval_mask, generation_config=greedy)[:, width:].tolist()
        net.train(was_training)
        cut = [r[:r.index(eos) + 1] if eos in r else r for r in new]
        right = [task.is_correct(p, completion(r)) for p, r in zip(inputs["eval"], cut, strict=True)]
        return {"step": step, "accuracy": sum(right) / len(right), "mean_length": sum(map(len, cut)) / len(cut),
                "eval_s": time.perf_counter() - t}


    class Evaluate(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            out["eval"].append(evaluate(model, 0))

        def on_step_end(self, args, state, control, model=None, **kw):
            if should_eval(state.global_step, every=a.eval_every, max_steps=a.max_steps):
                out["eval"].append(evaluate(model, state.global_step))
                if out["eval"][-1]["accuracy"] >= a.stop_at:
                    out["stopped_at_target"] = control.should_training_stop = True

    args = GRPOConfig(
        output_dir=str(Path(a.work) / "trl"), per_device_train_batch_size=PROMPTS * GROUP,
        gradient_accumulation_steps=1, generation_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=MAX_NEW, temperature=TEMPERATURE, learning_rate=LR, lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=1.0, epsilon=CLIP, beta=0.0, num_iterations=1, logging_steps=1, bf16=False,
        activation_checkpointing=False, max_steps=a.max_steps, report_to=[], save_strategy="no", use_cpu=True,
        seed=a.seed, shuffle_dataset=False, disable_tqdm=True)
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in inputs["train"]]})
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[clock, Evaluate()])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {**out, "reward": [h["reward"] for h in logs],
            "completion_length": [h.get("completions/mean_length", 0.0) for h in logs],
            "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": after_imports,
            "prompts_sha256": prompts_hash(used), "eval_prompts_sha256": prompts_hash(inputs["eval"]),
            "eval_prompt_ids_sha256": prompts_hash(rows)}


def child(a: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(a.threads)
    inputs = json.loads(Path(a.inputs).read_text())
    run = run_rlvr if a.child == "rlvr" else run_trl
    with tempfile.TemporaryDirectory(prefix=f"w2-{a.child}-") as work:  # the run's files, removed after
        a.work = work
        Path(a.child_out).write_text(json.dumps(run(str(a.model), inputs, a)))


# ---------------------------------------------------------------- the parent
def spawn(tool: str, a: argparse.Namespace, inputs: Path) -> dict[str, Any]:
    """One tool's run in its own process; its result dict."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--child", tool, "--model", str(a.model), "--inputs", str(inputs),
           "--child-out", str(result), "--seed", str(a.seed), "--threads", str(a.threads),
           "--max-steps", str(a.max_steps), "--eval-every", str(a.eval_every), "--stop-at", str(a.stop_at)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"w2_trl.py: the {tool} run failed (exit {done.returncode}; its stderr is above)")
    run = json.loads(result.read_text())
    result.unlink()
    print(f"  {tool:4s}: {len(run['step_s'])} steps, {time.perf_counter() - t:6.1f} s wall", flush=True)
    return run


def results_path(date: str) -> Path:
    return free_results_path(RESULTS, f"w2-trl-{date}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="w2_trl.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=MODEL, help="the HF model folder (default models/smollm2-135m-instruct)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, help=f"steps per tool at most (default {DEFAULTS['max_steps']})")
    p.add_argument("--eval-prompts", type=int, help=f"held-out prompts (default {DEFAULTS['eval_prompts']})")
    p.add_argument("--eval-every", type=int, help=f"held-out evaluation every K steps (default {DEFAULTS['eval_every']})")
    p.add_argument("--stop-at", type=float, default=0.8, help="stop a tool at this held-out accuracy (default 0.8)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of both tools (default 2)")
    p.add_argument("--quick", action="store_true", help="a smoke budget: --max-steps 2 --eval-prompts 2 --eval-every 1 "
                   "(explicit flags win)")
    p.add_argument("--no-trl", action="store_true", help="rlvr only (also when trl is not installed)")
    p.add_argument("--out", type=Path, help="the results file (default benchmarks/results/w2-trl-<date>.json)")
    p.add_argument("--child", choices=["rlvr", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for key, value in (QUICK if a.quick else DEFAULTS).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    for flag, value, low in (("--max-steps", a.max_steps, 1), ("--eval-prompts", a.eval_prompts, 1),
                             ("--eval-every", a.eval_every, 1), ("--threads", a.threads, 1), ("--seed", a.seed, 0)):
        if value < low:
            p.error(f"{flag}: {value} is below {low}")
    if not 0.0 < a.stop_at <= 1.0:
        p.error(f"--stop-at: {a.stop_at} is not in (0, 1]")
    if not (a.model / "config.json").is_file():
        p.error(f"--model: {str(a.model)!r} is not a model folder (no config.json; make it with "
                "`rlvr convert --out models/smollm2-135m-instruct`)")
    if a.out is not None and a.out.is_dir():
        p.error(f"--out: {str(a.out)!r} is a folder; name a .json file")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    if a.child:
        return child(a)
    watch = LoadWatch()
    with_trl = not a.no_trl and importlib.util.find_spec("trl") is not None
    if not a.no_trl and not with_trl:
        print("trl is not installed: rlvr only", flush=True)
    prompts = make_prompts(a.seed, a.max_steps, a.eval_prompts)
    work = Path(tempfile.mkdtemp(prefix="w2-trl-"))
    inputs = work / "prompts.json"
    inputs.write_text(json.dumps(prompts))
    print(f"W2: {a.model}; {a.max_steps} steps at most; {len(prompts['eval'])} held-out prompts every "
          f"{a.eval_every} steps; TRL {'on' if with_trl else 'off'}", flush=True)
    try:
        runs = {tool: spawn(tool, a, inputs) for tool in (["rlvr", "trl"] if with_trl else ["rlvr"])}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tools = {tool: summarise(run, prompts["train"]) for tool, run in runs.items()}
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "workload": "W2", "model": str(a.model), "seed": a.seed,
        "max_steps": a.max_steps, "eval_every": a.eval_every, "eval_prompts": len(prompts["eval"]),
        "stop_at": a.stop_at, "thresholds": list(THRESHOLDS), "threads": a.threads,
        "settings": {"prompts": PROMPTS, "group": GROUP, "max_new_tokens": MAX_NEW, "temperature": TEMPERATURE,
                     "lr": LR, "lr_schedule": "constant", "clip": CLIP, "beta": 0.0, "grad_clip": 1.0,
                     "rlvr_preset": "configs/smollm2-add.yaml", "rlvr_norm_eps": NORM_EPS, "trl_std_epsilon": 1e-4,
                     "dtype": "float32", "gradient_checkpointing": False},
        "prompt_lists": {"made_by": "w2_trl.make_prompts: rlvr's PromptSource(dataset task, seed) over its training "
                                    "split, and task.eval_prompts() (held-out split)",
                         "train_sha256": prompts_hash(prompts["train"]), "eval_sha256": prompts_hash(prompts["eval"]),
                         "same_for_every_tool": all(t["prompts_match"] for t in tools.values())
                         and all(t["eval_prompts_sha256"] == prompts_hash(prompts["eval"]) for t in tools.values())},
        "tools": tools, "raw": runs}
    if with_trl:
        result["trl_over_rlvr_step_time"] = step_ratio(tools["trl"], tools["rlvr"])
    result["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)
    path = a.out or results_path(result["date"])
    path.parent.mkdir(parents=True, exist_ok=True)
    from rlvr.runs.atomic import atomic_write_text
    atomic_write_text(path, json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")


def print_table(result: dict[str, Any]) -> None:
    fmt = lambda v, spec: format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)  # noqa: E731
    print(f"{'tool':5s} {'steps':>5s} {'s/step med':>10s} {'min':>6s} {'max':>6s} {'gen s':>6s} {'train s':>7s} "
          f"{'len':>5s} {'reward 1st>last':>15s} {'eval 0>last':>11s} {'min@0.6':>7s} {'min@0.8':>7s} "
          f"{'RSS MB':>7s} {'imports':>7s}")
    for tool, s in result["tools"].items():
        step, curve, tts = s["step_s"], s["eval_curve"], s["time_to_solution"]
        reward = f"{s['reward'][0]:.2f}>{s['reward'][-1]:.2f}" if s["reward"] else "-"
        evals = f"{curve[0]['accuracy']:.2f}>{curve[-1]['accuracy']:.2f}"
        print(f"{tool:5s} {s['steps_run']:5d} {fmt(step['median'], '10.2f')} {fmt(step['min'], '6.2f')} "
              f"{fmt(step['max'], '6.2f')} {fmt(s['gen_s']['median'], '6.2f')} {fmt(s['train_s']['median'], '7.2f')} "
              f"{s['mean_completion_length']:5.1f} {reward:>15s} {evals:>11s} {fmt(tts['0.6'], '7.2f')} "
              f"{fmt(tts['0.8'], '7.2f')} {fmt(s['peak_rss_mb'], '7.0f')} {fmt(s['rss_after_imports_mb'], '7.0f')}")
    if "trl_over_rlvr_step_time" in result:
        print(f"TRL / rlvr median step time (steps 2..): {fmt(result['trl_over_rlvr_step_time'], '.2f')}x")
    print(f"same prompts for every tool: {result['prompt_lists']['same_for_every_tool']}")
    if result["provenance"].get("load", {}).get("busy"):
        print("(started on a busy machine: see provenance.load)")


if __name__ == "__main__":
    main()
