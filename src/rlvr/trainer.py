"""The training loop of the notes, top to bottom.

    for each outer step:
        1. refresh the frozen reference policy every R outer steps (not the old policy); clear the
           optimizer's state every N (ProRL's hard reset: both)
        2. rollout: sample G responses for each of B prompts and score them   (no grad)
           (dynamic sampling: drop groups whose rewards are all equal, draw more prompts; adaptive
           sampling: sample the same prompts again in rounds, train on G of each pool)
        3. deltas: rewards (B, G) -> shaped (length, KL in the reward) -> deltas (B, G)
           -> per-token advantages (N, T) (broadcast, or per-token process credit)
        4. cache constants: old log-probs (recorded by the sampler; with algo.rollout_correction the
           learner's own, and the sampler/learner weights), reference log-probs (no grad); with
           algo.top_entropy_quantile < 1 the tokens the policy-gradient term trains on
        5. inner loop: K gradient steps on this fixed batch of rollouts (each accumulated over
           micro-batches with train.micro_batch_size; rlvr.batching), the learning rate scheduled
        6. log metrics; adapt the KL coefficient; every E steps evaluate on the held-out prompts
        7. every C steps write a checkpoint (``--resume`` continues from the newest good one)
A non-finite loss or gradient skips its update; user reward code runs through ``rlvr.rewards``.
Every algorithm choice is looked up in a registry by name; the loop never branches on one.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.algorithms import (
    CREDIT,
    DELTAS,
    EXIT_RULES,
    POLICY_LOSSES,
    ROLLOUT_CORRECTIONS,
    adaptive_kl_coef,
    compute_deltas,
    correction_metrics,
    kl_penalty,
    policy_loss,
    rollout_correction,
    schedule_value,
    token_advantages,
    token_kl,
)
from rlvr.algorithms.aggregation import masked
from rlvr.algorithms.credit import shaped_token_rewards
from rlvr.algorithms.losses import log_ratio_of
from rlvr.algorithms.selection import high_entropy_tokens, selection_metrics
from rlvr.analysis.hooks import build_hooks
from rlvr.batching import (
    Batch,
    groups_with_gradient,
    micro_batches,
    reward_metrics,
    sample_records,
    trained_group_metrics,
)
from rlvr.config import AlgoConfig, Config
from rlvr.distributed.backends import build_rollout_backend
from rlvr.errors import RunStopped
from rlvr.evaluation import evaluate, evaluation_seed
from rlvr.hooks import TrainerHook
from rlvr.multiturn import FaultCount, build_episodes, episode_metrics
from rlvr.optim import build_optimizer, has_schedule, reset_optimizer, set_lr
from rlvr.options import settings_of
from rlvr.plugins import check_task
from rlvr.policies import Policy, build_policy
from rlvr.policies.base import autocast
from rlvr.policies.lm import LMPolicy
from rlvr.rewards.sources import build_rewards
from rlvr.rollout import (
    PromptSource,
    Rollouts,
    adaptive_sample,
    dynamic_sample,
    length_penalty,
    token_reward_tensor,
)
from rlvr.runs.checkpoint import rng_state, set_rng_state
from rlvr.runs.recorder import RunRecorder
from rlvr.tasks import build_task
from rlvr.train_state import TrainState, legacy_train_state


def periodic(step: int, every: int) -> bool:
    """Whether outer step ``step`` (1-based) is 1 + k * every for some k >= 1: the steps that start
    with a refreshed reference or a cleared optimizer (every = 0: none)."""
    return every > 0 and step > 1 and (step - 1) % every == 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_loss(policy: Policy, batch: Batch, algo: AlgoConfig, *, temperature: float,
                 aggregation_constant: float, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """pg loss + beta * KL - entropy_coef * entropy, each aggregated by ``algo.aggregation`` (for a
    slice of the batch: its share of the whole batch's, ``rlvr.batching``). With a rollout correction
    the ratio is against the learner's own pi_old and each token's pg loss carries its weight; with an
    entropy selection only the selected tokens' pg loss counts (the others stay in the denominator)."""
    r = batch.rollouts
    logp, entropy = policy.logprobs(r.prompt_ids, r.response_ids, r.context_mask, group_size=r.group_size,
                                    temperature=temperature)
    settings = settings_of(POLICY_LOSSES, algo.loss, algo)  # the loss's own
    per_token, metrics = policy_loss(algo.loss, logp, batch.proximal_logprobs, batch.advantages, batch.loss_mask,
                                     **settings)
    if batch.correction is not None:  # the sampler is not the learner: c_t (algorithms/correction.py)
        per_token = per_token * batch.correction
    if batch.selection is not None:  # the high-entropy tokens only (algorithms/selection.py)
        per_token = masked(per_token, batch.selection)
    metrics = {k: v * batch.token_share for k, v in metrics.items()}  # token means: a slice's part

    def agg(values: Tensor) -> Tensor:
        return batch.aggregate(values, algo.aggregation, constant=aggregation_constant)

    pg_loss = agg(per_token)
    loss = pg_loss
    metrics["loss/policy"] = pg_loss.detach()
    if batch.ref_logprobs is not None:
        kl_tokens = kl_penalty(algo.kl_estimator, logp, batch.ref_logprobs, mask=batch.loss_mask,
                               grad_name=algo.kl_grad_estimator)
        if algo.kl_ratio_weight:  # the KL of tokens sampled by pi_old, re-weighted to pi_theta
            kl_tokens = kl_tokens * masked(log_ratio_of(logp, r.logprobs), batch.loss_mask).exp()
        kl = agg(kl_tokens)
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
                 show_samples: bool = False, hooks: Sequence[TrainerHook] | None = None) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.task = build_task(cfg.task)
        check_task(self.task)
        self.rewards = build_rewards(cfg, self.task)  # the verifier, or weighted sources (rewards/sources.py)
        self.policy = build_policy(cfg.policy, self.task)
        # multi-turn runs: episodes with an env (rlvr.multiturn), their faults counted run-wide
        self.episodes = build_episodes(cfg, self.task, self.policy)
        self.env_faults = FaultCount(max_failure_rate=cfg.env.max_failure_rate)
        self.reference = self.policy.frozen_reference()  # a LoRA policy: its base, adapters off
        # research hooks (rlvr.hooks): the config's, unless a list is given
        self.hooks = list(hooks) if hooks is not None else build_hooks(
            cfg, self.task, language_model=isinstance(self.policy, LMPolicy))
        self.optimizer = build_optimizer(cfg.optim, self.policy.trainable_parameters())
        self.prompts = PromptSource(self.task, cfg.seed)
        self.rollout_backend = build_rollout_backend(cfg, self.task, self.policy, self.prompts,
                                                     rewards=self.rewards, episodes=self.episodes)
        self.aggregation_constant = cfg.algo.aggregation_constant or float(self.policy.response_length)
        self.state = TrainState(kl_coef=cfg.algo.kl_coef)
        # the run directory, checkpoints, trackers and progress display, behind one object
        self.record = RunRecorder(cfg, writer=self.writes_files(), show_progress=show_progress,
                                  trackers=trackers, show_samples=show_samples)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    def writes_files(self) -> bool:
        """Whether this process writes the run directory (under torchrun: rank 0 only)."""
        return True

    # ---------------------------------------------------------------- the outer loop
    def run(self, *, resume: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        self.started_at = start = time.perf_counter()
        first = self.resume() if resume else None
        if first is None:
            first = self.begin(overwrite=resume)
        with self.record.progress, closing(self.rollout_backend):
            self.record.progress.update(first - 1, self.history[-1])
            for step in range(first, cfg.train.outer_steps + 1):
                row = self.outer_step(step)
                evaluated = step % cfg.eval.every == 0 or step == cfg.train.outer_steps
                if evaluated:
                    row.update(self.evaluate(step))
                self.record.log(step, row, plot_with=list(self.history) if evaluated else None)
                self.history.append(row)
                self.after_step(step, row)
        final = {k: v for k, v in self.history[-1].items() if k.startswith("eval/")}
        final["train/reward_mean"] = self.history[-1]["train/reward_mean"]
        wall_seconds = self.state.wall_seconds + time.perf_counter() - start
        summary = {"steps": cfg.train.outer_steps, "wall_seconds": wall_seconds,
                   "final": final, "run_dir": str(self.record.path)}
        if self.state.sft_final:
            summary["sft_final"] = self.state.sft_final
        self.record.finish(self.policy, summary)
        return summary

    # ---------------------------------------------------------------- starting, checkpoints, resuming
    def begin(self, *, overwrite: bool) -> int:
        """A fresh run: its directory and config (``RunRecorder.start``), the SFT stage, and the
        evaluation at step 0. Returns the first step to run."""
        self.record.start(overwrite=overwrite)
        self.warm_start()
        initial = {"step": 0, **self.evaluate(0)}  # the starting point of every evaluation curve
        self.history.append(initial)
        self.record.log(0, initial)
        return 1

    def resume(self) -> int | None:
        """Continue from the newest good checkpoint (None: there is none). Returns the next step;
        metrics.jsonl and samples.jsonl are cut back to the checkpoint's step."""
        found = self.record.latest()
        if found is None:
            return None
        self.load_state_dict(found.state)
        self.record.rewind(found.step, self.history)
        return found.step + 1

    def after_step(self, step: int, row: dict[str, Any]) -> None:
        """Checkpoint every C steps and at the end; stop, with a checkpoint, when rewards fail too often."""
        stop = self.rewards.stop_reason() or self.env_faults.stop_reason()
        every = self.cfg.checkpoint.every
        due = stop or step == self.cfg.train.outer_steps or (every and step % every == 0)
        if due:  # under torchrun rank 0 writes the one checkpoint
            path = self.record.checkpoint(step, self.state_dict(), row)
            if stop and path is not None:
                raise RunStopped(f"{stop}; checkpoint {path}")

    def state_dict(self) -> dict[str, Any]:
        """Everything one outer step hands to the next: a checkpoint holds exactly this."""
        train_state = dataclasses.replace(
            self.state, wall_seconds=self.state.wall_seconds + time.perf_counter() - self.started_at)
        return {"policy": self.policy.state_dict(), "reference": self.reference.state_dict(),
                "optimizer": self.optimizer.state_dict(), "prompts": self.prompts.state_dict(),
                "rng": rng_state(), "rollout": self.rollout_backend.state_dict(),
                "rewards": self.rewards.state_dict(), "train_state": dataclasses.asdict(train_state),
                "env_faults": self.env_faults.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.reference.load_state_dict(state["reference"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.prompts.load_state_dict(state["prompts"])
        self.rewards.load_state_dict(state["rewards"])
        if "env_faults" in state:
            self.env_faults.load_state_dict(state["env_faults"])
        self.state = TrainState(**state["train_state"]) if "train_state" in state else legacy_train_state(state)
        set_rng_state(state["rng"])
        self.rollout_backend.load_state_dict(state["rollout"])

    def close(self) -> None:
        self.rewards.close()
        if self.episodes is not None:
            self.episodes.close()

    def warm_start(self) -> list[dict[str, Any]]:
        """The config's SFT stage (sft.steps > 0), run first; the reference becomes its result."""
        if not self.cfg.sft.steps:
            return []
        from rlvr.sft import run_sft
        rows = run_sft(self.cfg, self.policy, self.task, self.record.run_dir,
                       show_progress=self.record.progress.enabled, episodes=self.episodes)
        self.reference.load_state_dict(self.policy.state_dict())
        self.rollout_backend.sync(self.policy)  # remote samplers start from the warm-started weights too
        self.state.sft_final = {k: v for k, v in rows[-1].items() if k.startswith(("eval/", "sft/"))}
        return rows

    def outer_step(self, step: int) -> dict[str, Any]:
        cfg, algo = self.cfg, self.cfg.algo
        t0 = time.perf_counter()
        # 1. reference policy: a frozen copy, refreshed every R outer steps (R = 0: the initial policy);
        #    the optimizer's moments and step count cleared every N (the lr schedule goes on)
        if periodic(step, algo.ref_refresh_every):
            self.reference.load_state_dict(self.policy.state_dict())
        reset = periodic(step, cfg.optim.reset_every)
        if reset:
            reset_optimizer(self.optimizer)

        # 2. rollout (dynamic sampling: groups without a reward spread dropped and refilled with new
        #    prompts; adaptive sampling: the same prompts sampled again, G of each pool kept)
        rollouts, sampled_rewards, sampling = self.sample_rollouts()
        t1 = time.perf_counter()
        if not rollouts.prompts:  # every group of every draw had equal rewards: nothing to learn from
            return {"step": step, **reward_metrics(sampled_rewards, sampled_rewards * 0), **sampling}

        # 3-4. deltas and constants for the inner loop
        batch = self.make_batch(rollouts)

        # 5. inner loop: K gradient steps on the same rollouts
        progress = (step - 1) / cfg.train.outer_steps
        entropy_coef = algo.entropy_coef * schedule_value(algo.entropy_schedule, progress, until=algo.entropy_until)
        watched: dict[str, Any] = {}
        for hook in self.hooks:
            watched.update(hook.before_inner(step, self.policy, batch, self.pg_loss))
        parts = self.learner_slices(batch)  # what this process differentiates, summing to the whole
        sums: dict[str, float] = defaultdict(float)
        for _ in range(cfg.train.inner_steps):
            for key, value in self.inner_step(batch, parts, entropy_coef=entropy_coef).items():
                sums[key] += value
        for hook in self.hooks:
            watched.update(hook.after_inner(step, self.policy, batch))
        t2 = time.perf_counter()
        self.rollout_backend.sync(self.policy)  # the samplers get the new weights

        # 6. metrics
        row: dict[str, Any] = {"step": step}
        row.update(reward_metrics(sampled_rewards, batch.deltas))
        row.update({k: v / cfg.train.inner_steps for k, v in sorted(sums.items())})
        row.update(sampling)
        if cfg.optim.reset_every:
            row["optim/reset"] = float(reset)
        if cfg.train.skip_flat_groups:
            row["train/trained_groups"] = float(sum(len(p.rollouts.prompts) for p in parts))
        row.update(self.rewards.pop_metrics())
        row.update(episode_metrics(rollouts.decoded or []))  # multi-turn: env/turns_mean, env/success, ...
        row.update(self.env_faults.add(rollouts.decoded or []))
        row["algo/entropy_coef"] = entropy_coef
        row["algo/kl_coef"] = self.state.kl_coef
        if batch.ref_logprobs is not None:
            row["policy/seq_kl"] = float(self.sequence_kl(batch).mean())
        if batch.selection is not None:
            row.update({k: float(v) for k, v in selection_metrics(batch.selection, batch.loss_mask).items()})
        if batch.old_logprobs is not None and batch.correction is not None:  # the sampler/learner gap
            row.update({k: float(v) for k, v in correction_metrics(
                batch.old_logprobs, rollouts.logprobs, batch.correction, batch.loss_mask).items()})
        row.update(watched)
        row.update(self.rollout_backend.metrics())
        row.update({"time/rollout": t1 - t0, "time/train": t2 - t1, "time/step": t2 - t0})
        tokens = float(rollouts.mask.sum())  # sampled response tokens (LM policies: up to and incl. <eos>)
        row["train/response_length"] = tokens / rollouts.mask.shape[0]
        row["perf/tokens_per_s"] = tokens / max(t1 - t0, 1e-9)  # response tokens sampled per second of rollout
        if step % cfg.eval.samples_every == 0 or step == 1:
            self.record.samples(step, sample_records(step, batch, self.task, prompts=cfg.eval.samples_prompts))
        # 6. (last) adapt the KL coefficient towards its target (Ziegler et al. 2019) for the next step
        if batch.ref_logprobs is not None and algo.kl_target is not None:
            self.state.kl_coef = adaptive_kl_coef(self.state.kl_coef, row["policy/seq_kl"], target=algo.kl_target,
                                                  horizon=algo.kl_horizon, num_samples=batch.advantages.shape[0])
        return row

    def sample_rollouts(self) -> tuple[Rollouts, Tensor, dict[str, float]]:
        """The step's groups (prompts from self.prompts, sampled in shards by the backend), the rewards
        of an unselected sample of them for the learning curves, and the sampling counts."""
        cfg, algo, backend = self.cfg, self.cfg.algo, self.rollout_backend
        exit_rule = EXIT_RULES.get(algo.adaptive_sampling)
        if exit_rule is None:
            return dynamic_sample(lambda count: backend.rollouts(count), cfg.train.prompts_per_step,
                                  max_refills=algo.max_refills, enabled=algo.dynamic_sampling)
        group = cfg.train.group_size
        return adaptive_sample(
            lambda count, size: backend.rollouts(count, group_size=size),
            lambda prompts, size: backend.resample(prompts, group_size=size), cfg.train.prompts_per_step,
            group_size=group, round_size=algo.adaptive_round_multiplier * group, rounds=algo.adaptive_rounds,
            exit_rule=exit_rule, correct=self.correct_responses,
            reward_of=lambda r: r.rewards + self.response_shaping(r), unbiased_std=algo.unbiased_std)

    def correct_responses(self, rollouts: Rollouts) -> Tensor:
        """(B, G) bool: the responses adaptive sampling counts as correct: reward >= algo.adaptive_success,
        or (none) the task's ground truth (``Task.is_correct``)."""
        threshold = self.cfg.algo.adaptive_success
        if threshold is not None:
            return rollouts.rewards >= threshold
        responses = rollouts.decoded if rollouts.decoded is not None else rollouts.responses()
        group = rollouts.group_size
        flags = [self.task.is_correct(rollouts.prompts[n // group], r) for n, r in enumerate(responses)]
        return torch.tensor(flags, dtype=torch.bool).reshape(rollouts.rewards.shape)

    def response_shaping(self, rollouts: Rollouts) -> Tensor:
        """What the loop adds to each response's reward (B, G) before the deltas: DAPO's length penalty."""
        algo = self.cfg.algo
        return length_penalty(rollouts, max_length=self.policy.response_length, buffer_frac=algo.overlong_buffer,
                              factor=algo.overlong_penalty)

    def make_batch(self, rollouts: Rollouts) -> Batch:
        algo = self.cfg.algo
        ref_logprobs = None
        if self.state.kl_coef > 0:
            ref_logprobs = self.constant_logprobs(self.reference, rollouts)
        # rewards -> shaped rewards: per response the length penalty (DAPO), per token the KL towards
        # the reference when it is in the reward; process credit gets both in its token rewards
        per_response = self.response_shaping(rollouts)                                         # (B, G)
        rewards = rollouts.rewards + per_response
        in_reward = algo.kl_in == "reward"
        per_token = None
        if ref_logprobs is not None and in_reward:
            per_token = -self.state.kl_coef * token_kl(rollouts.logprobs, ref_logprobs, rollouts.mask,
                                                 estimator=algo.kl_estimator)                  # (N, T)
            rewards = rewards + per_token.sum(-1).reshape(rewards.shape)
        # a deltas mode that normalises each reward source (gdpo) reads them; the others the weighted sum
        delta_settings = settings_of(DELTAS, algo.deltas, algo)  # the mode's own
        # adaptive sampling: the group's baseline (and scale) are its whole pool's
        pool = (rollouts.pool_mean, rollouts.pool_std) if rollouts.pool_std is not None else None
        deltas = compute_deltas(rewards, algo.deltas, eps=algo.norm_eps, unbiased_std=algo.unbiased_std, pool=pool,
                                settings=delta_settings, sources=rollouts.source_rewards,
                                source_weights=self.rewards.source_weights)

        def token_rewards() -> Tensor | None:  # only process credit asks for them
            return shaped_token_rewards(token_reward_tensor(self.task, rollouts), rollouts.mask,
                                        per_response=per_response.reshape(-1), per_token=per_token)

        def score_norms() -> Tensor:  # only a credit mode weighing by the score's size asks (one forward)
            return self.constant_score_norms(rollouts)
        advantages = token_advantages(algo.credit, deltas, token_rewards, rollouts.mask, mode=algo.deltas,
                                      eps=algo.norm_eps, unbiased_std=algo.unbiased_std, settings=delta_settings,
                                      score_norms=score_norms, **settings_of(CREDIT, algo.credit, algo))
        loss_mask = rollouts.mask
        if algo.mask_truncated and rollouts.truncated is not None:
            loss_mask = rollouts.mask * (~rollouts.truncated.bool()).to(rollouts.mask.dtype).unsqueeze(-1)
        old_logprobs, correction, selection = self.learner_constants(rollouts, advantages, loss_mask)
        return Batch(rollouts=rollouts, deltas=deltas, advantages=advantages, ref_logprobs=ref_logprobs,
                     loss_mask=loss_mask, kl_loss_coef=0.0 if in_reward else self.state.kl_coef,
                     old_logprobs=old_logprobs, correction=correction, selection=selection)

    def learner_constants(self, rollouts: Rollouts, advantages: Tensor,
                          loss_mask: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """What pi_old, the learner before the inner loop, fixes for the batch, from one no-grad forward
        made only when asked: the rollout correction's pi_old log-probs and weights c (N, T), and the
        entropy selection (N, T) (None each when off)."""
        algo = self.cfg.algo

        @functools.cache
        def learner() -> tuple[Tensor, Tensor]:  # (log-probs, entropies) (N, T): one forward at most
            return self.constant_forward(self.policy, rollouts)
        settings = settings_of(ROLLOUT_CORRECTIONS, algo.rollout_correction, algo)
        old_logprobs, correction = rollout_correction(
            algo.rollout_correction, rollouts.logprobs, lambda: learner()[0], advantages, rollouts.mask, **settings)
        selection = None  # the top q of the WHOLE batch's loss tokens by their entropy under pi_old
        if algo.top_entropy_quantile < 1:
            selection = high_entropy_tokens(learner()[1], loss_mask, top_quantile=algo.top_entropy_quantile)
        return old_logprobs, correction, selection

    def constant_logprobs(self, model: Any, rollouts: Rollouts) -> Tensor:
        """log-probs (N, T) of the sampled tokens under ``model`` (``constant_forward``)."""
        return self.constant_forward(model, rollouts)[0]

    def constant_forward(self, model: Any, rollouts: Rollouts) -> tuple[Tensor, Tensor]:
        """log-probs and entropies (N, T) of the sampled responses' positions under ``model`` (the
        reference, or the learner as it is before the inner loop), no grad, under the training
        forward's autocast, so that on the first inner step the learner's ratio to its own log-probs
        is 1 (up to the rounding of other batch shapes)."""
        with torch.no_grad(), autocast(model, self.cfg.train.bf16):
            return model.logprobs(rollouts.prompt_ids, rollouts.response_ids, rollouts.context_mask,
                                  group_size=rollouts.group_size, temperature=self.cfg.train.temperature)

    def constant_score_norms(self, rollouts: Rollouts) -> Tensor:
        """The squared score norm at the logits of each sampled token (N, T) under the learner as it is
        before the inner loop (``Policy.score_norms``), no grad, under the training forward's autocast."""
        with torch.no_grad(), autocast(self.policy, self.cfg.train.bf16):
            return self.policy.score_norms(rollouts.prompt_ids, rollouts.response_ids, rollouts.context_mask,
                                           group_size=rollouts.group_size, temperature=self.cfg.train.temperature)

    @staticmethod
    def sequence_kl(batch: Batch) -> Tensor:
        """k1 of each sampled response under the sampling policy vs the reference (N,): log pi_old/pi_ref."""
        assert batch.ref_logprobs is not None
        return masked(batch.rollouts.logprobs - batch.ref_logprobs, batch.rollouts.mask).sum(-1)

    def inner_step(self, batch: Batch, parts: Sequence[Batch], *, entropy_coef: float) -> dict[str, float]:
        """One optimizer step: the whole batch's gradient, accumulated over ``parts``; the hooks,
        clipping, this step's learning rate, the update (skipped when not finite)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = self.accumulate_gradient(parts, entropy_coef=entropy_coef)
        if self.cfg.train.skip_flat_groups:  # the parts are the groups with a gradient: their means
            metrics = trained_group_metrics(metrics, parts, mode=self.cfg.algo.aggregation,
                                            constant=self.aggregation_constant)
        for hook in self.hooks:  # e.g. a per-parameter baseline correcting the gradient
            metrics.update(hook.after_backward(self.policy, batch, self.pg_loss))
        max_norm = self.cfg.optim.grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.policy.trainable_parameters()), max_norm, foreach=True)
        total_steps = self.cfg.train.outer_steps * self.cfg.train.inner_steps
        lr = set_lr(self.optimizer, self.cfg.optim, self.state.optimizer_steps, total=total_steps)
        self.state.optimizer_steps += 1
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm))
        if finite:  # a NaN/inf loss or gradient would poison the weights and the optimizer state
            self.optimizer.step()
        self.count_nonfinite(finite)
        out = {k: float(v) for k, v in metrics.items()}
        out["policy/grad_norm"] = float(grad_norm)
        out["fault/skipped_updates"] = float(not finite)
        if has_schedule(self.cfg.optim):
            out["optim/lr"] = lr
        return out

    def accumulate_gradient(self, parts: Sequence[Batch], *, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
        """Backward through each part's loss into .grad; returns the loss and metrics summed over the
        parts, which are the whole batch's (``rlvr.batching``). No parts (every group flat with
        train.skip_flat_groups): a zero gradient, and the optimizer still steps (momentum, decay)."""
        if not parts:
            for p in self.policy.trainable_parameters():
                p.grad = torch.zeros_like(p)
            return torch.zeros(()), {"loss/policy": torch.zeros(()), "loss/total": torch.zeros(())}
        total: Tensor | None = None
        sums: dict[str, Tensor] = {}
        for i, part in enumerate(parts):
            with self.gradient_sync(last=i == len(parts) - 1):
                with autocast(self.policy, self.cfg.train.bf16):
                    loss, metrics = self.learner_loss(part, entropy_coef=entropy_coef)
                loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
            sums = {k: sums[k] + v for k, v in metrics.items()} if sums else metrics
        assert total is not None
        return total, self.reduce_metrics(sums)

    def learner_slices(self, batch: Batch) -> list[Batch]:
        """The slices of the batch this process differentiates: its micro-batches (one: the whole
        batch, without train.micro_batch_size); under DDP, those of the rank's rows. With
        train.skip_flat_groups only the groups with a nonzero advantage (none: no slices)."""
        if self.cfg.train.skip_flat_groups:
            trained = groups_with_gradient(batch, mode=self.cfg.algo.aggregation, constant=self.aggregation_constant)
            if trained is None:
                return []
            batch = trained
        return micro_batches(batch, self.cfg.train.micro_batch_size, mode=self.cfg.algo.aggregation,
                             constant=self.aggregation_constant)

    def learner_loss(self, part: Batch, *, entropy_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one slice (its share of the whole batch's loss)."""
        return compute_loss(self.policy, part, self.cfg.algo, temperature=self.cfg.train.temperature,
                            aggregation_constant=self.aggregation_constant, entropy_coef=entropy_coef)

    def gradient_sync(self, *, last: bool) -> AbstractContextManager[Any]:
        """Around each slice's forward and backward (DDP: all-reduce the gradient after the last only)."""
        return nullcontext()

    def reduce_metrics(self, metrics: dict[str, Tensor]) -> dict[str, Tensor]:
        """The summed slices' metrics -> the batch's (DDP: the mean over ranks)."""
        return metrics

    def pg_loss(self, batch: Batch) -> Tensor:
        """The policy-gradient part of the loss alone (no KL, no entropy): for diagnostics and hooks."""
        batch = dataclasses.replace(batch, ref_logprobs=None)
        return compute_loss(self.policy, batch, self.cfg.algo, temperature=self.cfg.train.temperature,
                            aggregation_constant=self.aggregation_constant, entropy_coef=0.0)[0]

    def count_nonfinite(self, finite: bool) -> None:
        self.state.nonfinite_streak = 0 if finite else self.state.nonfinite_streak + 1
        patience = self.cfg.train.nonfinite_patience
        if self.state.nonfinite_streak >= patience:
            last = self.record.checkpoints.steps()
            raise RunStopped(f"{self.state.nonfinite_streak} non-finite losses or gradients in a row "
                             f"(train.nonfinite_patience {patience}); each update was skipped; last good "
                             f"checkpoint: {last[0][1] if last else 'none yet'}")

    def evaluate(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ev = self.cfg.eval
        metrics = evaluate(self.policy, self.task, pass_k=ev.pass_k, pass_samples=ev.pass_samples,
                           seed=evaluation_seed(self.cfg.seed, step), temperature=self.cfg.train.temperature,
                           rewards=self.rewards, episodes=self.episodes)
        metrics["time/eval"] = time.perf_counter() - t0
        return metrics


def train(cfg: Config, *, show_progress: bool = True, trackers: Sequence[str] = (),
          show_samples: bool = False, resume: bool = False) -> dict[str, Any]:
    trainer = Trainer(cfg, show_progress=show_progress, trackers=trackers, show_samples=show_samples)
    try:
        return trainer.run(resume=resume)
    finally:
        trainer.close()
