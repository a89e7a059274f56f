"""One-line mutations of pass@k (``evaluation.py``) and ``analysis/``, each killed by a pinned test.

``MUTANTS`` is meant to be merged into scripts/mutants.py. Each entry replaces ``old`` (which occurs
exactly once in ``file``) by ``new``; the mutant is killed when one of ``tests`` fails. An entry with
``equivalent`` cannot change any output (the reason is given) and is expected to survive.

Run on its own (works on a temporary copy of src/ and tests/, so the work tree is never touched):
    .venv/bin/python scripts/mutants_analysis.py [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVAL = ["tests/test_pinned_eval.py"]
PINNED = ["tests/test_pinned_analysis.py"]

MUTANTS: list[dict[str, object]] = [
    # -- evaluation.py: pass@k and evaluate ---------------------------------------------------------
    {"file": "src/rlvr/evaluation.py",
     "old": "return 1.0 - comb(num_samples - num_correct, k) / comb(num_samples, k)",
     "new": "return 1.0 - (1.0 - num_correct / num_samples) ** k",
     "tests": EVAL, "why": "pass@k with replacement instead of the unbiased estimator"},
    {"file": "src/rlvr/evaluation.py", "old": "if num_samples - num_correct < k:",
     "new": "if num_samples - num_correct <= k:", "tests": EVAL,
     "why": "off by one: n - c = k is not a sure pass"},
    {"file": "src/rlvr/evaluation.py", "old": "comb(num_samples - num_correct, k)",
     "new": "comb(num_samples - num_correct + 1, k)", "tests": EVAL, "why": "wrong count of all-wrong subsets"},
    {"file": "src/rlvr/evaluation.py", "old": "if not (1 <= k <= num_samples and 0 <= num_correct <= num_samples):",
     "new": "if not (1 <= k and 0 <= num_correct <= num_samples):", "tests": EVAL,
     "why": "k > n accepted again (pass@k = 1 with no correct sample)"},
    {"file": "src/rlvr/evaluation.py", "old": "group = sampled[i * pass_samples:(i + 1) * pass_samples]",
     "new": "group = sampled[i:i + pass_samples]", "tests": EVAL, "why": "samples of the wrong prompt"},
    {"file": "src/rlvr/evaluation.py", "old": "sum(task.is_correct(prompt, r) for r in group), pass_k))",
     "new": "sum(task.is_correct(prompt, r) for r in group), pass_samples))", "tests": EVAL,
     "why": "pass@n reported as pass@k"},
    {"file": "src/rlvr/evaluation.py", "old": "samples = policy.sample(prompt_ids, pass_samples,",
     "new": "samples = policy.sample(prompt_ids, pass_k,", "tests": EVAL, "why": "k samples per prompt, not n"},
    {"file": "src/rlvr/evaluation.py", "old": "generator=generator, temperature=temperature)",
     "new": "generator=generator)", "tests": EVAL, "why": "pass@k sampled at temperature 1 whatever asked"},
    {"file": "src/rlvr/evaluation.py", "old": "exact = [task.is_correct(p, r) for p, r in zip(prompts, greedy, strict=True)]",
     "new": "exact = [task.reward(p, r) > 0 for p, r in zip(prompts, greedy, strict=True)]", "tests": EVAL,
     "why": "exact match read as a positive reward"},
    {"file": "src/rlvr/evaluation.py", "old": '"eval/reward_mean": sum(greedy_rewards) / len(greedy_rewards)',
     "new": '"eval/reward_mean": sum(greedy_rewards) / len(greedy_rewards) / task.max_reward', "tests": EVAL,
     "why": "reward mean normalised by the maximum reward"},
    # -- analysis/exact.py: moments and baselines ----------------------------------------------------
    {"file": "src/rlvr/analysis/exact.py", "old": "variance=var_s.sum(0) / num_states**2)",
     "new": "variance=var_s.sum(0) / num_states)", "tests": PINNED, "why": "Var[g] / S for / S^2"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return Moments(mean=mean_s.mean(0),",
     "new": "return Moments(mean=mean_s.sum(0),", "tests": PINNED, "why": "E[g] summed over states, not averaged"},
    {"file": "src/rlvr/analysis/exact.py",
     "old": "var_s = (weights.unsqueeze(-1) * (per_state - mean_s.unsqueeze(1)).square()).sum(1)",
     "new": "var_s = ((per_state - mean_s.unsqueeze(1)).square()).sum(1)", "tests": PINNED,
     "why": "variance without the groups' probabilities"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return (problem.probs * problem.rewards).sum(-1).reshape(-1, 1, 1, 1)",
     "new": "return problem.rewards.mean(-1).reshape(-1, 1, 1, 1)", "tests": PINNED,
     "why": "V(s) as the plain mean of the rewards, not weighted by pi(a | s)"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return torch.full((1, 1, 1, 1), constant, dtype=group_rewards.dtype)",
     "new": "return torch.full((1, 1, 1, 1), -constant, dtype=group_rewards.dtype)", "tests": PINNED,
     "why": "constant baseline added instead of subtracted"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return group_rewards.mean(-1, keepdim=True).unsqueeze(-1)",
     "new": "return group_rewards.sum(-1, keepdim=True).unsqueeze(-1)", "tests": PINNED,
     "why": "group baseline the sum, not the mean"},
    {"file": "src/rlvr/analysis/exact.py", "old": "others = (group_rewards.sum(-1, keepdim=True) - group_rewards) / (group_size - 1)",
     "new": "others = (group_rewards.sum(-1, keepdim=True) - group_rewards) / group_size", "tests": PINNED,
     "why": "RLOO mean of the others over G, not G - 1"},
    {"file": "src/rlvr/analysis/exact.py", "old": "if group_size < 2:", "new": "if group_size < 1:", "tests": PINNED,
     "why": "RLOO with G = 1 divides by zero instead of refusing"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return optimal_baseline_vector(problem, per_state=True).unsqueeze(1).unsqueeze(1)",
     "new": "return optimal_baseline_vector(problem, per_state=False).unsqueeze(1).unsqueeze(1)", "tests": PINNED,
     "why": "per-state optimal baseline pooled over states"},
    {"file": "src/rlvr/analysis/exact.py", "old": "weight = problem.probs.unsqueeze(-1) * problem.scores.square()",
     "new": "weight = problem.scores.square()", "tests": PINNED, "why": "b* without the policy's weights"},
    {"file": "src/rlvr/analysis/exact.py", "old": "weight = problem.probs.unsqueeze(-1) * problem.scores.square()",
     "new": "weight = problem.probs.unsqueeze(-1) * problem.scores.abs()", "tests": PINNED,
     "why": "b* weighted by |score|, not score^2"},
    {"file": "src/rlvr/analysis/exact.py", "old": "dims = (1,) if per_state else (0, 1)",
     "new": "dims = (0, 1) if per_state else (1,)", "tests": PINNED, "why": "pooled and per-state swapped"},
    {"file": "src/rlvr/analysis/exact.py", "old": "numerator = (weight * problem.rewards.unsqueeze(-1)).sum(dims)",
     "new": "numerator = (weight * problem.rewards.unsqueeze(-1)).sum(dims) - weight.sum(dims)", "tests": PINNED,
     "why": "b* shifted by one"},
    {"file": "src/rlvr/analysis/exact.py", "old": "numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))",
     "new": "numerator / denominator.clamp(min=1e-300), torch.ones_like(numerator))", "tests": PINNED,
     "why": "a parameter no action moves gets baseline 1, not 0"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return weighted.sum((0, 1)) / problem.probs.shape[0]",
     "new": "return weighted.sum((0, 1))", "tests": PINNED, "why": "grad J without the 1/S"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return ((group_rewards.unsqueeze(-1) - b) * group_scores).mean(2)",
     "new": "return ((group_rewards.unsqueeze(-1) - b) * group_scores).sum(2)", "tests": PINNED,
     "why": "estimate summed over the group, not averaged"},
    {"file": "src/rlvr/analysis/exact.py", "old": "return ((group_rewards.unsqueeze(-1) - b) * group_scores).mean(2)",
     "new": "return ((group_rewards.unsqueeze(-1) + b) * group_scores).mean(2)", "tests": PINNED,
     "why": "baseline added instead of subtracted"},
    {"file": "src/rlvr/analysis/exact.py", "old": "itertools.product(range(num_actions), repeat=group_size)",
     "new": "itertools.combinations_with_replacement(range(num_actions), group_size)", "tests": PINNED,
     "why": "unordered groups: the mixed groups lose half their probability"},
    {"file": "src/rlvr/analysis/exact.py", "old": "weights = problem.probs[torch.arange(num_states).reshape(-1, 1, 1), groups].prod(-1)",
     "new": "weights = problem.probs[torch.arange(num_states).reshape(-1, 1, 1), groups].sum(-1) / group_size",
     "tests": PINNED, "why": "group probability the mean of its actions', not the product"},
    {"file": "src/rlvr/analysis/exact.py", "old": "weights = torch.full((num_states, num_groups), 1.0 / num_groups,",
     "new": "weights = torch.full((num_states, num_groups), 1.0 / (num_groups - 1),", "tests": PINNED,
     "why": "Monte Carlo weights that do not sum to 1"},
    # -- analysis/two_state.py -----------------------------------------------------------------------
    {"file": "src/rlvr/analysis/two_state.py", "old": "within = eye_a.unsqueeze(0) - probs.unsqueeze(1)",
     "new": "within = probs.unsqueeze(1) - eye_a.unsqueeze(0)", "tests": PINNED,
     "why": "score sign flipped (variances unchanged, gradient reversed)"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "within = eye_a.unsqueeze(0) - probs.unsqueeze(1)",
     "new": "within = eye_a.unsqueeze(0) - probs.unsqueeze(2)", "tests": PINNED,
     "why": "pi(a | s) for pi(a' | s) in the score (equal only at the uniform policy)"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "scores = (eye_s.reshape(num_states, 1, num_states, 1) * within.unsqueeze(2))",
     "new": "scores = (torch.ones(num_states, 1, num_states, 1, dtype=theta.dtype) * within.unsqueeze(2))",
     "tests": PINNED, "why": "a state's action moves the other state's logits too"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "values.var(correction=0)", "new": "values.var()",
     "tests": PINNED, "why": "the notes' table variance with Bessel's correction (28.3, not 21.25)"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "centered = rewards - baseline", "new": "centered = baseline - rewards",
     "tests": PINNED, "why": "centered rewards with the wrong sign"},
    {"file": "src/rlvr/analysis/two_state.py", "old": '"mean_over_true": float(m.mean @ true_grad / true_grad.square().sum())',
     "new": '"mean_over_true": float(m.mean @ true_grad / true_grad.norm())', "tests": PINNED,
     "why": "projection on grad J divided by |grad J|, not |grad J|^2"},
    {"file": "src/rlvr/analysis/two_state.py", "old": '"bias_norm": float((m.mean - true_grad).norm())',
     "new": '"bias_norm": float((m.mean - true_grad).square().sum())', "tests": PINNED, "why": "squared bias"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "return g.mean((0, 1)).reshape(theta.shape)",
     "new": "return g.sum((0, 1)).reshape(theta.shape)", "tests": PINNED, "why": "training step S times too large"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "theta = theta + setup.lr * direction(theta, groups)",
     "new": "theta = theta - setup.lr * direction(theta, groups)", "tests": PINNED, "why": "descent on the reward"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "theta[..., 0] = setup.init_logit_gap",
     "new": "theta[..., 1] = setup.init_logit_gap", "tests": PINNED, "why": "initial gap favours a2, not a1"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "OPTIMAL_ACTIONS = torch.tensor([0, 1])",
     "new": "OPTIMAL_ACTIONS = torch.tensor([0, 0])", "tests": PINNED, "why": "wrong optimum in s2"},
    {"file": "src/rlvr/analysis/two_state.py", "old": '"s1_stuck_on_a2": float((final[:, 0] < 1 - success).double().mean())',
     "new": '"s1_stuck_on_a2": float((final[:, 1] < 1 - success).double().mean())', "tests": PINNED,
     "why": "stuck share of the wrong state"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "converged[name] = (history > setup.success).all(-1).double().mean(-1).tolist()",
     "new": "converged[name] = (history > setup.success).any(-1).double().mean(-1).tolist()", "tests": PINNED,
     "why": "converged when one state is, not both"},
    {"file": "src/rlvr/analysis/two_state.py", "old": "gap = torch.log(p / (1 - p))", "new": "gap = torch.log((1 - p) / p)",
     "tests": PINNED, "why": "sweep at pi(a1) = 1 - p"},
    # -- analysis/enumerate.py -----------------------------------------------------------------------
    {"file": "src/rlvr/analysis/enumerate.py", "old": "response_ids = responses.repeat(num_prompts, 1)",
     "new": "response_ids = responses.repeat_interleave(num_prompts, 0)", "tests": PINNED,
     "why": "responses paired with the wrong prompts"},
    {"file": "src/rlvr/analysis/enumerate.py", "old": "if count > MAX_RESPONSES:", "new": "if count >= MAX_RESPONSES:",
     "tests": PINNED, "why": "the limit itself refused"},
    {"file": "src/rlvr/analysis/enumerate.py", "old": "logp = response_logprobs(policy, prompts, responses, temperature=temperature)",
     "new": "logp = response_logprobs(policy, prompts, responses)", "tests": PINNED,
     "why": "enumeration ignores the sampling temperature"},
    {"file": "src/rlvr/analysis/enumerate.py", "old": "return FiniteProblem(probs=logp.detach().exp(),",
     "new": "return FiniteProblem(probs=logp.detach().softmax(-1),", "tests": PINNED,
     "why": "renormalised probabilities",
     "equivalent": "a fixed-length policy's probabilities over all V**T responses already sum to 1, so the "
                   "softmax of log pi is pi (up to rounding)"},
    # -- analysis/diagnostics.py ---------------------------------------------------------------------
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "noise = float((h1 - h2).square().sum()) / 4",
     "new": "noise = float((h1 - h2).square().sum()) / 8", "tests": PINNED, "why": "gradient noise scale halved"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": '"diag/grad_noise_scale": num_responses * noise / signal if signal > 0 else None',
     "new": '"diag/grad_noise_scale": num_responses * noise / signal if signal != 0 else None', "tests": PINNED,
     "why": "a negative noise scale reported when the signal is not resolved"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "keep = (torch.arange(r.mask.shape[0]) % 2 == parity)",
     "new": "keep = (torch.arange(r.mask.shape[0]) // 2 == parity)", "tests": PINNED,
     "why": "halves are the first two responses and the next two, not even/odd"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "rollouts=dataclasses.replace(r, mask=r.mask * keep)",
     "new": "rollouts=dataclasses.replace(r, mask=r.mask)", "tests": PINNED, "why": "half batch keeps every mask"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "advantages=batch.advantages * keep)",
     "new": "advantages=batch.advantages)", "tests": PINNED, "why": "half batch keeps every advantage"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "    correction(policy, batch, loss_of)\n",
     "new": "\n", "tests": PINNED, "why": "diagnostic ignores the trainer's gradient correction"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "return w.sum().square() / (w.numel() * w.square().sum())",
     "new": "return w.sum().square() / w.square().sum()", "tests": PINNED, "why": "ESS not divided by N"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "w = (log_weights - log_weights.max()).exp()",
     "new": "w = log_weights.exp()", "tests": PINNED, "why": "overflow for large log-ratios"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "sequence_logprob(logp - r.logprobs, r.mask)",
     "new": "sequence_logprob(r.logprobs - logp, r.mask)", "tests": PINNED, "why": "ratio pi_old / pi_theta"},
    {"file": "src/rlvr/analysis/diagnostics.py", "old": "sequence_logprob(logp - r.logprobs, r.mask)",
     "new": "(logp - r.logprobs).sum(-1)", "tests": PINNED, "why": "padded tokens counted in the ratio"},
    # -- analysis/param_baseline.py ------------------------------------------------------------------
    {"file": "src/rlvr/analysis/param_baseline.py", "old": "p.grad.sub_(b_p * g)", "new": "p.grad.add_(b_p * g)",
     "tests": PINNED, "why": "baseline added to the gradient"},
    {"file": "src/rlvr/analysis/param_baseline.py", "old": "owner = torch.arange(r.mask.shape[0]) // r.group_size",
     "new": "owner = torch.arange(r.mask.shape[0]) % r.group_size", "tests": PINNED,
     "why": "responses assigned to the wrong prompt's baseline"},
    {"file": "src/rlvr/analysis/param_baseline.py", "old": "return optimal_hook(cfg, task, per_prompt=True)",
     "new": "return optimal_hook(cfg, task, per_prompt=False)", "tests": PINNED,
     "why": "per-prompt baseline pooled"},
    {"file": "src/rlvr/analysis/param_baseline.py", "old": "start += p.numel()", "new": "start += 0",
     "tests": PINNED, "why": "every parameter gets the first parameter's baseline"},
    {"file": "src/rlvr/analysis/param_baseline.py", "old": 'if state["rollouts"] is not batch.rollouts.response_ids:',
     "new": "if True:", "tests": PINNED, "why": "b* re-enumerated on every inner step (and at the moved policy)"},
    {"file": "src/rlvr/analysis/param_baseline.py", "old": "if cfg.algo.deltas != \"raw\":",
     "new": "if False:", "tests": PINNED, "why": "b* subtracted from already-centred deltas"},
    # -- analysis/task_variance.py -------------------------------------------------------------------
    {"file": "src/rlvr/analysis/task_variance.py", "old": "return -torch.cat([p.grad.reshape(-1)",
     "new": "return torch.cat([p.grad.reshape(-1)", "tests": PINNED, "why": "descent direction reported"},
    {"file": "src/rlvr/analysis/task_variance.py", "old": "if mode in OPTIMAL:  # the trainer's own hook",
     "new": "if mode not in OPTIMAL:  # the trainer's own hook", "tests": PINNED, "why": "b* applied to the wrong rows"},
    {"file": "src/rlvr/analysis/task_variance.py", "old": "trace = float(draws.var(0, correction=1).sum())",
     "new": "trace = float(draws.var(0, correction=0).sum())", "tests": PINNED, "why": "biased variance over R draws"},
    {"file": "src/rlvr/analysis/task_variance.py", "old": "rel_mc_noise=float((trace / draws.shape[0]) ** 0.5 / exact.norm()))",
     "new": "rel_mc_noise=float(trace ** 0.5 / exact.norm()))", "tests": PINNED, "why": "MC noise not divided by R"},
    {"file": "src/rlvr/analysis/task_variance.py", "old": "rel_bias=float((mean - exact).norm() / exact.norm()),",
     "new": "rel_bias=float((mean - exact).norm()),", "tests": PINNED, "why": "absolute bias reported as relative"},
]


def check_unique(root: Path) -> list[str]:
    problems = []
    for m in MUTANTS:
        count = (root / str(m["file"])).read_text().count(str(m["old"]))
        if count != 1:
            problems.append(f"{m['file']}: {m['old']!r} occurs {count} times")
    return problems


def run(root: Path, only: str | None) -> int:
    problems = check_unique(root)
    if problems:
        print("\n".join(problems))
        return 2
    fates = {"killed": 0, "survived": 0, "equivalent": 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("src", "tests"):
            shutil.copytree(root / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(root / "pyproject.toml", work / "pyproject.toml")
        env = {**os.environ, "PYTHONPATH": str(work / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        where = subprocess.run([sys.executable, "-c", "import rlvr; print(rlvr.__file__)"], cwd=work, env=env,
                               capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(work)):
            print(f"the copy's rlvr is not the one imported ({where})")
            return 2
        tests = sorted({t for m in MUTANTS for t in m["tests"]})  # type: ignore[attr-defined]
        if subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=work,
                          env=env, capture_output=True).returncode != 0:
            print(f"the unmutated code fails {tests}: fix that first")
            return 2
        for m in MUTANTS:
            if only and only not in f"{m['file']} {m['why']}":
                continue
            path = work / str(m["file"])
            original = path.read_text()
            path.write_text(original.replace(str(m["old"]), str(m["new"])))
            start = time.time()
            try:
                result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                         *map(str, m["tests"])], cwd=work, env=env, capture_output=True, text=True)
            finally:
                path.write_text(original)
            killed = result.returncode != 0
            fate = "killed" if killed else ("equivalent" if "equivalent" in m else "SURVIVED")
            fates["survived" if fate == "SURVIVED" else fate] += 1
            failed = next((line.split(" - ")[0].removeprefix("FAILED ").removeprefix("ERROR ")
                           for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))), "")
            print(f"{fate:10s} {time.time() - start:5.1f}s  {m['file']}: {m['why']}  {failed}", flush=True)
    print(f"mutants: {fates['killed']} killed, {fates['survived']} survived, {fates['equivalent']} equivalent")
    return 1 if fates["survived"] else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the mutants whose file or reason contains this")
    sys.exit(run(Path(__file__).resolve().parent.parent, parser.parse_args().only))
