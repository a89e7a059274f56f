"""Multi-turn RL: rollouts that are whole episodes with an environment (issue 18).

``env`` configures them: which env plays each row (the task's own, an ``EnvTask``; or the user's
``--env module.path:make_env``, make_env(row) -> Env), the episode limits, and the guard around the
untrusted env code (``env.timeout``, ``env.fallback_reward``, ``env.workers``: rlvr.envs.guard;
``env.max_failure_rate``: ``FaultCount``). ``build_episodes`` is the one way in; the trainer, the rollout
backends (local and Ray actors) and the evaluation all sample through the ``EpisodeSampler`` it
returns, so a multi-turn run differs from a single-answer run only in how its rollouts are drawn:

- ``Rollouts.response_ids`` hold the episode's tokens after its first observation; ``mask`` the
  tokens the policy sampled (what the loss sees); ``attended`` every token of the episode (what the
  training pass reads: observations are context, never trained on); ``rewards`` the episodes'
  returns (outcome credit broadcasts them); ``token_rewards`` each turn's reward on its last token
  (process credit turns them into rewards-to-go over turns);
- ``truncated``: the episode was cut by ``env.max_turns``, the token budget or a turn without <eos>
  (so ``algo.mask_truncated`` and the overlong shaping apply);
- ``decoded``: the ``Episode`` records, turn by turn, that samples.jsonl and the report show.
Shapes as in rlvr.rollout: B rows, G episodes per row, N = B * G, T episode tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlvr.envs.base import EnvFactory, Step
from rlvr.envs.config import EnvConfig
from rlvr.envs.task import episode_success
from rlvr.errors import ConfigError, UserError
from rlvr.faults import FailureTally
from rlvr.plugins import import_object
from rlvr.policies.episodes import (
    EnvSide,
    EpisodeLimits,
    EpisodeSamples,
    TurnCodec,
    sample_episodes,
)
from rlvr.policies.lm import LMPolicy
from rlvr.tasks import Task

__all__ = ["EnvConfig", "Episode", "EpisodeSampler", "build_episodes", "evaluate_episodes"]


@dataclass(frozen=True)
class Episode:
    """One episode as samples.jsonl and the report show it."""

    turns: tuple[tuple[str, str], ...]   # ("env" | "policy", text), in order
    ret: float
    truncated: bool
    fault: str | None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"turns": [{"role": role, "text": text} for role, text in self.turns], "return": self.ret,
                "truncated": self.truncated, "fault": self.fault, **self.metrics}

    @property
    def policy_turns(self) -> int:
        return sum(role == "policy" for role, _ in self.turns)


def env_factory(cfg: Any, task: Task) -> EnvFactory | None:
    """The env of each row: ``env.factory`` if set, else the task's own (None: not a multi-turn run)."""
    if cfg.env.factory:
        factory = import_object(cfg.env.factory, field="env.factory")
        if not callable(factory):
            raise ConfigError(f"env.factory: {cfg.env.factory!r} is not callable")
        return factory
    if getattr(task, "rollout_kind", "responses") == "episodes":
        return task.make_env  # type: ignore[attr-defined,no-any-return]
    return None


class EpisodeSampler:
    """Samples groups of episodes as ``Rollouts``; owns the guarded envs of its process."""

    def __init__(self, factory: EnvFactory, limits: EpisodeLimits, *, timeout: float, fallback_reward: float,
                 workers: int) -> None:
        from rlvr.envs.guard import EnvRunner
        self.factory, self.limits = factory, limits
        self.runner = EnvRunner(factory, timeout=timeout, fallback_reward=fallback_reward, workers=workers)

    def sample(self, policy: LMPolicy, rows: Sequence[Any], *, group_size: int, generator: torch.Generator | None,
               temperature: float, cached: bool = True) -> EpisodeSamples:
        return sample_episodes(policy, rows, self.runner, group_size=group_size, limits=self.limits,
                               generator=generator, temperature=temperature, cached=cached)

    def rollouts(self, policy: LMPolicy, rows: list[Any], *, group_size: int, generator: torch.Generator,
                 temperature: float) -> Any:
        from rlvr.rollout import Rollouts
        s = self.sample(policy, rows, group_size=group_size, generator=generator, temperature=temperature)
        return Rollouts(prompts=list(rows), prompt_ids=s.prompt_ids, response_ids=s.response_ids, mask=s.mask,
                        logprobs=s.logprobs, rewards=s.returns.reshape(len(rows), group_size), group_size=group_size,
                        truncated=s.truncated, decoded=episodes_of(s), prompt_pad_id=policy.prompt_pad_id,
                        attended=s.attended, token_rewards=s.token_rewards)

    def close(self) -> None:
        self.runner.close()


