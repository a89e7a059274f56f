"""W1 side by side: rlvr vs TRL's GRPOTrainer on the same model folder, same settings (workloads.md).

    python benchmarks/bench_w1.py                                  # 200 steps, 3 seeds, betas 0 and 0.04
    python benchmarks/bench_w1.py --steps 60 --seeds 1 --betas 0   # a quick run

Builds the W1 model folder (LlamaForCausalLM from LlamaConfig, torch.manual_seed(0), saved by
save_pretrained, then exported in our Llama-compatible format with rlvr's character tokenizer) once;
both tools load that folder. Every run is its own subprocess of this process (A B A B: rlvr, TRL,
rlvr, TRL ...) and reports its own ru_maxrss next to its RSS right after its imports. TRL runs only
when the `bench` extra (trl) is installed; its reward function calls rlvr's sort-text verifier on
TRL's completion ids. Both tools train on the same prompt list per seed (made once per seed, here,
from rlvr's training split, and given to both; each run reports a hash of the prompts it used), and
rlvr's group-normalisation epsilon is TRL's (``algo.norm_eps`` 1e-4: std + 1e-4). Also times rollout
generation alone: rlvr's sampler vs HF ``generate`` on the same model and batch (``--no-gen``: skip
it; ``--gen-only``: only it). Writes benchmarks/results/w1-<date>.json (w1-<date>-2.json, ... when
that day already has one; ``--out``: that file) with a "provenance" block (benchmarks/provenance.py:
commit, versions, threads, CPU, load before and after) and medians with full ranges, and a table.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from provenance import LoadWatch, free_results_path, peak_rss_mb, provenance, rss_now_mb, summary
from trl_clock import step_clock

RSS_AFTER_IMPORTS = rss_now_mb()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS, GROUP, MAX_NEW, LR, THREADS = 16, 8, 12, 1e-3, 2
NORM_EPS = 1e-4  # TRL 1.16's advantages / (std + 1e-4); rlvr's algo.norm_eps is set to it
BF16 = False  # rlvr runs with train.bf16 (--bf16)
AB_BASE = ""  # --ab-base: a src/ folder whose rlvr runs beside today's


# ---------------------------------------------------------------- shared assets
def build_folder(folder: Path) -> int:
    """The W1 model (HF init, seed 0) and tokenizer, as one folder both tools load. Returns #params."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.policies.transformer import Transformer, TransformerConfig, TransformerPolicy
    from rlvr.tokenizer import CharTokenizer

    tok = CharTokenizer.from_texts(sort_task().alphabet_texts())
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id))
    ours = Transformer(TransformerConfig(vocab_size=tok.vocab_size, max_positions=64))
    ours.load_state_dict(hf.state_dict())
    TransformerPolicy(ours, tok, max_new_tokens=MAX_NEW).save_hf(folder)   # a Llama folder
    return sum(p.numel() for p in ours.parameters())


def sort_task():
    """rlvr's sort-text task (W1's prompts and reward), through the config as a user names it (so an
    --ab-base tree from before per-task config classes builds it too)."""
    from rlvr.config import load_config
    from rlvr.tasks import build_task
    return build_task(load_config(None, {"task.name": "sort-text", "task.length": 5,
                                         "task.num_eval_prompts": 16}).task)


def rss_mb() -> float:
    return peak_rss_mb()


def seed_prompts(seed: int, steps: int) -> list[str]:
    """The prompts of one seed's run, in order (steps x PROMPTS): rlvr's own draws for that seed (its
    PromptSource over the training split), made once and given to both tools."""
    from rlvr.rollout import PromptSource

    source = PromptSource(sort_task(), seed)
    return [p for _ in range(steps) for p in source.next_batch(PROMPTS)]


def prompts_hash(prompts: list[str]) -> str:
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()


