"""The training loop of the notes, top to bottom.

    for each outer step:
        1. refresh the frozen reference policy every R outer steps (not the old policy)
        2. rollout: sample G responses for each of B prompts and score them   (no grad)
        3. deltas: rewards (B, G) -> deltas (B, G) -> per-token advantages (N, T)
        4. cache constants: old log-probs (recorded by the sampler), reference log-probs (no grad)
        5. inner loop: K gradient steps on this fixed batch of rollouts
        6. log metrics; every E steps evaluate on the held-out prompts
Every algorithm choice is looked up in a registry by name; the loop never branches on one.
"""

from __future__ import annotations

import copy
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms import aggregate, compute_deltas, kl_penalty, policy_loss, schedule_value
from rlvr.config import AlgoConfig, Config, OptimConfig, to_dict
from rlvr.evaluation import evaluate
from rlvr.policies import Policy, build_policy
from rlvr.policies.export import save_final
from rlvr.rollout import PromptSource, Rollouts, as_json, generate
from rlvr.runs import RunDir
from rlvr.runs.plots import plot_curves
from rlvr.runs.progress import Progress
from rlvr.tasks import build_task


@dataclass
class Batch:
    """One outer step's rollouts and the constants the inner loop needs."""

    rollouts: Rollouts
    deltas: Tensor               # (B, G)
    advantages: Tensor           # (N, T) delta broadcast over each response's tokens
    ref_logprobs: Tensor | None  # (N, T) under the frozen reference, or None without KL


