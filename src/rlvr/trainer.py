"""The training loop of the notes, top to bottom.

    for each outer step:
        1. refresh the frozen reference policy every R outer steps (not the old policy)
        2. rollout: sample G responses for each of B prompts and score them   (no grad)
           (dynamic sampling: drop groups whose rewards are all equal, draw more)
        3. deltas: rewards (B, G) -> shaped (length, KL in the reward) -> deltas (B, G)
           -> per-token advantages (N, T) (broadcast, or per-token process credit)
        4. cache constants: old log-probs (recorded by the sampler), reference log-probs (no grad)
        5. inner loop: K gradient steps on this fixed batch of rollouts
        6. log metrics; adapt the KL coefficient; every E steps evaluate on the held-out prompts
Every algorithm choice is looked up in a registry by name; the loop never branches on one.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms import (
    adaptive_kl_coef,
    aggregate,
    compute_deltas,
    kl_penalty,
    kl_shaped_rewards,
    policy_loss,
    schedule_value,
    token_advantages,
)
from rlvr.analysis.diagnostics import gradient_agreement, importance_ess
from rlvr.analysis.param_baseline import build_param_baseline
from rlvr.config import AlgoConfig, Config, OptimConfig, to_dict
from rlvr.distributed import build_rollout_backend
from rlvr.evaluation import evaluate
from rlvr.policies import Policy, build_policy
from rlvr.rollout import PromptSource, Rollouts
from rlvr.runs import RunDir
from rlvr.runs.progress import Progress
from rlvr.runs.trackers import build_trackers
from rlvr.sampling import dynamic_sample, length_penalty, token_reward_tensor
from rlvr.tasks import build_task


@dataclass
class Batch:
    """One outer step's rollouts and the constants the inner loop needs."""

    rollouts: Rollouts
    deltas: Tensor               # (B, G)
    advantages: Tensor           # (N, T) delta broadcast over each response's tokens (or per-token credit)
    ref_logprobs: Tensor | None  # (N, T) under the frozen reference, or None without KL
    loss_mask: Tensor            # (N, T) the tokens the loss sees (mask, minus filtered responses)
    kl_loss_coef: float = 0.0    # beta of the KL term in the loss (0 when the KL is in the reward)
    loss_weights: Tensor | None = None  # (N, T) a data-parallel rank's share of the aggregate (ddp.py)


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
        algo.loss, logp, r.logprobs, batch.advantages, batch.loss_mask, clip_eps_low=algo.clip_eps_low,
        clip_eps_high=algo.clip_eps_low if algo.clip_eps_high is None else algo.clip_eps_high,
        dual_clip_c=algo.dual_clip_c)

    def agg(values: Tensor) -> Tensor:
        if batch.loss_weights is not None:  # these rows' share of the whole batch's aggregate
            return (values * batch.loss_weights).sum()
        return aggregate(values, batch.loss_mask, algo.aggregation, constant=aggregation_constant)

    pg_loss = agg(per_token)
    loss = pg_loss
    metrics["loss/policy"] = pg_loss.detach()
    if batch.ref_logprobs is not None:
        kl = agg(kl_penalty(algo.kl_estimator, logp, batch.ref_logprobs, grad_name=algo.kl_grad_estimator))
        loss = loss + batch.kl_loss_coef * kl
        metrics["policy/kl"] = kl.detach()
    mean_entropy = agg(entropy)
    if entropy_coef > 0:
        loss = loss - entropy_coef * mean_entropy
    metrics["policy/entropy"] = mean_entropy.detach()
    metrics["loss/total"] = loss.detach()
    return loss, metrics


