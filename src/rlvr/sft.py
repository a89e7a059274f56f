"""Supervised warm start: maximise log pi(demonstration | prompt) on task demonstrations.

A configurable share of the demonstrations is flawed (``TextTask.flawed_solution``, for sorting one
adjacent pair swapped), so a run can show the notes' point: imitation of imperfect data stops short,
RL with a verifier optimises past it. Loss per batch (token-mean over the demonstration tokens, <eos>
included):
    L = - sum_{n,t} m_nt log pi(y_nt | x_n, y_n,<t) / sum_{n,t} m_nt
Used by ``rlvr sft`` and by ``rlvr train`` when the config declares ``sft.steps > 0`` (the stage runs
first, in the same run directory: sft_metrics.jsonl, then RL's metrics.jsonl).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms import aggregate
from rlvr.config import Config
from rlvr.errors import ConfigError
from rlvr.evaluation import evaluate, evaluation_seed
from rlvr.policies import Policy
from rlvr.policies.lm import LMPolicy
from rlvr.runs import RunDir
from rlvr.runs.progress import Progress
from rlvr.tasks import Task, TextTask


def demonstrations(task: TextTask, rng: np.random.Generator, count: int, flawed_fraction: float) -> list[tuple[str, str, bool]]:
    """(prompt, answer, flawed) triples from the training split."""
    out = []
    for _ in range(count):
        prompt = task.train_prompt(rng)
        flawed = bool(rng.random() < flawed_fraction)
        answer = task.flawed_solution(prompt, rng) if flawed else task.solution(prompt)
        out.append((prompt, answer, flawed))
    return out


def encode_answers(policy: LMPolicy, answers: list[str]) -> tuple[Tensor, Tensor]:
    """Answers -> response ids (N, T) = answer tokens + <eos>, right-padded, and their mask (N, T)."""
    codec = policy.codec
    rows = [codec.encode_answer(a) + [codec.eos_id] for a in answers]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [codec.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (width - len(r)) for r in rows])
    return ids, mask


def sft_loss(policy: LMPolicy, prompts: list[str], answers: list[str]) -> Tensor:
    prompt_ids = policy.encode_prompts(prompts)
    response_ids, mask = encode_answers(policy, answers)
    logp, _ = policy.logprobs(prompt_ids, response_ids, mask, group_size=1)
    return -aggregate(logp, mask, "token-mean")  # padding selected away, never multiplied


def episode_sft_loss(policy: LMPolicy, task: Task, envs: Any, prompts: list[str], rng: np.random.Generator) -> Tensor:
    """A multi-turn task's demonstrations: each row's env (guarded: ``envs``, an EnvRunner) played with
    the task's demonstrator, the loss on the policy's turns only (token-mean; observations are context)."""
    from rlvr.multiturn import demonstrated_episodes
    demos = [task.demonstration(p, rng) for p in prompts]  # type: ignore[attr-defined]
    prompt_ids, response_ids, mask, attended = demonstrated_episodes(policy, envs, prompts, demos)
    logp, _ = policy.logprobs(prompt_ids, response_ids, attended, group_size=1)
    return -aggregate(logp, mask, "token-mean")


def run_sft(cfg: Config, policy: Policy, task: Task, run_dir: RunDir, *, show_progress: bool,
            episodes: Any = None) -> list[dict[str, Any]]:
    """The SFT stage: ``cfg.sft.steps`` AdamW steps; metrics to sft_metrics.jsonl. Returns its rows."""
    sft = cfg.sft
    if not isinstance(policy, LMPolicy):
        raise ConfigError(f"sft.steps: SFT needs a language-model policy, not policy.kind {cfg.policy.kind!r}")
    if episodes is not None and not hasattr(task, "demonstration"):
        raise ConfigError(f"sft.steps: task {cfg.task.name!r} has no demonstrator for its episodes "
                          "(an EnvTask's demonstration(row, rng)); run without SFT or give a policy.model")
    if not isinstance(task, TextTask):
        raise ConfigError(f"sft.steps: SFT needs a text task with answers, not task.name {cfg.task.name!r}")
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=sft.lr, weight_decay=cfg.optim.weight_decay)
    rng = np.random.default_rng([cfg.seed, 7])
    rows: list[dict[str, Any]] = []
    with Progress(total=sft.steps, enabled=show_progress) as progress:
        for step in range(1, sft.steps + 1):
            t0 = time.perf_counter()
            if episodes is not None:  # multi-turn: demonstrated episodes (EnvTask.demonstration)
                demos = [(task.train_prompt(rng), "", False) for _ in range(sft.batch_size)]
                loss = episode_sft_loss(policy, task, episodes.runner, [d[0] for d in demos], rng)
            else:
                demos = demonstrations(task, rng, sft.batch_size, sft.flawed_fraction)
                loss = sft_loss(policy, [d[0] for d in demos], [d[1] for d in demos])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.optim.grad_clip or float("inf"))
            optimizer.step()
            row: dict[str, Any] = {"sft_step": step, "sft/loss": float(loss.detach()),
                                   "sft/flawed_frac": sum(d[2] for d in demos) / len(demos),
                                   "time/step": time.perf_counter() - t0}
            if step % sft.eval_every == 0 or step == sft.steps:
                row.update(evaluate(policy, task, pass_k=cfg.eval.pass_k, pass_samples=cfg.eval.pass_samples,
                                    seed=evaluation_seed(cfg.seed, step), temperature=cfg.train.temperature,
                                    episodes=episodes))
            rows.append(row)
            run_dir.append_jsonl("sft_metrics.jsonl", row)
            progress.update(step, row)
    return rows