def episodes_of(s: EpisodeSamples) -> list[Episode]:
    """The batch's episodes; an episode whose env faulted only in ``metrics`` or ``close`` keeps its
    return and carries that fault (counted by FaultCount like any other)."""
    late = s.late_faults or [None] * len(s.faults)
    return [Episode(turns=tuple(turns), ret=float(ret), truncated=bool(cut), fault=fault or after,
                    metrics=dict(metrics))
            for turns, ret, cut, fault, after, metrics in zip(s.turns, s.returns.tolist(), s.truncated.tolist(),
                                                              s.faults, late, s.env_metrics, strict=True)]


def build_episodes(cfg: Any, task: Task, policy: Any) -> EpisodeSampler | None:
    """The run's episode sampler, or None for a single-answer run."""
    factory = env_factory(cfg, task)
    if factory is None:
        return None
    if not isinstance(policy, LMPolicy):
        raise ConfigError(f"policy.kind: {cfg.policy.kind!r} cannot play episodes; multi-turn runs need a "
                          "language-model policy (transformer or hf)")
    env = cfg.env
    limits = EpisodeLimits(max_turns=env.max_turns, max_new_tokens=policy.max_new_tokens,
                           max_tokens=env.max_tokens or env.max_turns * (policy.max_new_tokens + 16))
    return EpisodeSampler(factory, limits, timeout=env.timeout, fallback_reward=env.fallback_reward,
                          workers=env.workers)


# ---------------------------------------------------------------- metrics, the failure-rate stop
def episode_metrics(episodes: Sequence[Any]) -> dict[str, float]:
    """``env/turns_mean``, ``env/truncated`` and each env metric's mean (``env/success``,
    ``env/tool_calls``, ...) over the episodes that report it; {} for single answers."""
    episodes = [e for e in episodes if isinstance(e, Episode)]
    if not episodes:
        return {}
    out = {"env/turns_mean": float(np.mean([e.policy_turns for e in episodes])),
           "env/truncated": float(np.mean([e.truncated for e in episodes])),
           "env/return_mean": float(np.mean([e.ret for e in episodes]))}
    keys = sorted({k for e in episodes for k in e.metrics})
    for key in keys:
        out[f"env/{key}"] = float(np.mean([e.metrics[key] for e in episodes if key in e.metrics]))
    return out


class FaultCount:
    """Training episodes and their faults so far (the trainer's, from the rollouts of every backend):
    the ``fault/env_*`` metrics and the failure-rate stop, tallied as reward calls are (rlvr.faults)."""

    def __init__(self, max_failure_rate: float = 0.1) -> None:
        self.tally = FailureTally("env", max_failure_rate, keys=("episodes", "faults"))  # the checkpoint's keys

    def add(self, episodes: Sequence[Any]) -> dict[str, float]:
        """Counts a step's episodes and their faults -> the step's ``fault/env_*`` metrics ({} for single answers)."""
        found = [e for e in episodes if isinstance(e, Episode)]
        if not found:
            return {}
        return self.tally.add(len(found), Counter(e.fault for e in found if e.fault is not None))

    def stop_reason(self) -> str | None:
        return self.tally.stop_reason("env: {failed} of {calls} episodes faulted ({kinds}), more than "
                                      "env.max_failure_rate {limit}")

    def state_dict(self) -> dict[str, Any]:
        return self.tally.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tally.load_state_dict(state)