def build_optimizer(cfg: OptimConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def frozen_copy(policy: Policy) -> Policy:
    ref = copy.deepcopy(policy)
    ref.requires_grad_(False)
    return ref.eval()


def compute_loss(policy: Policy, batch: Batch, algo: AlgoConfig, *, temperature: float,
                 aggregation_constant: float, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """pg loss + beta * KL - entropy_coef * entropy, each aggregated by ``algo.aggregation``."""
    r = batch.rollouts
    logp, entropy = policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size,
                                    temperature=temperature)
    per_token, metrics = policy_loss(
        algo.loss, logp, r.logprobs, batch.advantages, r.mask, clip_eps_low=algo.clip_eps_low,
        clip_eps_high=algo.clip_eps_low if algo.clip_eps_high is None else algo.clip_eps_high)

    def agg(values: Tensor) -> Tensor:
        return aggregate(values, r.mask, algo.aggregation, constant=aggregation_constant)

    pg_loss = agg(per_token)
    loss = pg_loss
    metrics["loss/policy"] = pg_loss.detach()
    if batch.ref_logprobs is not None:
        kl = agg(kl_penalty(algo.kl_estimator, logp, batch.ref_logprobs))
        loss = loss + algo.kl_coef * kl
        metrics["policy/kl"] = kl.detach()
    mean_entropy = agg(entropy)
    if entropy_coef > 0:
        loss = loss - entropy_coef * mean_entropy
    metrics["policy/entropy"] = mean_entropy.detach()
    metrics["loss/total"] = loss.detach()
    return loss, metrics


class Trainer:
    def __init__(self, cfg: Config, *, show_progress: bool = True) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.task = build_task(cfg.task)
        self.policy = build_policy(cfg.policy, self.task)
        self.reference = frozen_copy(self.policy)
        self.optimizer = build_optimizer(cfg.optim, self.policy.parameters())
        self.prompts = PromptSource(self.task, cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.aggregation_constant = cfg.algo.aggregation_constant or float(self.policy.response_length)
        self.run_dir = RunDir(cfg.run_dir or default_run_dir(cfg.name))
        self.progress = Progress(total=cfg.train.outer_steps, enabled=show_progress)
        self.history: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- the outer loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.run_dir.write_config(to_dict(cfg))
        start = time.perf_counter()
        sft_rows = self.warm_start()
        initial = {"step": 0, **self.evaluate(0)}  # the starting point of every evaluation curve
        self.history.append(initial)
        self.run_dir.append_jsonl("metrics.jsonl", initial)
        with self.progress:
            for step in range(1, cfg.train.outer_steps + 1):
                row = self.outer_step(step)
                if step % cfg.eval.every == 0 or step == cfg.train.outer_steps:
                    row.update(self.evaluate(step))
                    plot_curves(self.history + [row], self.run_dir.path / "curves.png", title=cfg.name)
                self.history.append(row)
                self.run_dir.append_jsonl("metrics.jsonl", row)
                self.progress.update(step, row)
        save_final(self.policy, self.run_dir.path / "final")
        final = {k: v for k, v in self.history[-1].items() if k.startswith("eval/")}
        final["train/reward_mean"] = self.history[-1]["train/reward_mean"]
        summary = {"steps": cfg.train.outer_steps, "wall_seconds": time.perf_counter() - start,
                   "final": final, "run_dir": str(self.run_dir.path)}
        if sft_rows:
            summary["sft_final"] = {k: v for k, v in sft_rows[-1].items() if k.startswith(("eval/", "sft/"))}
        self.run_dir.write_json("summary.json", summary)
        return summary

    def warm_start(self) -> list[dict[str, Any]]:
        """The config's SFT stage (sft.steps > 0), run first; the reference becomes its result."""
        if not self.cfg.sft.steps:
            return []
        from rlvr.sft import run_sft
        rows = run_sft(self.cfg, self.policy, self.task, self.run_dir, show_progress=self.progress.enabled)
        self.reference.load_state_dict(self.policy.state_dict())
        return rows

    def outer_step(self, step: int) -> dict[str, Any]:
        cfg, algo = self.cfg, self.cfg.algo
        t0 = time.perf_counter()
        # 1. reference policy: a frozen copy, refreshed every R outer steps (R = 0: the initial policy)
        if algo.ref_refresh_every and (step - 1) % algo.ref_refresh_every == 0 and step > 1:
            self.reference.load_state_dict(self.policy.state_dict())

        # 2. rollout
        prompts = self.prompts.next_batch(cfg.train.prompts_per_step)
        rollouts = generate(self.policy, self.task, prompts, group_size=cfg.train.group_size,
                            generator=self.generator, temperature=cfg.train.temperature)
        t1 = time.perf_counter()

        # 3-4. deltas and constants for the inner loop
        batch = self.make_batch(rollouts)

        # 5. inner loop: K gradient steps on the same rollouts
        progress = (step - 1) / cfg.train.outer_steps
        entropy_coef = algo.entropy_coef * schedule_value(algo.entropy_schedule, progress, until=algo.entropy_until)
        sums: dict[str, float] = defaultdict(float)
        for _ in range(cfg.train.inner_steps):
            for key, value in self.inner_step(batch, entropy_coef=entropy_coef).items():
                sums[key] += value
        t2 = time.perf_counter()

        # 6. metrics
        row: dict[str, Any] = {"step": step}
        row.update(reward_metrics(rollouts.rewards, batch.deltas))
        row.update({k: v / cfg.train.inner_steps for k, v in sorted(sums.items())})
        row["algo/entropy_coef"] = entropy_coef
        row.update({"time/rollout": t1 - t0, "time/train": t2 - t1, "time/step": t2 - t0})
        tokens = float(rollouts.mask.sum())  # sampled response tokens (LM policies: up to and incl. <eos>)
        row.update({"train/response_length": tokens / rollouts.mask.shape[0], "time/tokens_per_s": tokens / (t2 - t0)})
        if step % cfg.eval.samples_every == 0 or step == 1:
            self.write_samples(step, batch)
        return row

    def make_batch(self, rollouts: Rollouts) -> Batch:
        algo = self.cfg.algo
        deltas = compute_deltas(rollouts.rewards, algo.deltas, eps=algo.norm_eps, unbiased_std=algo.unbiased_std)
        advantages = deltas.reshape(-1, 1).expand_as(rollouts.mask) * rollouts.mask
        ref_logprobs = None
        if algo.kl_coef > 0:
            with torch.no_grad():
                ref_logprobs, _ = self.reference.logprobs(
                    rollouts.prompt_ids, rollouts.response_ids, rollouts.mask,
                    group_size=rollouts.group_size, temperature=self.cfg.train.temperature)
        return Batch(rollouts=rollouts, deltas=deltas, advantages=advantages, ref_logprobs=ref_logprobs)

    def inner_step(self, batch: Batch, *, entropy_coef: float) -> dict[str, float]:
        loss, metrics = compute_loss(self.policy, batch, self.cfg.algo, temperature=self.cfg.train.temperature,
                                     aggregation_constant=self.aggregation_constant, entropy_coef=entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.optim.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
        self.optimizer.step()
        out = {k: float(v) for k, v in metrics.items()}
        out["policy/grad_norm"] = float(grad_norm)
        return out

    def evaluate(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ev = self.cfg.eval
        metrics = evaluate(self.policy, self.task, pass_k=ev.pass_k, pass_samples=ev.pass_samples,
                           seed=self.cfg.seed * 1_000_003 + step, temperature=self.cfg.train.temperature)
        metrics["time/eval"] = time.perf_counter() - t0
        return metrics

    def write_samples(self, step: int, batch: Batch) -> None:
        r = batch.rollouts
        responses = [as_json(x) for x in (r.decoded if r.decoded is not None else r.responses())]
        group = r.group_size
        for i, prompt in enumerate(r.prompts[: self.cfg.eval.samples_prompts]):
            self.run_dir.append_jsonl("samples.jsonl", {
                "step": step, "prompt": as_json(prompt), "solution": as_json(self.task.solution(prompt)),
                "responses": responses[i * group:(i + 1) * group],
                "rewards": r.rewards[i].tolist(), "deltas": batch.deltas[i].tolist()})


def reward_metrics(rewards: Tensor, deltas: Tensor) -> dict[str, float]:
    """rewards, deltas (B, G) -> batch statistics, incl. the share of groups with one reward value."""
    same = (rewards.max(-1).values == rewards.min(-1).values).float()
    return {
        "train/reward_mean": float(rewards.mean()),
        "train/reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "train/zero_std_frac": float(same.mean()),
        "train/delta_abs_mean": float(deltas.abs().mean()),
    }


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: Config, *, show_progress: bool = True) -> dict[str, Any]:
    return Trainer(cfg, show_progress=show_progress).run()
