"""Evaluation on the task's evaluation prompts (held-out split, or the fixed list).

- ``eval/reward_mean``   mean reward of the greedy response
- ``eval/exact_match``   fraction of prompts whose greedy response is the ground truth
- ``eval/pass@k``        unbiased pass@k from n samples per prompt (Chen et al. 2021):
                          1 - C(n - c, k) / C(n, k), c = correct samples among n
- ``eval/pass@1``        the same from the same samples at k = 1: c / n (beside pass@k when k > 1)
- ``eval/mean_length``   mean number of tokens of the greedy responses (<eos> included)
- ``eval/format_rate``   fraction of greedy responses an answer could be read from, right or wrong
                          (tasks that read answers out of free text: ``Task.answer_found``)
"""

from __future__ import annotations

from math import comb
from typing import Any

import torch

from rlvr.policies import Policy
from rlvr.rewards import RewardRunner
from rlvr.tasks import Task


def evaluation_metrics(pass_k: int) -> list[str]:
    """The metrics ``evaluate`` returns that can pick the best checkpoint (``eval/mean_length`` and
    ``eval/format_rate`` are reported beside them)."""
    return ["eval/reward_mean", "eval/exact_match", f"eval/pass@{pass_k}", *(["eval/pass@1"] if pass_k > 1 else [])]


def evaluation_seed(seed: int, step: int) -> int:
    """The sampling seed of the evaluation at ``step``: its own stream per step, the same on resume."""
    return seed * 1_000_003 + step


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct) = 1 - C(n-c, k) / C(n, k)."""
    if not (1 <= k <= num_samples and 0 <= num_correct <= num_samples):
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n (got n={num_samples}, c={num_correct}, k={k})")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - comb(num_samples - num_correct, k) / comb(num_samples, k)


@torch.no_grad()
def evaluate(policy: Policy, task: Task, *, pass_k: int, pass_samples: int, seed: int,
             temperature: float = 1.0, rewards: RewardRunner | None = None, episodes: Any = None) -> dict[str, float]:
    """The held-out metrics above; a multi-turn run's (``episodes``, an EpisodeSampler) are its
    episodes' (rlvr.multiturn.evaluate_episodes)."""
    if episodes is not None:
        from rlvr.multiturn import evaluate_episodes
        return evaluate_episodes(policy, task, episodes, pass_k=pass_k, pass_samples=pass_samples,  # type: ignore[arg-type]
                                 seed=seed, temperature=temperature)
    prompts = task.eval_prompts()
    prompt_ids = policy.encode_prompts(prompts)
    greedy_ids, greedy_mask = policy.greedy(prompt_ids)
    greedy = policy.decode_responses(greedy_ids, greedy_mask)
    if rewards is not None:  # user reward code: a failing call gets the fallback (not counted as training)
        greedy_rewards = rewards(prompts, greedy, counted=False)
    else:
        greedy_rewards = [task.reward(p, r) for p, r in zip(prompts, greedy, strict=True)]
    exact = [task.is_correct(p, r) for p, r in zip(prompts, greedy, strict=True)]

    generator = torch.Generator().manual_seed(seed)  # its own stream: evaluating never shifts training
    samples = policy.sample(prompt_ids, pass_samples, generator=generator, temperature=temperature)
    sampled = policy.decode_responses(samples.response_ids, samples.mask)
    correct = [sum(task.is_correct(prompt, r) for r in sampled[i * pass_samples:(i + 1) * pass_samples])
               for i, prompt in enumerate(prompts)]
    metrics = {
        "eval/reward_mean": sum(greedy_rewards) / len(greedy_rewards),
        "eval/exact_match": sum(exact) / len(exact),
        f"eval/pass@{pass_k}": sum(pass_at_k(pass_samples, c, pass_k) for c in correct) / len(correct),
    }
    if pass_k > 1:
        metrics["eval/pass@1"] = sum(pass_at_k(pass_samples, c, 1) for c in correct) / len(correct)
    metrics["eval/mean_length"] = float(greedy_mask.sum()) / len(prompts)
    found = [task.answer_found(p, r) for p, r in zip(prompts, greedy, strict=True)]
    if all(f is not None for f in found):
        metrics["eval/format_rate"] = sum(bool(f) for f in found) / len(found)
    return metrics