# ---------------------------------------------------------------- evaluation, demonstrations
def evaluate_episodes(policy: LMPolicy, task: Task, sampler: EpisodeSampler, *, pass_k: int, pass_samples: int,
                      seed: int, temperature: float) -> dict[str, float]:
    """Greedy episodes on the held-out rows: ``eval/reward_mean`` (the mean return), ``eval/exact_match``
    (the share of successes: the env's ``success`` metric, else a return at the task's max reward),
    ``eval/pass@k`` from ``pass_samples`` sampled episodes per row, ``eval/mean_length`` (policy tokens),
    and each env metric's mean as ``eval/<key>`` (``eval/turns_mean`` among them)."""
    from rlvr.evaluation import pass_at_k
    rows = task.eval_prompts()
    greedy = sampler.sample(policy, rows, group_size=1, generator=None, temperature=temperature)
    episodes = episodes_of(greedy)
    success = [episode_success(e, max_reward=task.max_reward) for e in episodes]
    metrics = {"eval/reward_mean": float(greedy.returns.mean()), "eval/exact_match": float(np.mean(success)),
               "eval/mean_length": float(greedy.mask.sum()) / len(rows)}
    metrics.update({f"eval/{k.removeprefix('env/')}": v for k, v in episode_metrics(episodes).items()
                    if k != "env/return_mean"})
    generator = torch.Generator().manual_seed(seed)
    sampled = episodes_of(sampler.sample(policy, rows, group_size=pass_samples, generator=generator,
                                         temperature=temperature))
    correct = [sum(episode_success(e, max_reward=task.max_reward) for e in sampled[i * pass_samples:(i + 1) * pass_samples])
               for i in range(len(rows))]
    metrics[f"eval/pass@{pass_k}"] = float(np.mean([pass_at_k(pass_samples, c, pass_k) for c in correct]))
    if pass_k > 1:
        metrics["eval/pass@1"] = float(np.mean([c / pass_samples for c in correct]))
    return metrics


def demonstrated_episodes(policy: LMPolicy, envs: EnvSide, rows: Sequence[Any],
                          demos: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Scripted episodes as training rows: each row's env played with the demonstrated policy turns,
    laid out as ``sample_episodes`` lays out sampled ones (turn ids = the turn's tokens + <eos>).
    The envs are guarded like sampled episodes' (``envs``: an EnvRunner); a demonstration whose env
    faults is left out. Returns prompt_ids (M, P), response_ids, mask (policy tokens), attended (M, T)
    for the M rows kept."""
    codec, turn_codec = policy.codec, TurnCodec(policy)
    opened = envs.start(list(rows))
    history: dict[int, list[tuple[str, str]]] = {n: [("env", o)] for n, o in enumerate(opened) if isinstance(o, str)}
    ids: dict[int, list[int]] = {n: [] for n in history}
    mask: dict[int, list[float]] = {n: [] for n in history}
    live = set(history)
    for turn in range(max((len(d) for d in demos), default=0)):
        actions = {n: demos[n][turn] for n in sorted(live) if turn < len(demos[n])}
        live = set(actions)
        for n, action in actions.items():
            tokens = codec.encode_answer(action) + [codec.eos_id]
            ids[n], mask[n] = ids[n] + tokens, mask[n] + [1.0] * len(tokens)
            history[n].append(("policy", action))
        for n, result in envs.step(actions).items():
            if not isinstance(result, Step):
                history.pop(n), live.discard(n)
            elif result.done:
                live.discard(n)
            else:
                observation = result.observation or ""
                obs_ids = turn_codec.observation(history[n], observation)
                history[n].append(("env", observation))
                ids[n], mask[n] = ids[n] + obs_ids, mask[n] + [0.0] * len(obs_ids)
    for n in range(len(rows)):
        envs.finish(n)
    kept = [n for n in range(len(rows)) if n in history]
    if not kept:
        raise UserError("env: every demonstrated episode's env faulted; no SFT data")
    width = max(len(ids[n]) for n in kept)
    response_ids = torch.tensor([ids[n] + [codec.pad_id] * (width - len(ids[n])) for n in kept], dtype=torch.long)
    mask_t = torch.tensor([mask[n] + [0.0] * (width - len(mask[n])) for n in kept])
    attended = torch.tensor([[1.0] * len(ids[n]) + [0.0] * (width - len(ids[n])) for n in kept])
    return policy.encode_prompts([history[n][0][1] for n in kept]), response_ids, mask_t, attended
