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
SKIP_TESTS = ["tests/test_skip_flat_groups.py"]
CORRECTION_TESTS = ["tests/test_rollout_correction.py"]
SELECTION_TESTS = ["tests/test_entropy_selection.py"]
SIGN_TESTS = ["tests/test_w_reinforce.py"]
GDPO_TESTS = ["tests/test_gdpo.py"]
OTB_TESTS = ["tests/test_optimal_token_baseline.py"]
RESET_TESTS = ["tests/test_optimizer_reset.py"]
ADAPTIVE_TESTS = ["tests/test_adaptive_sampling.py"]
EPISODE_TESTS = ["tests/test_multiturn.py", "tests/test_env_guard.py"]


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
    # ---- the 2025 losses (SAPO, GMPO, Clip-Cov, KL-Cov) and how a loss gets its settings
    m("algorithms/losses.py", "torch.full_like(logp, sapo_tau_pos), torch.full_like(logp, sapo_tau_neg)",
      "torch.full_like(logp, sapo_tau_neg), torch.full_like(logp, sapo_tau_pos)", LOSS_TESTS,
      "sapo: tau_pos and tau_neg swapped"),
    m("algorithms/losses.py", "gate = torch.sigmoid(tau * (log_ratio.exp() - 1))", "gate = torch.sigmoid(tau * log_ratio)",
      LOSS_TESTS, "sapo: the gate on log r instead of r - 1"),
    m("algorithms/losses.py", "return -gate * (4 / tau) * advantages", "return gate * (4 / tau) * advantages",
      LOSS_TESTS, "sapo: the sign flipped"),
    m("algorithms/losses.py", "return -gate * (4 / tau) * advantages", "return -gate * advantages",
      LOSS_TESTS, "sapo: the 4 / tau dropped"),
    m("algorithms/losses.py", "log_ratio.clamp(max=gmpo_clip_high)", "log_ratio.clamp(max=gmpo_clip_low)",
      LOSS_TESTS, "gmpo: clip_low for clip_high"),
    m("algorithms/losses.py", "torch.where(advantages > 0, log_ratio.clamp(max=gmpo_clip_high),",
      "torch.where(advantages > 0, log_ratio.clamp(-gmpo_clip_low, gmpo_clip_high),", LOSS_TESTS,
      "gmpo: both sides clipped for A > 0 (not sign-aware)"),
    m("algorithms/losses.py", "torch.where(advantages < 0, log_ratio.clamp(min=-gmpo_clip_low), zero)",
      "torch.where(advantages < 0, log_ratio.clamp(max=gmpo_clip_high), zero)", LOSS_TESTS,
      "gmpo: negative advantages clipped on the optimistic side"),
    m("algorithms/losses.py", "s = (seq_log_ratio.detach() + clipped_log_ratio - clipped_log_ratio.detach()).exp()",
      "s = (seq_log_ratio + clipped_log_ratio - clipped_log_ratio.detach()).exp()", LOSS_TESTS,
      "gmpo: the sequence ratio not detached"),
    m("algorithms/losses.py", "seq_log_ratio = sequence_log_ratio(clipped_log_ratio, mask)",
      "seq_log_ratio = clipped_log_ratio.mean(-1, keepdim=True)", LOSS_TESTS, "gmpo: the mean over padding too"),
    m("algorithms/losses.py", "return -advantages * s, metrics", "return advantages * s, metrics", LOSS_TESTS,
      "gmpo: the sign flipped"),
    m("algorithms/losses.py", "return (logp - masked_mean(logp, mask)) * (advantages",
      "return logp * (advantages", LOSS_TESTS, "cov: log-probs not centred"),
    m("algorithms/losses.py", "return (logp - masked_mean(logp, mask)) * (advantages",
      "return (logp - logp.mean()) * (advantages", LOSS_TESTS, "cov: the log-prob mean over padding too"),
    m("algorithms/losses.py", "order = torch.sort(flat, descending=True, stable=True).indices",
      "order = torch.sort(flat, descending=False, stable=True).indices", LOSS_TESTS,
      "cov: the lowest covariances selected"),
    m("algorithms/losses.py", "count = (share * (mask != 0).sum())", "count = (share * mask.numel())", LOSS_TESTS,
      "cov: the selected share counted over padding too"),
    m("algorithms/losses.py", "(cov > clip_cov_lower) & (cov < clip_cov_upper)",
      "(cov > clip_cov_upper) & (cov < clip_cov_lower)", LOSS_TESTS, "clip-cov: bounds swapped"),
    m("algorithms/losses.py", "(cov > clip_cov_lower) & (cov < clip_cov_upper)", "(cov > clip_cov_lower)",
      LOSS_TESTS, "clip-cov: no upper bound"),
    m("algorithms/losses.py", "candidates = (mask != 0) & (is_clipped == 0) & ", "candidates = (mask != 0) & ",
      LOSS_TESTS, "clip-cov: PPO-clipped tokens are candidates"),
    m("algorithms/losses.py", "torch.where(selected, loss.detach(), loss)", "torch.where(selected, loss, loss)",
      LOSS_TESTS, "clip-cov: the selected tokens keep their gradient"),
    m("algorithms/losses.py", "return loss + torch.where(selected, penalty,", "return loss - torch.where(selected, penalty,",
      LOSS_TESTS, "kl-cov: the penalty as a bonus"),
    m("algorithms/losses.py", "penalty = kl_cov_coef * log_ratio_of(logp, old_logp).abs()",
      "penalty = kl_cov_coef * log_ratio_of(logp, old_logp)", LOSS_TESTS, "kl-cov: |log r| without the abs"),
    m("algorithms/losses.py", "advantages, mask), mask != 0, mask, kl_cov_ratio)",
      "advantages, mask), mask == mask, mask, kl_cov_ratio)", LOSS_TESTS, "kl-cov: padding selectable"),
    m("algorithms/losses.py", 'settings["clip_eps_high"] = settings["clip_eps_low"]', 'settings["clip_eps_high"] = 0.2',
      LOSS_TESTS, "loss settings: eps_high unset is not eps_low"),
    m("trainer.py", "settings = settings_of(POLICY_LOSSES, algo.loss, algo)",
      "settings = {}", LOSS_TESTS + TRAINER_TESTS, "trainer: the loss's settings not passed (its defaults used)"),
    # ---- off-policy (rollout) correction: the weights, the masks, and how the trainer uses them
    m("algorithms/correction.py", "return log_weight.clamp(max=math.log(cap)).exp()",
      "return log_weight.clamp(min=math.log(cap)).exp()", CORRECTION_TESTS, "tis: max(w, C) for min(w, C)"),
    m("algorithms/correction.py", "kept = log_weight.abs() <= bound", "kept = log_weight <= bound", CORRECTION_TESTS,
      "mis: no lower bound 1/C"),
    m("algorithms/correction.py", "return masked(log_weight, mask).sum(-1, keepdim=True)",
      "return masked(log_weight, mask).mean(-1, keepdim=True)", CORRECTION_TESTS,
      "sequence weight: the geometric mean of w instead of the product"),
    m("algorithms/correction.py", "return truncated(sequence_log_weight(log_weight, mask), correction_cap)",
      "return truncated(log_weight, correction_cap)", CORRECTION_TESTS, "tis-seq: per-token weights"),
    m("algorithms/correction.py", "divergence = -sequence_log_ratio(log_weight, mask)",
      "divergence = sequence_log_ratio(log_weight, mask)", CORRECTION_TESTS,
      "seq-mask: the divergence's sign flipped (log pi_old / pi_sampler)"),
    m("algorithms/correction.py", "dropped = (advantages < 0) & (divergence > correction_delta)",
      "dropped = (advantages > 0) & (divergence > correction_delta)", CORRECTION_TESTS,
      "seq-mask: positive advantages masked"),
    m("algorithms/correction.py", "dropped = (advantages < 0) & (divergence > correction_delta)",
      "dropped = divergence > correction_delta", CORRECTION_TESTS, "seq-mask: whatever the advantage's sign"),
    m("algorithms/correction.py", "torch.where(real, old_logp - sampler_logp, zero)",
      "torch.where(real, sampler_logp - old_logp, zero)", CORRECTION_TESTS, "log w inverted (pi_sampler / pi_old)"),
    m("algorithms/correction.py", "torch.where(mask != 0, weights, torch.zeros((), dtype=weights.dtype)).detach()",
      "weights.detach()", CORRECTION_TESTS, "the weights not zeroed on padding"),
    m("algorithms/correction.py", 'if not ROLLOUT_CORRECTIONS.meta(name).get("decoupled", True):',
      'if not ROLLOUT_CORRECTIONS.meta(name).get("decoupled", False):', CORRECTION_TESTS,
      "every correction skipped like none"),
    m("algorithms/correction.py", "masked_mean(log_weight.exp() - 1 - log_weight, mask)",
      "masked_mean(log_weight.exp() - 1 + log_weight, mask)", CORRECTION_TESTS, "sampler_kl: sign of log w in k3"),
    m("algorithms/correction.py", "masked_mean((weights == 0).to(weights.dtype), mask)",
      "masked_mean((weights != 0).to(weights.dtype), mask)", CORRECTION_TESTS, "masked_frac counts the kept"),
    m("trainer.py", "per_token = per_token * batch.correction", "per_token = per_token", CORRECTION_TESTS,
      "trainer: the correction's weights not applied"),
    m("trainer.py", "old_logprobs=old_logprobs, correction=correction, selection=selection)",
      "old_logprobs=None, correction=correction, selection=selection)",
      CORRECTION_TESTS, "trainer: the ratio against the sampler despite the correction"),
    m("batching.py", "correction=cut(batch.correction),", "correction=batch.correction,", CORRECTION_TESTS,
      "slices keep the whole batch's weights"),
    # ---- train.skip_flat_groups: the trained groups keep their share of the whole batch
    m("batching.py", "    return slices(batch, [rows], mode=mode, constant=constant)[0]",
      "    return select(batch, rows)", SKIP_TESTS, "skip: the trained groups normalised on their own"),
    m("batching.py", "rows = live.any(-1).nonzero()", "rows = live.all(-1).nonzero()", SKIP_TESTS,
      "skip: a group trained only where every token has an advantage"),
    m("batching.py", "return value * factor if key in", "return value / token_share if key in", SKIP_TESTS,
      "skip: an aggregated metric scaled like a token mean"),
    # ---- GPG's corrected advantage
    m("algorithms/deltas.py", "alpha = rewards.shape[0] / has_spread.sum().clamp(min=1)",
      "alpha = has_spread.sum().clamp(min=1) / rewards.shape[0]", DELTA_TESTS, "gpg: alpha inverted"),
    m("algorithms/deltas.py", "has_spread = rewards.max(dim=-1).values != rewards.min(dim=-1).values",
      "has_spread = rewards.max(dim=-1).values == rewards.min(dim=-1).values", DELTA_TESTS,
      "gpg: the flat groups counted as valid"),
    m("algorithms/deltas.py", "has_spread.sum().clamp(min=1)", "has_spread.sum()", DELTA_TESTS,
      "gpg: 0 / 0 when every group is flat"),
    # ---- positive / negative sample reinforcement (psr, nsr, w-reinforce) and a mode's own settings
    m("algorithms/deltas.py", "return positive_weight * rewards - (1 - rewards)",
      "return rewards - positive_weight * (1 - rewards)", SIGN_TESTS, "w-reinforce: lambda on the negatives"),
    m("algorithms/deltas.py", "return positive_weight * rewards - (1 - rewards)",
      "return positive_weight * rewards + (1 - rewards)", SIGN_TESTS, "w-reinforce: the failures reinforced"),
    m("algorithms/deltas.py", "1 for a correct sample, 0 otherwise).\"\"\"\n    return rewards",
      "1 for a correct sample, 0 otherwise).\"\"\"\n    return 1 - rewards", SIGN_TESTS, "psr: credits the failures"),
    m("algorithms/deltas.py", "return rewards - 1", "return -rewards", SIGN_TESTS, "nsr: pushes down by R, not 1 - R"),
    m("options.py", "own.update({k: v for k, v in given.items() if k in own})", "own.update({})",
      SIGN_TESTS, "deltas settings: the given values ignored (defaults used)"),
    m("algorithms/credit.py", "unbiased_std=unbiased_std, settings=settings)", "unbiased_std=unbiased_std)",
      SIGN_TESTS, "process credit: the mode's settings not passed per position"),
    m("trainer.py", "settings=delta_settings, sources=rollouts.source_rewards,",
      "settings=None, sources=rollouts.source_rewards,", SIGN_TESTS,
      "trainer: the deltas mode's settings not passed (its defaults used)"),
    m("trainer.py", "unbiased_std=algo.unbiased_std, settings=delta_settings,",
      "unbiased_std=algo.unbiased_std, settings=None,", SIGN_TESTS,
      "trainer: the deltas mode's settings not passed to process credit"),
    m("recipes.py", '"algo.positive_weight": 0.1,', '"algo.positive_weight": 1.0,', SIGN_TESTS,
      "w-reinforce recipe: lambda 1 (plain REINFORCE on +-1)"),
    # ---- the entropy selection (algo.top_entropy_quantile)
    m("algorithms/selection.py", "position = (1.0 - top_quantile) * (values.numel() - 1)",
      "position = top_quantile * (values.numel() - 1)", SELECTION_TESTS,
      "selection: the q quantile for the 1 - q (threshold from the wrong side)"),
    m("algorithms/selection.py", "(at_least_float32(entropy) >= tau)", "(at_least_float32(entropy) <= tau)",
      SELECTION_TESTS, "selection: the low-entropy tokens"),
    m("algorithms/selection.py", "(at_least_float32(entropy) >= tau)", "(at_least_float32(entropy) > tau)",
      SELECTION_TESTS, "selection: tokens tied at the threshold dropped (q = 1 loses the minimum)"),
    m("algorithms/selection.py", "selected = (mask != 0) & (", "selected = (mask == mask) & (", SELECTION_TESTS,
      "selection: padding selectable"),
    m("algorithms/selection.py", "values = at_least_float32(entropy)[mask != 0].sort().values",
      "values = at_least_float32(entropy).flatten().sort().values", SELECTION_TESTS,
      "selection: padding counted in the quantile"),
    m("algorithms/selection.py", "torch.minimum(low + (position - math.floor(position)) * (high - low), high)",
      "low", SELECTION_TESTS, "selection: the lower order statistic, no interpolation"),
    m("algorithms/selection.py", "masked(selection, mask).sum() / mask.sum().clamp(min=1)",
      "selection.mean()", SELECTION_TESTS, "selected_token_frac over padding too"),
    m("trainer.py", "        per_token = masked(per_token, batch.selection)\n", "        per_token = per_token\n",
      SELECTION_TESTS, "trainer: the selection not applied"),
    m("trainer.py", "        per_token = masked(per_token, batch.selection)\n",
      "        per_token = masked(per_token, high_entropy_tokens(entropy, batch.loss_mask, "
      "top_quantile=algo.top_entropy_quantile))\n", SELECTION_TESTS,
      "trainer: a threshold per slice, from pi_theta (TRL's per-call selection)"),
    m("trainer.py", "selection = high_entropy_tokens(learner()[1], loss_mask,",
      "selection = high_entropy_tokens(learner()[1], rollouts.mask,", SELECTION_TESTS,
      "trainer: the quantile over the sampled tokens, truncated ones included"),
    m("trainer.py", "if algo.top_entropy_quantile < 1:", "if algo.top_entropy_quantile <= 1:", SELECTION_TESTS,
      "trainer: a selection (and its forward and metric) at q = 1 too"),
    m("batching.py", "selection=cut(batch.selection))", "selection=batch.selection)", SELECTION_TESTS,
      "slices keep the whole batch's selection"),
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
    # ---- GDPO: per-source normalisation, the sources' path
    m("algorithms/deltas.py", "combined = (source_weights.reshape(-1, 1) * per_source).sum(-2)",
      "combined = per_source.sum(-2)", GDPO_TESTS, "gdpo: the sources' weights ignored"),
    m("algorithms/deltas.py", "return reinforce_plus_plus(combined, eps=eps, unbiased_std=unbiased_std)",
      "return combined", GDPO_TESTS, "gdpo: the weighted sum not whitened over the batch"),
    m("algorithms/deltas.py", "per_source = normalized(sources.movedim(-1, -2), eps=eps, unbiased_std=unbiased_std)",
      "per_source = centered(sources.movedim(-1, -2), eps=eps, unbiased_std=unbiased_std)", GDPO_TESTS,
      "gdpo: each source centred, not divided by its group std"),
    m("rewards/sources.py", "columns.append([float(v) for v in values])", "columns.append([weight * v for v in values])",
      GDPO_TESTS, "per-source rewards recorded weighted"),
    m("rollout.py", ".reshape(len(prompts), group_size, count)", ".reshape(group_size, len(prompts), count)",
      GDPO_TESTS, "per-source rewards (G, B, S) instead of (B, G, S)"),
    m("trainer.py", "source_weights=self.rewards.source_weights)",
      "source_weights=[1.0] * len(self.rewards.source_weights))", GDPO_TESTS, "trainer: gdpo without the weights"),
    # ---- the Optimal Token Baseline
    m("algorithms/credit.py", "counted = others if leave_one_out else torch.ones_like(others)",
      "counted = torch.ones_like(others) if leave_one_out else others", OTB_TESTS,
      "otb: leave-one-out and verl's baseline swapped"),
    m("algorithms/credit.py", "masked(score_norms, mask).cumsum(-1)", "masked(score_norms, mask)", OTB_TESTS,
      "otb: each token's own score norm, not the prefix's sum"),
    m("algorithms/credit.py", "has_baseline = (alive > 0) & (denominator > 0)", "has_baseline = denominator > 0",
      OTB_TESTS, "otb: a response alone at its tail is its own baseline (no zero tail)"),
    m("algorithms/credit.py", "return masked(returns - baseline.reshape(-1, length), mask)",
      "return returns - baseline.reshape(-1, length)", OTB_TESTS, "otb: padding credited"),
    m("algorithms/credit.py", "weighted = weight * masked(returns, mask).reshape(-1, group_size, length)",
      "weighted = weight * returns.reshape(-1, group_size, length)", OTB_TESTS, "otb: returns unmasked (NaN padding)"),
    m("algorithms/logprobs.py", "return (1 - chosen) ** 2 + ((probs ** 2).sum(-1) - chosen ** 2).clamp(min=0)",
      "return (1 - chosen) ** 2 + (probs ** 2).sum(-1)", OTB_TESTS, "score norm: p_y^2 counted twice"),
    m("algorithms/logprobs.py", "return (1 - chosen) ** 2 +", "return (1 - chosen) +", OTB_TESTS,
      "score norm: (1 - p_y) not squared"),
    m("trainer.py", "return self.constant_score_norms(rollouts)", "return torch.ones_like(rollouts.mask)", OTB_TESTS,
      "trainer: otb weighs every token the same"),
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
    m("rollout.py", "return rewards.max(-1).values != rewards.min(-1).values",
      "return rewards.max(-1).values == rewards.min(-1).values", SAMPLING_TESTS, "dynamic sampling keeps flat groups"),
    m("rollout.py", "if count >= batch_size or draws > max_refills:", "if count >= batch_size or draws >= max_refills:",
      SAMPLING_TESTS, "dynamic sampling: one refill too few"),
    m("rollout.py", "task.token_rewards(rollouts.prompts[n // group], response)",
      "task.token_rewards(rollouts.prompts[n % group], response)", SAMPLING_TESTS, "token rewards of the wrong prompt"),
    # ---- adaptive sampling (Reinforce-Ada): exit rules, the balanced cut, the pool's statistics, the rounds
    m("algorithms/adaptive.py", "(correct >= group_size // 2) & (incorrect", "(correct >= group_size // 2) | (incorrect",
      ADAPTIVE_TESTS, "adaptive: balanced exit once either kind is enough"),
    m("algorithms/adaptive.py", "(incorrect >= group_size - group_size // 2)", "(incorrect >= group_size // 2)",
      ADAPTIVE_TESTS, "adaptive: balanced exit, odd G split the other way"),
    m("algorithms/adaptive.py", "    return correct >= 1\n", "    return incorrect >= 1\n", ADAPTIVE_TESTS,
      "adaptive: positive exit on an incorrect response"),
    m("algorithms/adaptive.py", "k_good = n_good.clamp(max=group_size // 2)",
      "k_good = n_good.clamp(max=(group_size + 1) // 2)", ADAPTIVE_TESTS, "adaptive: ceil(G/2) correct kept"),
    m("algorithms/adaptive.py", "k_good = torch.minimum(n_good, group_size - k_bad)", "k_good = k_good",
      ADAPTIVE_TESTS, "adaptive: too few incorrect not filled with correct ones"),
    m("algorithms/adaptive.py", "(good & (rank_good < k_good))", "(good & (rank_good <= k_good))", ADAPTIVE_TESTS,
      "adaptive: one correct response too many kept"),
    m("algorithms/adaptive.py", "valid = torch.arange(correct.shape[1]) < sizes.unsqueeze(1)",
      "valid = torch.arange(correct.shape[1]) <= sizes.unsqueeze(1)", ADAPTIVE_TESTS,
      "adaptive: the selection reads a column of padding"),
    m("algorithms/adaptive.py", "divisor = (count - 1).clamp(min=1) if unbiased else count",
      "divisor = count if unbiased else (count - 1).clamp(min=1)", ADAPTIVE_TESTS, "adaptive: pool std, N and N-1 swapped"),
    m("algorithms/adaptive.py", "mean = torch.where(valid, rewards, 0.0).sum(1) / count", "mean = rewards.mean(1)",
      ADAPTIVE_TESTS, "adaptive: the pool's mean over its padding too"),
    m("algorithms/deltas.py", "return rewards - mean.unsqueeze(-1)", "return rewards - rewards.mean(dim=-1, keepdim=True)",
      ADAPTIVE_TESTS, "adaptive: pooled deltas with the group's mean, not the pool's"),
    m("algorithms/deltas.py", "/ (std.unsqueeze(-1) + eps)", "/ (group_std(rewards, unbiased=True) + eps)",
      ADAPTIVE_TESTS, "adaptive: pooled normalized deltas with the group's std"),
    m("algorithms/deltas.py", '"dr-grpo", needs_group=True, pooled=pool_centered', '"dr-grpo", needs_group=True, pooled=pool_normalized',
      ADAPTIVE_TESTS, "adaptive: dr-grpo's pooled form divides by the std"),
    m("rollout.py", "done = exit_rule(right, wrong, group_size=group_size)",
      "done = exit_rule(wrong, right, group_size=group_size)", ADAPTIVE_TESTS,
      "adaptive: correct and incorrect counts swapped"),
    m("rollout.py", "active = torch.arange(batch_size)[~done]", "active = torch.arange(batch_size)", ADAPTIVE_TESTS,
      "adaptive: retired prompts sampled again (budget ignored)"),
    m("rollout.py", "rows = [(first * round_size + torch.arange", "rows = [(first + torch.arange", ADAPTIVE_TESTS,
      "adaptive: kept responses taken from the wrong rows"),
    m("rollout.py", "pools[active, r * round_size:(r + 1) * round_size] = value",
      "pools[:len(active), r * round_size:(r + 1) * round_size] = value", ADAPTIVE_TESTS,
      "adaptive: a round's responses pooled under the wrong prompts"),
    m("rollout.py", "return groups, parts[0].rewards[:, :group_size], stats", "return groups, groups.rewards, stats",
      ADAPTIVE_TESTS, "adaptive: learning curves from the selected (balanced) groups"),
    m("rollout.py", '"sampling/flat_groups": float((~has_signal(groups.rewards))',
      '"sampling/flat_groups": float((has_signal(groups.rewards))', ADAPTIVE_TESTS, "adaptive: flat share inverted"),
    m("rollout.py", "if f.name in GROUPED and value is not None:", "if False:",
      ADAPTIVE_TESTS + SAMPLING_TESTS, "regroup: rewards cut by prompt, not by the responses kept"),
    m("distributed/shards.py", "group = shard.group_size or group_size", "group = group_size", ADAPTIVE_TESTS,
      "adaptive: rounds sampled with G, not M"),
    m("distributed/backend.py", "return self.sample(self.streams.cut(prompts, group_size=group_size))",
      "return self.rollouts(len(prompts), group_size=group_size)", ADAPTIVE_TESTS,
      "adaptive: a later round draws new prompts instead of the same ones"),
    m("trainer.py", "reward_of=lambda r: r.rewards + self.response_shaping(r)", "reward_of=lambda r: r.rewards",
      ADAPTIVE_TESTS, "adaptive: the pool's baseline without the length penalty the group's rewards carry"),
    m("trainer.py", "pool = (rollouts.pool_mean, rollouts.pool_std) if rollouts.pool_std is not None else None",
      "pool = None", ADAPTIVE_TESTS, "adaptive: deltas from the group, not the pool"),
    m("trainer.py", "round_size=algo.adaptive_round_multiplier * group", "round_size=group", ADAPTIVE_TESTS,
      "adaptive: rounds of G, not M"),
    m("trainer.py", "return rollouts.rewards >= threshold", "return rollouts.rewards > threshold", ADAPTIVE_TESTS,
      "adaptive: the success threshold exclusive"),
    # ---- trainer: loss assembly, batch, reference refresh
    m("trainer.py", "loss = loss + batch.kl_loss_coef * kl", "loss = loss - batch.kl_loss_coef * kl",
      TRAINER_TESTS, "KL in the loss as a bonus"),
    m("trainer.py", "loss = loss - entropy_coef * mean_entropy", "loss = loss + entropy_coef * mean_entropy",
      TRAINER_TESTS, "entropy bonus as a penalty"),
    m("trainer.py", "kl_loss_coef=0.0 if in_reward else self.state.kl_coef", "kl_loss_coef=self.state.kl_coef",
      TRAINER_TESTS, "KL counted twice (reward and loss)"),
    m("trainer.py", "masked(log_ratio_of(logp, r.logprobs), batch.loss_mask).exp()",
      "masked(log_ratio_of(logp, r.logprobs), batch.loss_mask).exp().detach()", TRAINER_TESTS,
      "ratio-weighted KL: the ratio detached"),
    m("trainer.py", "and (step - 1) % every == 0", "and step % every == 0",
      TRAINER_TESTS + RESET_TESTS, "reference refreshed and optimizer reset one step late"),
    # ---- optim.reset_every: ProRL's optimizer reset
    m("trainer.py", "reset = periodic(step, cfg.optim.reset_every)", "reset = periodic(step, algo.ref_refresh_every)",
      RESET_TESTS, "optimizer reset on the reference's period"),
    m("trainer.py", "reset_optimizer(self.optimizer)", "pass", RESET_TESTS, "optimizer never reset"),
    m("trainer.py", "reset_optimizer(self.optimizer)", "reset_optimizer(self.optimizer); self.state.optimizer_steps = 0",
      RESET_TESTS, "the learning-rate schedule restarts with the optimizer"),
    m("optim.py", "optimizer.state.clear()",
      "[(s['exp_avg'].zero_(), s['exp_avg_sq'].zero_()) for s in optimizer.state.values()]",
      RESET_TESTS, "optimizer reset: Adam's moments cleared but not its step count (a late step's bias correction)"),
    m("trainer.py", "per_token = -self.state.kl_coef * token_kl(", "per_token = self.state.kl_coef * token_kl(",
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


# ---- evaluation (pass@k) and analysis/: exact variance, optimal baselines, diagnostics, two-state
EVAL = ["tests/test_pinned_eval.py"]
PINNED = ["tests/test_pinned_analysis.py"]

ANALYSIS: list[dict] = [
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
    {"file": "src/rlvr/evaluation.py", "old": "for r in sampled[i * pass_samples:(i + 1) * pass_samples])",
     "new": "for r in sampled[i:i + pass_samples])", "tests": EVAL, "why": "samples of the wrong prompt"},
    {"file": "src/rlvr/evaluation.py", "old": "sum(pass_at_k(pass_samples, c, pass_k) for c in correct)",
     "new": "sum(pass_at_k(pass_samples, c, pass_samples) for c in correct)", "tests": EVAL,
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
MUTANTS += [Mutant(**entry) for entry in ANALYSIS]

MUTANTS += [  # ---- multi-turn episodes (policies/episodes.py, multiturn.py, envs/guard.py)
    m("policies/episodes.py", "self.logps.append(logp.masked_fill(~acting, 0.0))", "self.logps.append(logp)",
      EPISODE_TESTS,
      "observation tokens keep a sampled log-prob"),
    m("policies/episodes.py", "self.sampled.append(acting)", "self.sampled.append(~self.done)", EPISODE_TESTS,
      "observation tokens under the loss mask"),
    m("policies/episodes.py", "key_mask = torch.cat([key_mask, live[:, None]], 1)",
      "key_mask = torch.cat([key_mask, torch.ones_like(live)[:, None]], 1)", EPISODE_TESTS,
      "a finished row's padding attended",
      "a row attends only to its own cache, and a finished row never samples or is fed again: nothing reads it"),
    m("policies/episodes.py", "key_mask = torch.cat([key_mask, live[:, None]], 1)",
      "key_mask = torch.cat([key_mask, torch.zeros_like(live)[:, None]], 1)", EPISODE_TESTS,
      "the episode's own tokens hidden from its later steps (sampler and training disagree)"),
    m("policies/episodes.py", "next_pos = next_pos + live.long()", "next_pos = next_pos + 2 * live.long()",
      EPISODE_TESTS, "positions skip one a token"),
    m("policies/episodes.py", "next_pos = next_pos + live.long()", "next_pos = next_pos + 1", EPISODE_TESTS,
      "positions advance on a finished row's padding",
      "a finished row's later positions feed no token anyone reads (it never samples or is fed again)"),
    m("policies/episodes.py", "self.rewards_at.append((n, step, result.reward))",
      "self.rewards_at.append((n, step - 1, result.reward))",
      EPISODE_TESTS, "a turn's reward before its <eos>"),
    m("policies/episodes.py", "self.returns[n] += result.reward", "self.returns[n] = result.reward", EPISODE_TESTS,
      "the return is the last turn's reward, not the sum"),
    m("policies/episodes.py", "elif self.turn_count[n] >= self.limits.max_turns:",
      "elif self.turn_count[n] > self.limits.max_turns:",
      EPISODE_TESTS + ["tests/test_multiturn_trainer.py"], "one turn past env.max_turns"),
    m("policies/episodes.py", "before = render(messages[:-1], True) + messages[-1][\"content\"] + str(tokenizer.eos_token)",
      "before = render(messages[:-1], True) + messages[-1][\"content\"]", EPISODE_TESTS,
      "the chat observation repeats the end-of-turn token"),
    m("multiturn.py", "mask[n] + [1.0] * len(tokens)", "mask[n] + [0.0] * len(tokens)", EPISODE_TESTS,
      "demonstrated policy turns not trained on"),
]


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
    mutants = [x for x in MUTANTS if args.only in x.file or args.only in x.why]
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