class Trainer:
    def __init__(self, cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
                 show_samples: bool = False) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.task = build_task(cfg.task)
        self.policy = build_policy(cfg.policy, self.task)
        self.reference = frozen_copy(self.policy)
        self.param_baseline = build_param_baseline(cfg, self.task)  # gradient correction hook ("none": no-op)
        self.optimizer = build_optimizer(cfg.optim, self.policy.parameters())
        self.prompts = PromptSource(self.task, cfg.seed)
        self.rollout_backend = build_rollout_backend(cfg, self.task, self.policy, self.prompts)
        self.aggregation_constant = cfg.algo.aggregation_constant or float(self.policy.response_length)
        self.kl_coef = cfg.algo.kl_coef  # beta; changes over training when algo.kl_target is set
        self.run_dir = RunDir(cfg.run_dir or default_run_dir(cfg.name), writer=self.writes_files())
        self.progress = Progress(total=cfg.train.outer_steps, enabled=show_progress, show_samples=show_samples)
        self.trackers = build_trackers(self.run_dir, extra=trackers, name=cfg.name, config=to_dict(cfg))
        self.history: list[dict[str, Any]] = []

    def writes_files(self) -> bool:
        """Whether this process writes the run directory (under torchrun: rank 0 only)."""
        return True

    # ---------------------------------------------------------------- the outer loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.run_dir.write_config(to_dict(cfg))
        start = time.perf_counter()
        initial = {"step": 0, **self.evaluate(0)}  # the starting point of every evaluation curve
        self.history.append(initial)
        self.trackers.log(0, initial)
        with self.progress, closing(self.rollout_backend):
            self.progress.update(0, initial)
            for step in range(1, cfg.train.outer_steps + 1):
                row = self.outer_step(step)
                if step % cfg.eval.every == 0 or step == cfg.train.outer_steps:
                    row.update(self.evaluate(step))
                    self.run_dir.write_plot(self.history + [row], title=cfg.name)
                self.history.append(row)
                self.trackers.log(step, row)
                self.progress.update(step, row)
        self.trackers.close()
        final = {k: v for k, v in self.history[-1].items() if k.startswith("eval/")}
        final["train/reward_mean"] = self.history[-1]["train/reward_mean"]
        summary = {"steps": cfg.train.outer_steps, "wall_seconds": time.perf_counter() - start,
                   "final": final, "run_dir": str(self.run_dir.path)}
        self.run_dir.write_json("summary.json", summary)
        return summary

    def outer_step(self, step: int) -> dict[str, Any]:
        cfg, algo = self.cfg, self.cfg.algo
        t0 = time.perf_counter()
        # 1. reference policy: a frozen copy, refreshed every R outer steps (R = 0: the initial policy)
        if algo.ref_refresh_every and (step - 1) % algo.ref_refresh_every == 0 and step > 1:
            self.reference.load_state_dict(self.policy.state_dict())

        # 2. rollout (with dynamic sampling: groups without a reward spread dropped and refilled)
        def draw(count: int) -> Rollouts:
            return self.rollout_backend.rollouts(count)  # prompts from self.prompts, sampled in shards
        rollouts, sampled_rewards, sampling = dynamic_sample(
            draw, cfg.train.prompts_per_step, max_refills=algo.max_refills, enabled=algo.dynamic_sampling)
        t1 = time.perf_counter()
        if not rollouts.prompts:  # every group of every draw had equal rewards: nothing to learn from
            return {"step": step, **reward_metrics(sampled_rewards, sampled_rewards * 0), **sampling}

        # 3-4. deltas and constants for the inner loop
        batch = self.make_batch(rollouts)

        # 5. inner loop: K gradient steps on the same rollouts
        progress = (step - 1) / cfg.train.outer_steps
        entropy_coef = algo.entropy_coef * schedule_value(algo.entropy_schedule, progress, until=algo.entropy_until)
        diagnose = bool(cfg.train.diagnostics_every) and step % cfg.train.diagnostics_every == 0
        diagnostics = gradient_agreement(self.policy, batch, self.pg_loss, self.param_baseline) if diagnose else {}
        sums: dict[str, float] = defaultdict(float)
        for _ in range(cfg.train.inner_steps):
            for key, value in self.inner_step(batch, entropy_coef=entropy_coef).items():
                sums[key] += value
        if diagnose:
            diagnostics.update(importance_ess(self.policy, batch, temperature=cfg.train.temperature))
        t2 = time.perf_counter()
        self.rollout_backend.sync(self.policy)  # the samplers get the new weights

        # 6. metrics
        row: dict[str, Any] = {"step": step}
        row.update(reward_metrics(sampled_rewards, batch.deltas))
        row.update({k: v / cfg.train.inner_steps for k, v in sorted(sums.items())})
        row.update(sampling)
        row["algo/entropy_coef"] = entropy_coef
        row["algo/kl_coef"] = self.kl_coef
        if batch.ref_logprobs is not None:
            row["policy/seq_kl"] = float(self.sequence_kl(batch).mean())
            if algo.kl_target is not None:
                self.kl_coef = adaptive_kl_coef(self.kl_coef, row["policy/seq_kl"], target=algo.kl_target,
                                                horizon=algo.kl_horizon, num_samples=batch.advantages.shape[0])
        row.update(diagnostics)
        row.update(self.rollout_backend.metrics())
        row.update({"time/rollout": t1 - t0, "time/train": t2 - t1, "time/step": t2 - t0})
        row["perf/tokens_per_s"] = float(rollouts.mask.sum()) / max(t1 - t0, 1e-9)  # response tokens sampled
        if step % cfg.eval.samples_every == 0 or step == 1:
            self.write_samples(step, batch)
        return row

    def make_batch(self, rollouts: Rollouts) -> Batch:
        algo = self.cfg.algo
        ref_logprobs = None
        if self.kl_coef > 0:
            with torch.no_grad():
                ref_logprobs, _ = self.reference.logprobs(
                    rollouts.prompt_ids, rollouts.response_ids, rollouts.mask,
                    group_size=rollouts.group_size, temperature=self.cfg.train.temperature)
        # rewards -> shaped rewards: length penalty (DAPO), KL towards the reference when it is in the reward
        rewards = rollouts.rewards + length_penalty(rollouts, max_length=self.policy.response_length,
                                                    buffer_frac=algo.overlong_buffer, factor=algo.overlong_penalty)
        in_reward = algo.kl_in == "reward"
        if ref_logprobs is not None and in_reward:
            rewards, _ = kl_shaped_rewards(rewards, rollouts.logprobs, ref_logprobs, rollouts.mask,
                                           coef=self.kl_coef, estimator=algo.kl_estimator)
        deltas = compute_deltas(rewards, algo.deltas, eps=algo.norm_eps, unbiased_std=algo.unbiased_std)
        advantages = token_advantages(algo.credit, deltas, lambda: token_reward_tensor(self.task, rollouts), rollouts.mask,
                                      mode=algo.deltas, eps=algo.norm_eps, unbiased_std=algo.unbiased_std)
        loss_mask = rollouts.mask
        if algo.mask_truncated and rollouts.truncated is not None:
            loss_mask = rollouts.mask * (~rollouts.truncated.bool()).to(rollouts.mask.dtype).unsqueeze(-1)
        return Batch(rollouts=rollouts, deltas=deltas, advantages=advantages, ref_logprobs=ref_logprobs,
                     loss_mask=loss_mask, kl_loss_coef=0.0 if in_reward else self.kl_coef)

    @staticmethod
    def sequence_kl(batch: Batch) -> Tensor:
        """k1 of each sampled response under the sampling policy vs the reference (N,): log pi_old/pi_ref."""
        assert batch.ref_logprobs is not None
        return ((batch.rollouts.logprobs - batch.ref_logprobs) * batch.rollouts.mask).sum(-1)

    def inner_step(self, batch: Batch, *, entropy_coef: float) -> dict[str, float]:
        loss, metrics = self.learner_loss(batch, entropy_coef=entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics.update(self.param_baseline(self.policy, batch, self.pg_loss))
        max_norm = self.cfg.optim.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
        self.optimizer.step()
        out = {k: float(v) for k, v in metrics.items()}
        out["policy/grad_norm"] = float(grad_norm)
        return out

    def pg_loss(self, batch: Batch) -> Tensor:
        """The policy-gradient part of the loss alone (no KL, no entropy): for diagnostics and hooks."""
        batch = dataclasses.replace(batch, ref_logprobs=None)
        return compute_loss(self.policy, batch, self.cfg.algo, temperature=self.cfg.train.temperature,
                            aggregation_constant=self.aggregation_constant, entropy_coef=0.0)[0]
    def learner_loss(self, batch: Batch, *, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss this process differentiates: the whole batch here, a rank's share under DDP."""
        return compute_loss(self.policy, batch, self.cfg.algo, temperature=self.cfg.train.temperature,
                            aggregation_constant=self.aggregation_constant, entropy_coef=entropy_coef)

    def evaluate(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ev = self.cfg.eval
        metrics = evaluate(self.policy, self.task, pass_k=ev.pass_k, pass_samples=ev.pass_samples,
                           seed=self.cfg.seed * 1_000_003 + step, temperature=self.cfg.train.temperature)
        metrics["time/eval"] = time.perf_counter() - t0
        return metrics

    def write_samples(self, step: int, batch: Batch) -> None:
        r = batch.rollouts
        responses = r.responses()
        group = r.group_size
        records = [{"step": step, "prompt": list(prompt), "solution": list(self.task.solution(prompt)),
                    "responses": responses[i * group:(i + 1) * group],
                    "rewards": r.rewards[i].tolist(), "deltas": batch.deltas[i].tolist()}
                   for i, prompt in enumerate(r.prompts[: self.cfg.eval.samples_prompts])]
        for record in records:
            self.run_dir.append_jsonl("samples.jsonl", record)
        self.progress.samples(step, records)


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


def train(cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
          show_samples: bool = False) -> dict[str, Any]:
    return Trainer(cfg, show_progress=show_progress, trackers=trackers, show_samples=show_samples).run()
