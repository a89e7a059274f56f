"""W1 side by side: rlvr vs TRL's GRPOTrainer on the same model folder, same settings (workloads.md).

    python benchmarks/bench_w1.py                                  # 200 steps, 3 seeds, betas 0 and 0.04
    python benchmarks/bench_w1.py --steps 60 --seeds 1 --betas 0   # a quick run

Builds the W1 model folder (LlamaForCausalLM from LlamaConfig, torch.manual_seed(0), saved by
save_pretrained, then exported in our Llama-compatible format with rlvr's character tokenizer) once;
both tools load that folder. Every run is its own subprocess of this process (A B A B: rlvr, TRL,
rlvr, TRL ...) and reports its own ru_maxrss. TRL runs only when the `bench` extra (trl) is
installed; its reward function calls rlvr's sort-text verifier on TRL's completion ids. Also times
rollout generation alone: rlvr's sampler vs HF ``generate`` on the same model and batch.
Writes benchmarks/results/w1-<date>.json (w1-<date>-2.json, ... when that day already has one) and a table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS, GROUP, MAX_NEW, LR, THREADS = 16, 8, 12, 1e-3, 2
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(dtype: torch.dtype, n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


# ---------------------------------------------------------------- children (one run each)
def run_rlvr(folder: str, steps: int, beta: float, seed: int) -> dict:
    from rlvr.config import load_config
    from rlvr.trainer import Trainer

    cfg = load_config(None, {
        "name": "w1", "seed": seed, "run_dir": tempfile.mkdtemp(prefix="w1-rlvr-"),
        "task.name": "sort-text", "task.length": 5, "task.num_eval_prompts": 16,
        "policy.kind": "transformer", "policy.model": folder, "policy.max_new_tokens": MAX_NEW,
        "algo.deltas": "normalized", "algo.loss": "clipped", "algo.clip_eps_low": 0.2,
        "algo.aggregation": "token-mean", "algo.kl_coef": beta, "algo.kl_estimator": "k3",
        "algo.ref_refresh_every": 0,  # W1: KL against the initial model, as TRL's fixed reference
        "algo.kl_ratio_weight": True,  # TRL 1.16's default use_bias_correction_kl: KL x ratio
        "optim.name": "adamw", "optim.lr": LR, "optim.grad_clip": 1.0,
        "train.outer_steps": steps, "train.inner_steps": 1, "train.prompts_per_step": PROMPTS,
        "train.group_size": GROUP, "train.threads": THREADS, "train.bf16": BF16, "train.diagnostics_every": 0,
        "eval.every": 10 ** 6, "eval.samples_every": 10 ** 6})
    trainer = Trainer(cfg, show_progress=False)
    rows = [trainer.outer_step(step) for step in range(1, steps + 1)]
    return {"step_s": [r["time/step"] for r in rows], "gen_s": [r["time/rollout"] for r in rows],
            "train_s": [r["time/train"] for r in rows], "reward": [r["train/reward_mean"] for r in rows],
            "tokens": [r["train/response_length"] * PROMPTS * GROUP for r in rows], "rss_mb": rss_mb()}


def run_trl(folder: str, steps: int, beta: float, seed: int) -> dict:
    import random

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.tasks.text import Completion
    from rlvr.tokenizer import CharTokenizer

    task, codec = sort_task(), CharTokenizer.load(Path(folder))
    rng = random.Random(seed)
    prompts = [" ".join(str(rng.randrange(10)) for _ in range(5)) + ">" for _ in range(PROMPTS * steps)]

    def reward(prompts, completions, completion_ids, **_):  # rlvr's verifier on TRL's ids
        return [task.reward(p, Completion(tuple(ids), codec.eos_id, codec.special_ids, codec.decode))
                for p, ids in zip(prompts, completion_ids, strict=True)]

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    clock = {"gen": 0.0, "tokens": 0}
    generate = model.generate

    def timed(*a, **k):
        t = time.perf_counter()
        out = generate(*a, **k)
        clock["gen"] += time.perf_counter() - t
        return out
    model.generate = timed
    out = {"step_s": [], "gen_s": [], "train_s": []}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t, self.g = time.perf_counter(), clock["gen"]

        def on_step_end(self, args, state, control, **kw):
            total, gen = time.perf_counter() - self.t, clock["gen"] - self.g
            out["step_s"].append(total)
            out["gen_s"].append(gen)
            out["train_s"].append(total - gen)

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="w1-trl-"), per_device_train_batch_size=PROMPTS * GROUP,
        gradient_accumulation_steps=1, generation_batch_size=PROMPTS * GROUP, num_generations=GROUP,
        max_completion_length=MAX_NEW, temperature=1.0, learning_rate=LR, lr_scheduler_type="constant",
        max_grad_norm=1.0, epsilon=0.2, beta=beta, num_iterations=1, logging_steps=1, bf16=False,
        gradient_checkpointing=False, max_steps=steps, report_to=[], save_strategy="no", use_cpu=True,
        seed=seed, shuffle_dataset=False, warmup_steps=0, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts}),
                          processing_class=AutoTokenizer.from_pretrained(folder), callbacks=[Clock()])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    out["reward"] = [h["reward"] for h in logs]
    out["tokens"] = [h.get("completions/mean_length", 0.0) * PROMPTS * GROUP for h in logs]
    out["rss_mb"] = rss_mb()
    return out


def run_generation(folder: str, tool: str, reps: int) -> dict:
    """Rollout generation alone: 16 prompts x 8, 12 new tokens, sampling at temperature 1."""
    from rlvr.policies.transformer import TransformerPolicy

    policy = TransformerPolicy.load_hf(Path(folder), max_new_tokens=MAX_NEW)
    rng = torch.Generator().manual_seed(0)
    prompt_ids = policy.encode_prompts([sort_task().random_prompt(__import__("numpy").random.default_rng(i))
                                        for i in range(PROMPTS)])
    if tool == "hf":
        from transformers import AutoModelForCausalLM
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
    return {"s": times, "tokens": tokens, "tokens_per_s": sum(tokens) / sum(times), "rss_mb": rss_mb()}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    if args.child == "gen-rlvr":
        out = run_generation(args.folder, "rlvr", args.steps)
    elif args.child == "gen-hf":
        out = run_generation(args.folder, "hf", args.steps)
    else:
        fn = run_rlvr if args.child == "rlvr" else run_trl
        out = fn(args.folder, args.steps, args.beta, args.seed)
    Path(args.out).write_text(json.dumps(out))


# ---------------------------------------------------------------- the parent: alternate, summarise
def spawn(kind: str, folder: Path, steps: int, beta: float = 0.0, seed: int = 0) -> dict:
    """Run one child process; kind ``rlvr-base`` is rlvr's run with the library imported from --ab-base."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    if kind == "rlvr-base":
        env["PYTHONPATH"] = AB_BASE
    cmd = [sys.executable, __file__, "--child", kind.removesuffix("-base"), "--folder", str(folder), "--steps", str(steps),
           "--beta", str(beta), "--seed", str(seed), "--out", str(out), "--threads", str(THREADS)]
    cmd += ["--bf16"] if BF16 else []
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
    steps = [s for r in runs for s in r["step_s"][1:]]  # step 1 warms up
    gen = [s for r in runs for s in r["gen_s"][1:]]
    train = [s for r in runs for s in r["train_s"][1:]]
    tokens = [t for r in runs for t in r["tokens"][1:]]
    total = sum(tokens) / len(tokens)
    out = {"step_median": statistics.median(steps), "step_min": min(steps), "step_max": max(steps),
           "gen_median": statistics.median(gen), "train_median": statistics.median(train),
           "completion_tokens_per_s": total / statistics.median(steps),
           "mean_completion_tokens": total, "peak_rss_mb": max(r["rss_mb"] for r in runs),
           "reward_at_20": mean_at(runs, 20), "reward_at_200": mean_at(runs, 200),
           "reward_last": mean_at(runs, len(runs[0]["reward"]))}
    out["achieved_gflops"] = flops_per_token * total / statistics.median(train) / 1e9
    return out


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
    p.add_argument("--tag", default="", help="results file w1-<date>-<tag>.json instead of w1-<date>.json")
    p.add_argument("--child", choices=["rlvr", "trl", "gen-rlvr", "gen-hf"], help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--beta", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    THREADS, BF16, AB_BASE = args.threads, args.bf16, str(Path(args.ab_base).resolve()) if args.ab_base else ""
    if args.child:
        return child(args)
    torch.set_num_threads(THREADS)
    with_trl = not args.no_trl and importlib.util.find_spec("trl") is not None
    folder = Path(tempfile.mkdtemp(prefix="w1-model-"))
    params = build_folder(folder)
    # training FLOPs per completion token: forward + backward = 6 x the non-embedding parameters
    flops_per_token = 6.0 * (params - 16 * 128)
    machine = {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16),
               "cpu_count": os.cpu_count(), "threads": THREADS, "load_avg": os.getloadavg()}
    print(f"W1 folder {folder} ({params} parameters); TRL {'on' if with_trl else 'off'}; "
          f"matmul fp32 {machine['fp32_gflops']:.0f} GFLOP/s, bf16 {machine['bf16_gflops']:.0f} GFLOP/s", flush=True)
    tools = ["rlvr", "trl"] if with_trl else ["rlvr"]
    tools += ["rlvr-base"] if AB_BASE else []
    runs: dict[str, dict[str, list[dict]]] = {t: {} for t in tools}
    for beta in args.betas:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for tool in tools:  # A B A B
                runs[tool].setdefault(str(beta), []).append(spawn(tool, folder, args.steps, beta, seed))
    gen = {"rlvr": [], "hf": []}
    for _ in range(2):
        for tool in gen:
            gen[tool].append(spawn(f"gen-{tool}", folder, args.gen_reps))
    result = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "threads": THREADS,
              "steps": args.steps, "seeds": args.seeds, "first_seed": args.first_seed,
              "betas": args.betas, "params": params, "machine": machine,
              "settings": {"prompts": PROMPTS, "group": GROUP, "max_new_tokens": MAX_NEW, "lr": LR, "rlvr_bf16": BF16},
              "tools": {t: {b: summarise(rs, flops_per_token) for b, rs in per.items()} for t, per in runs.items()},
              "raw": runs,
              "generation": {t: {"tokens_per_s": statistics.median([r["tokens_per_s"] for r in rs]),
                                 "peak_rss_mb": max(r["rss_mb"] for r in rs)} for t, rs in gen.items()}}
    result["generation"]["rlvr_over_hf"] = (result["generation"]["rlvr"]["tokens_per_s"]
                                            / result["generation"]["hf"]["tokens_per_s"])
    if AB_BASE:
        result["ab_base"] = AB_BASE
        result["base_over_new_step_time"] = {b: result["tools"]["rlvr-base"][b]["step_median"]
                                             / result["tools"]["rlvr"][b]["step_median"] for b in result["tools"]["rlvr"]}
    if with_trl:
        ratios = {b: result["tools"]["trl"][b]["step_median"] / result["tools"]["rlvr"][b]["step_median"]
                  for b in result["tools"]["rlvr"]}
        result["trl_over_rlvr_by_beta"] = ratios
        if "0.0" in ratios:
            result["trl_over_rlvr_step_time"] = ratios["0.0"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"w1-{result['date']}{'-' + args.tag if args.tag else ''}"
    path, n = RESULTS / f"{stem}.json", 1
    while path.exists():  # an earlier run of the same day and tag keeps its file
        n += 1
        path = RESULTS / f"{stem}-{n}.json"
    from rlvr.runs.rundir import atomic_write_text
    atomic_write_text(path, json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")


def print_table(result: dict) -> None:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    head = (f"{'tool':5s} {'beta':>5s} {'s/step med':>10s} {'min':>6s} {'max':>6s} {'gen s':>6s} {'train s':>7s} "
            f"{'tok/s':>7s} {'RSS MB':>7s} {'GFLOP/s':>7s} {'r@20':>6s} {'r@200':>6s} {'r@last':>6s}")
    print(head)
    for tool, per in result["tools"].items():
        for beta, s in per.items():
            print(f"{tool:5s} {beta:>5s} {s['step_median']:10.3f} {s['step_min']:6.3f} {s['step_max']:6.3f} "
                  f"{s['gen_median']:6.3f} {s['train_median']:7.3f} {s['completion_tokens_per_s']:7.0f} "
                  f"{s['peak_rss_mb']:7.0f} {s['achieved_gflops']:7.1f} {fmt(s['reward_at_20'], '6.3f')} "
                  f"{fmt(s['reward_at_200'], '6.3f')} {fmt(s['reward_last'], '6.3f')}")
    for beta, r in result.get("trl_over_rlvr_by_beta", {}).items():
        print(f"TRL / rlvr step time, beta {beta}: {r:.2f}x")
    for beta, r in result.get("base_over_new_step_time", {}).items():
        print(f"A/B: base / today's rlvr step time, beta {beta}: {r:.3f}")
    g, m = result["generation"], result["machine"]
    print(f"generation alone: rlvr {g['rlvr']['tokens_per_s']:.0f} tok/s, HF generate {g['hf']['tokens_per_s']:.0f} "
          f"tok/s ({g['rlvr_over_hf']:.2f}x); matmul fp32 {m['fp32_gflops']:.0f}, bf16 {m['bf16_gflops']:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