def matmul_gflops(dtype: torch.dtype, n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


# ---------------------------------------------------------------- children (one run each)
def rlvr_config(folder: str, steps: int, beta: float, seed: int, run_dir: str) -> Any:
    """rlvr's side of W1 as a Config: the settings TRL runs with (workloads.md)."""
    from rlvr.config import load_config

    return load_config(None, {
        "name": "w1", "seed": seed, "run_dir": run_dir,
        "task.name": "sort-text", "task.length": 5, "task.num_eval_prompts": 16,
        "policy.kind": "transformer", "policy.model": folder, "policy.max_new_tokens": MAX_NEW,
        "algo.deltas": "normalized", "algo.norm_eps": NORM_EPS, "algo.loss": "clipped", "algo.clip_eps_low": 0.2,
        "algo.aggregation": "token-mean", "algo.kl_coef": beta, "algo.kl_estimator": "k3",
        "algo.ref_refresh_every": 0,  # W1: KL against the initial model, as TRL's fixed reference
        "algo.kl_ratio_weight": True,  # TRL 1.16's default use_bias_correction_kl: KL x ratio
        "optim.name": "adamw", "optim.lr": LR, "optim.grad_clip": 1.0,
        "train.outer_steps": steps, "train.inner_steps": 1, "train.prompts_per_step": PROMPTS,
        "train.group_size": GROUP, "train.threads": THREADS, "train.bf16": BF16, "train.diagnostics_every": 0,
        "eval.every": 10 ** 6, "eval.samples_every": 10 ** 6})


def run_rlvr(folder: str, steps: int, beta: float, seed: int, prompts: list[str],
             on_step: Callable[[int, Any], None] | None = None) -> dict:
    """``on_step(step, policy)``: called before step 1 (step 0) and after every step (an evaluation hook)."""
    from rlvr.trainer import Trainer

    after_imports = rss_now_mb()
    cfg = rlvr_config(folder, steps, beta, seed, tempfile.mkdtemp(prefix="w1-rlvr-", dir=folder))
    trainer = Trainer(cfg, show_progress=False)
    queue, used = iter(prompts), []

    def next_batch(count: int) -> list[str]:  # the given list, in order, instead of rlvr's own draws
        batch = [next(queue) for _ in range(count)]
        used.extend(batch)
        return batch
    trainer.prompts.next_batch = next_batch
    hook = on_step or (lambda step, policy: None)
    hook(0, trainer.policy)
    rows = []
    for step in range(1, steps + 1):
        rows.append(trainer.outer_step(step))
        hook(step, trainer.policy)
    return {"step_s": [r["time/step"] for r in rows], "gen_s": [r["time/rollout"] for r in rows],
            "train_s": [r["time/train"] for r in rows], "reward": [r["train/reward_mean"] for r in rows],
            "tokens": [r["train/response_length"] * PROMPTS * GROUP for r in rows], "rss_mb": rss_mb(),
            "rss_after_imports_mb": after_imports, "prompts_sha256": prompts_hash(used),
            "norm_eps": cfg.algo.norm_eps}


def run_trl(folder: str, steps: int, beta: float, seed: int, prompts: list[str], on_step=None) -> dict:
    """``on_step(step, model)``: called at the start of training (step 0) and after every step."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.tasks.text import Completion
    from rlvr.tokenizer import CharTokenizer

    after_imports = rss_now_mb()
    task, codec = sort_task(), CharTokenizer.load(Path(folder))
    used: list[str] = []

    def reward(prompts, completions, completion_ids, **_):  # rlvr's verifier on TRL's ids
        used.extend(prompts[::GROUP])  # each prompt's G completions are consecutive
        return [task.reward(p, Completion(tuple(ids), codec.eos_id, codec.special_ids, codec.decode))
                for p, ids in zip(prompts, completion_ids, strict=True)]

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    out: dict = {}
    clock, _ = step_clock(model, out)  # step, generation and training time per step into out

    class Hook(TrainerCallback):  # after Clock: a hook's time is outside the step's
        def on_train_begin(self, args, state, control, **kw):
            on_step(0, model)

        def on_step_end(self, args, state, control, **kw):
            on_step(state.global_step, model)

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="w1-trl-", dir=folder), per_device_train_batch_size=PROMPTS * GROUP,
        gradient_accumulation_steps=1, generation_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=MAX_NEW, temperature=1.0, learning_rate=LR, lr_scheduler_type="constant",
        max_grad_norm=1.0, epsilon=0.2, beta=beta, num_iterations=1, logging_steps=1, bf16=False,
        gradient_checkpointing=False, max_steps=steps, report_to=[], save_strategy="no", use_cpu=True,
        seed=seed, shuffle_dataset=False, warmup_steps=0, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts}),
                          processing_class=AutoTokenizer.from_pretrained(folder),
                          callbacks=[clock, *([Hook()] if on_step else [])])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    out["reward"] = [h["reward"] for h in logs]
    out["tokens"] = [h.get("completions/mean_length", 0.0) * PROMPTS * GROUP for h in logs]
    out["rss_mb"] = rss_mb()
    out["rss_after_imports_mb"] = after_imports
    out["prompts_sha256"] = prompts_hash(used)
    return out


def run_generation(folder: str, tool: str, reps: int) -> dict:
    """Rollout generation alone: 16 prompts x 8, 12 new tokens, sampling at temperature 1."""
    from rlvr.policies.transformer import TransformerPolicy

    if tool == "hf":
        from transformers import AutoModelForCausalLM
    after_imports = rss_now_mb()
    policy = TransformerPolicy.load_hf(Path(folder), max_new_tokens=MAX_NEW)
    rng = torch.Generator().manual_seed(0)
    prompt_ids = policy.encode_prompts([sort_task().random_prompt(__import__("numpy").random.default_rng(i))
                                        for i in range(PROMPTS)])
    if tool == "hf":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        ids = prompt_ids.repeat_interleave(GROUP, 0)

        def once() -> int:
            with torch.no_grad():
                out = model.generate(ids, attention_mask=ids != 0, do_sample=True, temperature=1.0, top_k=0,
                                     max_new_tokens=MAX_NEW, pad_token_id=0, eos_token_id=2)
            new = out[:, ids.shape[1]:]
            return int(((new == 2).long().cumsum(1) - (new == 2).long() == 0).sum())  # up to and incl. <eos>
    else:
        def once() -> int:
            return int(policy.sample(prompt_ids, GROUP, generator=rng).mask.sum())
    once()
    times, tokens = [], []
    for _ in range(reps):
        t = time.perf_counter()
        tokens.append(once())
        times.append(time.perf_counter() - t)
    return {"s": times, "tokens": tokens, "tokens_per_s": sum(tokens) / sum(times), "rss_mb": rss_mb(),
            "rss_after_imports_mb": after_imports}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    if args.child == "gen-rlvr":
        out = run_generation(args.folder, "rlvr", args.steps)
    elif args.child == "gen-hf":
        out = run_generation(args.folder, "hf", args.steps)
    else:
        fn = run_rlvr if args.child == "rlvr" else run_trl
        out = fn(args.folder, args.steps, args.beta, args.seed, json.loads(Path(args.prompts).read_text()))
    Path(args.child_out).write_text(json.dumps(out))


# ---------------------------------------------------------------- the parent: alternate, summarise
def spawn(kind: str, folder: Path, steps: int, beta: float = 0.0, seed: int = 0, prompts: Path | None = None) -> dict:
    """Run one child process; kind ``rlvr-base`` is rlvr's run with the library imported from --ab-base;
    ``prompts``: the JSON list of the seed's prompts (training runs)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    if kind == "rlvr-base":
        env["PYTHONPATH"] = AB_BASE
    cmd = [sys.executable, __file__, "--child", kind.removesuffix("-base"), "--folder", str(folder), "--steps", str(steps),
           "--beta", str(beta), "--seed", str(seed), "--child-out", str(out), "--threads", str(THREADS)]
    cmd += ["--bf16"] if BF16 else []
    cmd += ["--prompts", str(prompts)] if prompts else []
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    out.unlink()
    print(f"  {kind:8s} beta {beta:<5g} seed {seed}: {time.perf_counter() - t:6.1f} s wall", flush=True)
    return result


def mean_at(runs: list[dict], step: int, window: int = 5) -> float | None:
    """Mean reward over seeds, each averaged over steps step-window+1..step (a smoother read)."""
    vals = [statistics.fmean(r["reward"][max(0, step - window): step]) for r in runs if len(r["reward"]) >= step]
    return statistics.fmean(vals) if vals else None


def summarise(runs: list[dict], flops_per_token: float) -> dict:
    """One tool at one beta over its seeds: step, generation and training times (median and full range
    over every step but each run's first), throughput, memory, rewards."""
    steps = [s for r in runs for s in r["step_s"][1:]]  # step 1 warms up
    gen = [s for r in runs for s in r["gen_s"][1:]]
    train = [s for r in runs for s in r["train_s"][1:]]
    tokens = [t for r in runs for t in r["tokens"][1:]]
    total = sum(tokens) / len(tokens)
    after_imports = [r["rss_after_imports_mb"] for r in runs if r.get("rss_after_imports_mb") is not None]
    out = {"step_median": statistics.median(steps), "step_min": min(steps), "step_max": max(steps),
           "gen_median": statistics.median(gen), "train_median": statistics.median(train),
           "completion_tokens_per_s": total / statistics.median(steps),
           "mean_completion_tokens": total, "peak_rss_mb": max(r["rss_mb"] for r in runs),
           "rss_after_imports_mb": max(after_imports) if after_imports else None,
           "reward_at_20": mean_at(runs, 20), "reward_at_200": mean_at(runs, 200),
           "reward_last": mean_at(runs, len(runs[0]["reward"])),
           "step_s": summary(steps), "gen_s": summary(gen), "train_s": summary(train),
           "step_median_per_seed": [statistics.median(r["step_s"][1:] or r["step_s"]) for r in runs]}
    out["achieved_gflops"] = flops_per_token * total / statistics.median(train) / 1e9
    return out


def ratios(result: dict, slow: str, fast: str) -> tuple[dict, dict]:
    """slow/fast step time per beta: the ratio of the medians, and the median and range of the per-seed
    ratios (seed by seed, the runs alternate A B A B)."""
    tools = result["tools"]
    of_medians = {b: tools[slow][b]["step_median"] / tools[fast][b]["step_median"] for b in tools[fast]}
    per_seed = {b: summary(s / f for s, f in zip(tools[slow][b]["step_median_per_seed"],
                                                 tools[fast][b]["step_median_per_seed"], strict=True))
                for b in tools[fast]}
    return of_medians, per_seed


def generation(runs: list[dict]) -> dict:
    """One tool's generation runs: tokens/s (the median of the runs' totals, as before, and the median
    and full range over every repeat), memory."""
    per_rep = [t / s for r in runs for t, s in zip(r["tokens"], r["s"], strict=True)]
    after_imports = [r["rss_after_imports_mb"] for r in runs if r.get("rss_after_imports_mb") is not None]
    return {"tokens_per_s": statistics.median([r["tokens_per_s"] for r in runs]),
            "tokens_per_s_per_repeat": summary(per_rep), "peak_rss_mb": max(r["rss_mb"] for r in runs),
            "rss_after_imports_mb": max(after_imports) if after_imports else None}


def results_path(date: str, tag: str) -> Path:
    return free_results_path(RESULTS, f"w1-{date}{'-' + tag if tag else ''}")


def main() -> None:
    global THREADS, BF16, AB_BASE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.04])
    p.add_argument("--gen-reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=THREADS, help="torch threads of every run, both tools "
                   "(workloads.md: 2; on a loaded shared machine 1 is far less noisy)")
    p.add_argument("--no-trl", action="store_true", help="rlvr only (also when trl is not installed)")
    p.add_argument("--bf16", action="store_true", help="rlvr with train.bf16 (bfloat16 autocast; TRL unchanged)")
    p.add_argument("--ab-base", default="", help="A/B: also run rlvr with the library from this src/ folder "
                   "(e.g. a worktree of an earlier commit), alternating with today's, and report base/new")
    p.add_argument("--no-gen", action="store_true", help="skip the generation-alone timing")
    p.add_argument("--gen-only", action="store_true", help="only the generation-alone timing (no training runs)")
    p.add_argument("--tag", default="", help="results file w1-<date>-<tag>.json instead of w1-<date>.json")
    p.add_argument("--out", type=Path, help="the results file (default benchmarks/results/w1-<date>[-<tag>].json)")
    p.add_argument("--child", choices=["rlvr", "trl", "gen-rlvr", "gen-hf"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--beta", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--prompts", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    THREADS, BF16, AB_BASE = args.threads, args.bf16, str(Path(args.ab_base).resolve()) if args.ab_base else ""
    if args.child:
        return child(args)
    if args.no_gen and args.gen_only:
        p.error("--no-gen and --gen-only: choose one")
    watch = LoadWatch()
    torch.set_num_threads(THREADS)
    with_trl = not args.no_trl and not args.gen_only and importlib.util.find_spec("trl") is not None
    folder = Path(tempfile.mkdtemp(prefix="w1-model-"))
    params = build_folder(folder)
    # training FLOPs per completion token: forward + backward = 6 x the non-embedding parameters
    flops_per_token = 6.0 * (params - 16 * 128)
    machine = {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16),
               "cpu_count": os.cpu_count(), "threads": THREADS, "load_avg": os.getloadavg()}
    print(f"W1 folder {folder} ({params} parameters); TRL {'on' if with_trl else 'off'}; "
          f"matmul fp32 {machine['fp32_gflops']:.0f} GFLOP/s, bf16 {machine['bf16_gflops']:.0f} GFLOP/s", flush=True)
    tools = [] if args.gen_only else ["rlvr", "trl"] if with_trl else ["rlvr"]
    tools += ["rlvr-base"] if AB_BASE and tools else []
    runs: dict[str, dict[str, list[dict]]] = {t: {} for t in tools}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds)) if tools else []
    prompt_hashes: dict[str, str] = {}
    for seed in seeds:  # one prompt list per seed, for every tool and beta
        prompts = seed_prompts(seed, args.steps)
        prompt_hashes[str(seed)] = prompts_hash(prompts)
        (folder / f"prompts-seed{seed}.json").write_text(json.dumps(prompts))
    for beta in args.betas if tools else []:
        for seed in seeds:
            for tool in tools:  # A B A B
                runs[tool].setdefault(str(beta), []).append(
                    spawn(tool, folder, args.steps, beta, seed, folder / f"prompts-seed{seed}.json"))
    gen = {"rlvr": [], "hf": []}
    for _ in range(0 if args.no_gen else 2):
        for tool in gen:
            gen[tool].append(spawn(f"gen-{tool}", folder, args.gen_reps))
    used = [(str(seed), r["prompts_sha256"]) for per in runs.values() for rs in per.values()
            for seed, r in zip(seeds, rs, strict=True)]
    result = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "threads": THREADS,
              "steps": args.steps, "seeds": args.seeds, "first_seed": args.first_seed,
              "betas": args.betas if tools else [], "params": params, "machine": machine,
              "settings": {"prompts": PROMPTS, "group": GROUP, "max_new_tokens": MAX_NEW, "lr": LR, "rlvr_bf16": BF16,
                           "rlvr_norm_eps": NORM_EPS, "trl_std_epsilon": 1e-4},
              "prompt_lists": {"made_by": "bench_w1.seed_prompts: rlvr's PromptSource(sort-text, seed), training "
                                          "split, made once per seed and given to every tool",
                               "sha256_by_seed": prompt_hashes,
                               "same_for_every_run": all(prompt_hashes[seed] == h for seed, h in used)},
              "tools": {t: {b: summarise(rs, flops_per_token) for b, rs in per.items()} for t, per in runs.items()},
              "raw": runs}
    if not args.no_gen:
        result["generation"] = {t: generation(rs) for t, rs in gen.items()}
        result["generation"]["rlvr_over_hf"] = (result["generation"]["rlvr"]["tokens_per_s"]
                                                / result["generation"]["hf"]["tokens_per_s"])
    if AB_BASE and tools:
        result["ab_base"] = AB_BASE
        result["base_over_new_step_time"], result["base_over_new_per_seed"] = ratios(result, "rlvr-base", "rlvr")
    if with_trl:
        result["trl_over_rlvr_by_beta"], result["trl_over_rlvr_per_seed"] = ratios(result, "trl", "rlvr")
        if "0.0" in result["trl_over_rlvr_by_beta"]:
            result["trl_over_rlvr_step_time"] = result["trl_over_rlvr_by_beta"]["0.0"]
    result["provenance"] = provenance(watch, rss_after_imports_mb=RSS_AFTER_IMPORTS, children=True)
    path = args.out or results_path(result["date"], args.tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    from rlvr.runs.rundir import atomic_write_text
    atomic_write_text(path, json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")
    shutil.rmtree(folder, ignore_errors=True)  # the model, the prompt lists and the runs' directories


def print_table(result: dict) -> None:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    head = (f"{'tool':5s} {'beta':>5s} {'s/step med':>10s} {'min':>6s} {'max':>6s} {'gen s':>6s} {'train s':>7s} "
            f"{'tok/s':>7s} {'RSS MB':>7s} {'imports':>7s} {'GFLOP/s':>7s} {'r@20':>6s} {'r@200':>6s} {'r@last':>6s}")
    if result["tools"]:
        print(head)
    for tool, per in result["tools"].items():
        for beta, s in per.items():
            print(f"{tool:5s} {beta:>5s} {s['step_median']:10.3f} {s['step_min']:6.3f} {s['step_max']:6.3f} "
                  f"{s['gen_median']:6.3f} {s['train_median']:7.3f} {s['completion_tokens_per_s']:7.0f} "
                  f"{s['peak_rss_mb']:7.0f} {fmt(s['rss_after_imports_mb'], '7.0f')} {s['achieved_gflops']:7.1f} "
                  f"{fmt(s['reward_at_20'], '6.3f')} {fmt(s['reward_at_200'], '6.3f')} {fmt(s['reward_last'], '6.3f')}")
    for beta, r in result.get("trl_over_rlvr_by_beta", {}).items():
        seeds = result["trl_over_rlvr_per_seed"][beta]
        print(f"TRL / rlvr step time, beta {beta}: {r:.2f}x (per seed {seeds['min']:.2f}-{seeds['max']:.2f})")
    for beta, r in result.get("base_over_new_step_time", {}).items():
        print(f"A/B: base / today's rlvr step time, beta {beta}: {r:.3f}")
    m = result["machine"]
    same = f"; prompts the same for every run: {result['prompt_lists']['same_for_every_run']}" if result["tools"] else ""
    print(f"matmul fp32 {m['fp32_gflops']:.0f}, bf16 {m['bf16_gflops']:.0f} GFLOP/s{same}")
    if "generation" in result:
        g = result["generation"]
        print(f"generation alone: rlvr {g['rlvr']['tokens_per_s']:.0f} tok/s, HF generate {g['hf']['tokens_per_s']:.0f} "
              f"tok/s ({g['rlvr_over_hf']:.2f}x)")
    if result["provenance"]["load"]["busy"]:
        print("(started on a busy machine: see provenance.load)")


if __name__ == "__main__":
    main()
