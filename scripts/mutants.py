"""Mutation testing of the math layer: a fixed list of plausible one-line mutations, each applied to a
copy of the tree and run against the math tests that should catch it.

    python scripts/mutants.py                       # every mutant, 2 at a time, ~5 minutes
    python scripts/mutants.py --only losses         # mutants whose file or description match
    python scripts/mutants.py --json benchmarks/results/mutants.json

Each mutant replaces one exact fragment (``old``, found exactly once in its file) by ``new``; the
working tree is never touched (each job works in its own copy under a temporary directory, imported
first through PYTHONPATH). A mutant is *killed* when its tests fail, *survives* when they pass;
*equivalent* mutants (no input can tell them apart) are listed with the reason and not run. The last
line reads ``mutants: K killed, S survived, E equivalent``; the exit code is 1 when any survived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Queue

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["src", "tests", "configs", "docs", "pyproject.toml", "README.md"]

LOSS_TESTS = ["tests/test_pinned_math.py", "tests/test_losses.py", "tests/test_zoo_losses.py",
              "tests/test_padding_garbage.py"]
DELTA_TESTS = ["tests/test_pinned_math.py", "tests/test_deltas.py", "tests/test_zoo_deltas.py",
               "tests/test_gradient_unbiased.py"]
KL_TESTS = ["tests/test_pinned_math.py", "tests/test_zoo_kl.py", "tests/test_kl_and_aggregation.py",
            "tests/test_padding_garbage.py", "tests/test_credit_shaping.py"]
AGG_TESTS = ["tests/test_pinned_math.py", "tests/test_kl_and_aggregation.py", "tests/test_padding_garbage.py"]
CREDIT_TESTS = ["tests/test_credit_shaping.py", "tests/test_sampling.py", "tests/test_padding_garbage.py"]
TRAINER_TESTS = ["tests/test_pinned_math.py", "tests/test_trainer_zoo.py", "tests/test_credit_shaping.py",
                 "tests/test_padding_garbage.py"]
SAMPLING_TESTS = ["tests/test_sampling.py", "tests/test_credit_shaping.py"]


@dataclass
class Mutant:
    file: str
    old: str
    new: str
    tests: list[str]
    why: str
    equivalent: str = ""           # the reason no input can tell it apart, if it is equivalent
    fate: str = ""
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)


def m(file: str, old: str, new: str, tests: list[str], why: str, equivalent: str = "") -> Mutant:
    return Mutant(f"src/rlvr/{file}", old, new, tests, why, equivalent)


MUTANTS: list[Mutant] = [
    # ---- deltas
    m("algorithms/deltas.py", "return rewards - rewards.mean(dim=-1, keepdim=True)", "return rewards - rewards.mean()",
      DELTA_TESTS, "centered: the batch mean instead of the group mean"),
    m("algorithms/deltas.py", "group_std(rewards, unbiased=unbiased_std) + eps",
      "(group_std(rewards, unbiased=unbiased_std) ** 2 + eps).sqrt()", DELTA_TESTS, "grpo: eps inside the root"),
    m("algorithms/deltas.py", "correction=1 if unbiased else 0", "correction=0 if unbiased else 1",
      DELTA_TESTS, "group std: N and N-1 swapped"),
    m("algorithms/deltas.py", "return (rewards - flat.mean()) / (std + eps)",
      "return (rewards - rewards.mean(dim=-1, keepdim=True)) / (std + eps)", DELTA_TESTS,
      "reinforce++: the group mean instead of the batch mean"),
    m("algorithms/deltas.py", "flat.std(correction=1 if unbiased_std else 0)", "flat.std(correction=0)",
      DELTA_TESTS, "reinforce++: always the population std"),
    m("algorithms/deltas.py", "return best - leave_one_out_max", "return rewards - leave_one_out_max",
      DELTA_TESTS, "pass-at-k: R_i instead of the group best"),
    m("algorithms/deltas.py", "torch.where(rewards == group_max, rewards", "torch.where(rewards != group_max, rewards",
      DELTA_TESTS, "max-only: credits every response but the best"),
    m("algorithms/deltas.py", "torch.where(rewards == group_max, rewards", "torch.where(rewards >= group_max, rewards",
      DELTA_TESTS, "max-only: >= for ==", equivalent="no reward exceeds its own group's maximum"),
    m("algorithms/deltas.py", "(group_size / (group_size - 1))", "((group_size - 1) / group_size)",
      DELTA_TESTS, "rloo: the scale inverted"),
    # ---- policy losses
    m("algorithms/losses.py", "return -torch.minimum(unclipped_obj, clipped_obj)",
      "return -torch.maximum(unclipped_obj, clipped_obj)", LOSS_TESTS, "clip: max for min (the optimistic bound)"),
    m("algorithms/losses.py", "ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high)",
      "ratio.clamp(1 - clip_eps_high, 1 + clip_eps_low)", LOSS_TESTS, "clip: eps_low and eps_high swapped"),
    m("algorithms/losses.py", "(clipped_obj < unclipped_obj).to", "(clipped_obj <= unclipped_obj).to",
      LOSS_TESTS, "clip_frac counts ties (every token inside the range)"),
    m("algorithms/losses.py", "return -log_ratio.exp() * advantages", "return -log_ratio * advantages",
      LOSS_TESTS, "ratio loss from log r instead of r"),
    m("algorithms/losses.py", "clip_objective(log_ratio.exp(), advantages", "clip_objective(log_ratio, advantages",
      LOSS_TESTS, "clipped loss on log r instead of r"),
    m("algorithms/losses.py", "bound = -dual_clip_c * advantages", "bound = dual_clip_c * advantages",
      LOSS_TESTS, "dual clip: the bound's sign flipped"),
    m("algorithms/losses.py", "torch.where(is_negative, torch.minimum(loss, bound), loss)",
      "torch.where(is_negative, torch.maximum(loss, bound), loss)", LOSS_TESTS, "dual clip: max for min"),
    m("algorithms/losses.py", "is_negative = advantages < 0", "is_negative = advantages > 0",
      LOSS_TESTS, "dual clip on positive advantages"),
    m("algorithms/losses.py", "return -advantages * logp,", "return advantages * logp,",
      LOSS_TESTS, "naive: the sign flipped (descends the reward)"),
    m("algorithms/losses.py", "s = (seq_log_ratio.detach() + logp - logp.detach()).exp()",
      "s = (seq_log_ratio + logp - logp.detach()).exp()", LOSS_TESTS, "gspo: the sequence ratio not detached"),
    m("algorithms/losses.py", ".sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)",
      ".sum(-1, keepdim=True)", LOSS_TESTS, "gspo: sum instead of mean of the token log-ratios"),
    m("algorithms/losses.py", "weight = r.clamp(1 - clip_eps_low, 1 + clip_eps_high)",
      "weight = r.clamp(1 - clip_eps_high, 1 + clip_eps_low)", LOSS_TESTS, "cispo: bounds swapped"),
    m("algorithms/losses.py", "    log_ratio = log_ratio_of(logp.detach(), old_logp)",
      "    log_ratio = log_ratio_of(logp, old_logp)", LOSS_TESTS, "cispo: the weight not detached"),
    m("algorithms/losses.py", "real = mask != 0", "real = mask == mask", LOSS_TESTS,
      "policy_loss: padding not sanitised"),
    m("algorithms/losses.py", "return (logp - old_logp.detach()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)",
      "return logp - old_logp.detach()", LOSS_TESTS, "no clamp on the log-ratio"),
    m("algorithms/losses.py", "masked_mean((ratio - 1) - log_ratio, mask)", "masked_mean((ratio - 1) + log_ratio, mask)",
      LOSS_TESTS, "approx_kl: sign of log r"),
    m("algorithms/losses.py", "return masked(values, mask).sum() / mask.sum().clamp(min=1)",
      "return masked(values, mask).mean()", LOSS_TESTS, "metrics averaged over padding too"),
    # ---- KL
    m("algorithms/kl.py", "return logp - ref_logp.detach()", "return ref_logp.detach() - logp",
      KL_TESTS, "k1: sign flipped"),
    m("algorithms/kl.py", "return 0.5 * (ref_logp.detach() - logp) ** 2", "return (ref_logp.detach() - logp) ** 2",
      KL_TESTS, "k2: the 1/2 dropped"),
    m("algorithms/kl.py", "return log_r.exp() - 1 - log_r", "return log_r.exp() - 1 + log_r",
      KL_TESTS, "k3: sign of log r"),
    m("algorithms/kl.py", "log_r = (ref_logp.detach() - logp).clamp(max=LOG_RATIO_LIMIT)",
      "log_r = (logp - ref_logp.detach()).clamp(max=LOG_RATIO_LIMIT)", KL_TESTS, "k3: KL(ref || pi) direction"),
    m("algorithms/kl.py", "return value.detach() + (grad_source - grad_source.detach())",
      "return value + (grad_source - grad_source.detach())", KL_TESTS, "mixed KL: value not detached"),
    m("algorithms/kl.py", "return rewards - coef * seq_kl.reshape(rewards.shape), seq_kl",
      "return rewards + coef * seq_kl.reshape(rewards.shape), seq_kl", KL_TESTS, "KL in the reward as a bonus"),
    m("algorithms/kl.py", "error = min(max(observed_kl / target - 1.0, -0.2), 0.2)",
      "error = observed_kl / target - 1.0", KL_TESTS, "adaptive KL: the error unclipped"),
    m("algorithms/kl.py", "return coef * (1.0 + error * num_samples / horizon)",
      "return coef * (1.0 - error * num_samples / horizon)", KL_TESTS, "adaptive KL: moves away from the target"),
    m("algorithms/kl.py", "kl_penalty(estimator, old_logp.detach(), ref_logp, mask=mask)",
      "kl_penalty(estimator, ref_logp, old_logp.detach(), mask=mask)", KL_TESTS, "KL in the reward: arguments swapped"),
    m("algorithms/kl.py", "real = mask != 0", "real = mask == mask", KL_TESTS, "kl_penalty: padding not sanitised"),
    # ---- aggregation
    m("algorithms/aggregation.py", "return masked(loss, mask).sum() / mask.sum().clamp(min=1)",
      "return masked(loss, mask).mean()", AGG_TESTS, "token-mean over padding too"),
    m("algorithms/aggregation.py", "per_seq = masked(loss, mask).sum(-1) / mask.sum(-1).clamp(min=1)",
      "per_seq = masked(loss, mask).mean(-1)", AGG_TESTS, "seq-mean-token-mean over padding too"),
    m("algorithms/aggregation.py", "masked(loss, mask).sum(-1).mean()\n", "masked(loss, mask).sum(-1).sum()\n",
      AGG_TESTS, "seq-mean-token-sum: sum over responses"),
    m("algorithms/aggregation.py", ".sum(-1).mean() / constant", ".sum(-1).mean() * constant",
      AGG_TESTS, "seq-sum-constant: times the constant"),
    m("algorithms/aggregation.py", "return torch.where(mask != 0, values, torch.zeros((), dtype=values.dtype)) * mask",
      "return values * mask", AGG_TESTS, "masking by multiplication (inf * 0 = NaN)"),
    # ---- credit
    m("algorithms/credit.py", "return deltas.reshape(-1, 1).expand_as(mask) * mask",
      "return deltas.reshape(-1, 1).expand_as(mask) * 1", CREDIT_TESTS, "outcome: padding credited"),
    m("algorithms/credit.py", "to_go = rewards.flip(-1).cumsum(-1).flip(-1)", "to_go = rewards.cumsum(-1)",
      CREDIT_TESTS, "process: reward so far instead of reward-to-go"),
    m("algorithms/credit.py", "per_position = to_go.reshape(batch, group, length).transpose(1, 2)",
      "per_position = to_go.reshape(batch, length, group)", CREDIT_TESTS, "process: (B, T, G) grouping scrambled"),
    m("algorithms/credit.py", ".reshape(-1, length) * mask", ".reshape(-1, length)", CREDIT_TESTS,
      "process: padding credited"),
    m("algorithms/credit.py", "last = real & (real.cumsum(-1) == real.sum(-1, keepdim=True))",
      "last = real & (real.cumsum(-1) == 1)", CREDIT_TESTS, "per-response shaping on the first token"),
    m("algorithms/credit.py", "shaped = shaped + masked(per_token, mask)", "shaped = shaped - masked(per_token, mask)",
      CREDIT_TESTS, "per-token shaping subtracted"),
    # ---- log-probs and entropy
    m("algorithms/logprobs.py", "return chosen - torch.logsumexp(logits, dim=-1)", "return chosen",
      LOSS_TESTS, "log-probs without the normaliser"),
    m("algorithms/logprobs.py", "return -(logp.exp() * logp).sum(-1)", "return (logp.exp() * logp).sum(-1)",
      LOSS_TESTS, "entropy: sign flipped"),
    m("algorithms/logprobs.py", "return masked(token_logp, mask).sum(-1)", "return token_logp.sum(-1)",
      LOSS_TESTS, "sequence_logprob unmasked"),
    # ---- shaping
    m("algorithms/shaping.py", ".clamp(min=-1.0, max=0.0)", ".clamp(min=-1.0, max=1.0)", SAMPLING_TESTS + AGG_TESTS,
      "overlong: short responses get a bonus"),
    m("algorithms/shaping.py", "expected = max_length - buffer", "expected = max_length", SAMPLING_TESTS + AGG_TESTS,
      "overlong: the buffer starts at the limit"),
    m("algorithms/shaping.py", "torch.where(truncated, torch.full_like(soft, -1.0), soft)",
      "torch.where(truncated, soft, torch.full_like(soft, -1.0))", SAMPLING_TESTS + AGG_TESTS,
      "overlong: truncation flag inverted"),
    # ---- schedules
    m("algorithms/schedules.py", "return max(0.0, 1.0 - progress / until)", "return 1.0 - progress / until",
      AGG_TESTS, "linear schedule not floored"),
    m("algorithms/schedules.py", "math.cos(math.pi * min(progress / until, 1.0))", "math.cos(math.pi * progress / until)",
      AGG_TESTS, "cosine schedule not capped"),
    m("algorithms/schedules.py", "0.5 * (1.0 + math.cos(", "0.5 * (1.0 - math.cos(", AGG_TESTS,
      "cosine schedule rising"),
    # ---- sampling
    m("sampling.py", "return rewards.max(-1).values != rewards.min(-1).values",
      "return rewards.max(-1).values == rewards.min(-1).values", SAMPLING_TESTS, "dynamic sampling keeps flat groups"),
    m("sampling.py", "if count >= batch_size or draws > max_refills:", "if count >= batch_size or draws >= max_refills:",
      SAMPLING_TESTS, "dynamic sampling: one refill too few"),
    m("sampling.py", "task.token_rewards(rollouts.prompts[n // group], response)",
      "task.token_rewards(rollouts.prompts[n % group], response)", SAMPLING_TESTS, "token rewards of the wrong prompt"),
    # ---- trainer: loss assembly, batch, reference refresh
    m("trainer.py", "loss = loss + batch.kl_loss_coef * kl", "loss = loss - batch.kl_loss_coef * kl",
      TRAINER_TESTS, "KL in the loss as a bonus"),
    m("trainer.py", "loss = loss - entropy_coef * mean_entropy", "loss = loss + entropy_coef * mean_entropy",
      TRAINER_TESTS, "entropy bonus as a penalty"),
    m("trainer.py", "kl_loss_coef=0.0 if in_reward else self.kl_coef", "kl_loss_coef=self.kl_coef",
      TRAINER_TESTS, "KL counted twice (reward and loss)"),
    m("trainer.py", "masked(log_ratio_of(logp, r.logprobs), batch.loss_mask).exp()",
      "masked(log_ratio_of(logp, r.logprobs), batch.loss_mask).exp().detach()", TRAINER_TESTS,
      "ratio-weighted KL: the ratio detached"),
    m("trainer.py", "(step - 1) % algo.ref_refresh_every == 0", "step % algo.ref_refresh_every == 0",
      TRAINER_TESTS, "reference refreshed one step late"),
    m("trainer.py", "per_token = -self.kl_coef * token_kl(", "per_token = self.kl_coef * token_kl(",
      TRAINER_TESTS, "KL in the reward as a per-token bonus"),
    m("trainer.py", "rewards = rewards + per_token.sum(-1).reshape(rewards.shape)",
      "rewards = rewards - per_token.sum(-1).reshape(rewards.shape)", TRAINER_TESTS,
      "KL in the outcome reward as a bonus"),
    m("trainer.py", "rollouts.mask * (~rollouts.truncated.bool())", "rollouts.mask * (rollouts.truncated.bool())",
      TRAINER_TESTS, "overlong filtering keeps only the truncated"),
    m("trainer.py", "masked(batch.rollouts.logprobs - batch.ref_logprobs, batch.rollouts.mask)",
      "masked(batch.ref_logprobs - batch.rollouts.logprobs, batch.rollouts.mask)", TRAINER_TESTS,
      "sequence KL: direction flipped"),
]


def load_extra() -> list[Mutant]:
    """Mutants kept beside this file for the evaluation and analysis code (scripts/mutants_analysis.py)."""
    extra = ROOT / "scripts" / "mutants_analysis.py"
    if not extra.exists():
        return []
    namespace: dict = {}
    exec(compile(extra.read_text(), str(extra), "exec"), namespace)  # a plain list of dicts
    return [Mutant(d["file"], d["old"], d["new"], d["tests"], d.get("why", ""), d.get("equivalent", ""))
            for d in namespace["MUTANTS"]]


def make_copy(base: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, base / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, base / name)
    return base


def environment(copy: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy / "src"), OMP_NUM_THREADS=str(threads),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def run_tests(copy: Path, tests: list[str], threads: int, timeout: float) -> tuple[int, list[str]]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-m", "not slow and not distributed", *tests]
    try:
        out = subprocess.run(cmd, cwd=copy, env=environment(copy, threads), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, ["timeout"]
    failed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return out.returncode, failed


def check(mutant: Mutant) -> None:
    text = (ROOT / mutant.file).read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutants: {mutant.file}: {mutant.old!r} occurs {count} times (must be once)")


def run_mutant(mutant: Mutant, copies: Queue, threads: int, timeout: float) -> Mutant:
    copy = copies.get()
    target = copy / mutant.file
    original = target.read_text()
    try:
        target.write_text(original.replace(mutant.old, mutant.new, 1))
        start = time.perf_counter()
        code, failed = run_tests(copy, mutant.tests, threads, timeout)
        mutant.seconds = time.perf_counter() - start
        mutant.failed = failed
        mutant.fate = {0: "survived", 1: "killed", -1: "killed (timeout)"}.get(code, f"killed (pytest exit {code})")
    finally:
        target.write_text(original)
        copies.put(copy)
    return mutant


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the mutants whose file or description contains this")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (one copy of the tree each)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a mutant's tests count as hung")
    parser.add_argument("--json", type=Path, help="write every mutant and its fate here")
    args = parser.parse_args()
    mutants = [x for x in MUTANTS + load_extra() if args.only in x.file or args.only in x.why]
    for mutant in mutants:
        check(mutant)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rlvr-mutants-") as tmp:
        copies: Queue = Queue()
        for job in range(args.jobs):
            copies.put(make_copy(Path(tmp) / f"copy{job}"))
        baseline = sorted({t for x in mutants for t in x.tests})
        probe = copies.get()
        where = subprocess.run([sys.executable, "-c", "import rlvr; print(rlvr.__file__)"], env=environment(probe, 1),
                               capture_output=True, text=True, cwd=probe).stdout.strip()
        if not where.startswith(str(probe)):
            raise SystemExit(f"mutants: the copy's rlvr is not the one imported ({where})")
        code, failed = run_tests(probe, baseline, threads * args.jobs, args.timeout * 2)
        copies.put(probe)
        if code != 0:
            raise SystemExit(f"mutants: the unmutated tests fail ({failed}); fix them first")
        live = [x for x in mutants if not x.equivalent]
        with ThreadPoolExecutor(args.jobs) as pool:
            for done in pool.map(lambda x: run_mutant(x, copies, threads, args.timeout), live):
                show(done)
    for mutant in mutants:
        if mutant.equivalent:
            mutant.fate = "equivalent"
            show(mutant)
    counts = {fate: sum(x.fate.startswith(fate) for x in mutants) for fate in ("killed", "survived", "equivalent")}
    summary = f"mutants: {counts['killed']} killed, {counts['survived']} survived, {counts['equivalent']} equivalent"
    print(f"({len(mutants)} mutants in {time.perf_counter() - started:.0f} s, {args.jobs} at a time)")
    print(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "load_average": os.getloadavg(),
                  "mutants": [asdict(x) for x in mutants]}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 1 if counts["survived"] else 0


def show(mutant: Mutant) -> None:
    where = f"{mutant.file.removeprefix('src/rlvr/')}"
    detail = mutant.equivalent if mutant.equivalent else f"{mutant.seconds:.1f} s, {', '.join(mutant.failed[:2])}"
    print(f"{mutant.fate.upper():<10} {where:<28} {mutant.why}  ({detail})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
