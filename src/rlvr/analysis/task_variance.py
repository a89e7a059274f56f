"""How noisy is one batch's gradient under each delta mode? (``rlvr variance task``, ``measure``)

At a fixed policy (the config's initial policy, or a safetensors checkpoint) and a fixed batch of
B prompts, draw R independent rollouts of G responses per prompt and, for each delta mode, the
gradient estimate
    g = 1/N sum_n delta_n grad log pi(y_n)        (the trainer's own rollout.generate,
                                                   algorithms.compute_deltas, trainer.compute_loss
                                                   with the naive loss and seq-mean-token-sum, so
                                                   g estimates grad of the mean expected reward)
Every mode sees the same R rollouts. Reported per mode: tr Cov[g] (unbiased, over the R draws),
the mean cosine of a batch's g to the full-batch gradient (the mean of all R), and -- when the
response space can be enumerated (the toy policy) -- the exact grad J, so bias and variance are
both visible: cos(E g, grad J), |E g| / |grad J| and |E g - grad J| / |grad J| next to its Monte
Carlo noise sqrt(tr Cov / R) / |grad J|. With the toy policy the notes' per-parameter optimal
baseline (``optimal-exact``, raw deltas) and its per-prompt form are two more rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms import DELTAS, compute_deltas
from rlvr.analysis.enumerate import policy_problem
from rlvr.analysis.exact import exact_gradient
from rlvr.analysis.param_baseline import PARAM_BASELINES
from rlvr.config import Config
from rlvr.errors import ConfigError, UserError
from rlvr.options import settings_of
from rlvr.policies import Policy, build_policy
from rlvr.rollout import PromptSource, Rollouts, generate
from rlvr.tasks import Prompt, Task, build_task
from rlvr.trainer import Batch, compute_loss, seed_everything

OPTIMAL = tuple(name for name in PARAM_BASELINES.names() if name != "none")  # rows for per-parameter baselines


def load_checkpoint(policy: Policy, path: str) -> None:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise UserError(f"--checkpoint: no such file {path!r}")
    try:
        state = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for a bad file
        raise UserError(f"--checkpoint: {path!r} is not a safetensors file ({exc})") from None
    state = {k.removeprefix("policy."): v for k, v in state.items()}
    try:
        missing, unexpected = policy.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise UserError(f"--checkpoint: {path!r} does not fit the policy ({detail})") from None
    if missing or unexpected:
        raise UserError(f"--checkpoint: {path!r} does not fit the policy (missing {missing}, unexpected {unexpected})")


def estimate(policy: Policy, rollouts: Rollouts, cfg: Config, mode: str, task: Task) -> Tensor:
    """One batch's gradient estimate g (P,) in the units of grad J (ascent direction)."""
    algo = dataclasses.replace(cfg.algo, loss="naive", aggregation="seq-mean-token-sum", kl_coef=0.0,
                               deltas="raw" if mode in OPTIMAL else mode)
    deltas = compute_deltas(rollouts.rewards, algo.deltas, eps=algo.norm_eps, unbiased_std=algo.unbiased_std,
                            settings=settings_of(DELTAS, algo.deltas, algo))
    fields = {"rollouts": rollouts, "deltas": deltas, "ref_logprobs": None,
              "advantages": deltas.reshape(-1, 1).expand_as(rollouts.mask) * rollouts.mask}
    if "loss_mask" in Batch.__dataclass_fields__:  # the Batch of issue 4 (main) names the tokens the loss sees
        fields["loss_mask"] = rollouts.mask
    batch = Batch(**fields)

    def loss_of(b: Batch) -> Tensor:
        return compute_loss(policy, b, algo, temperature=cfg.train.temperature, aggregation_constant=1.0,
                            entropy_coef=0.0)[0]

    policy.zero_grad(set_to_none=True)
    loss_of(batch).backward()
    if mode in OPTIMAL:  # the trainer's own hook subtracts b* (.) grad(unit advantages)
        PARAM_BASELINES.get(mode)(dataclasses.replace(cfg, algo=algo), task)(policy, batch, loss_of)
    return -torch.cat([p.grad.reshape(-1) for p in policy.parameters() if p.requires_grad]).double()


def summarize(draws: Tensor, exact: Tensor | None) -> dict[str, float | None]:
    """draws (R, P) of one mode -> its variance, agreement, and (with the exact gradient) bias."""
    mean = draws.mean(0)
    trace = float(draws.var(0, correction=1).sum())
    cos_full = torch.nn.functional.cosine_similarity(draws, mean.unsqueeze(0), dim=1).mean()
    row: dict[str, float | None] = {"trace_cov": trace, "cos_batch_full": float(cos_full),
                                    "cos_mean_exact": None, "norm_ratio": None, "rel_bias": None, "rel_mc_noise": None}
    if exact is not None and exact.norm() > 0:
        row.update(cos_mean_exact=float(torch.nn.functional.cosine_similarity(mean, exact, dim=0)),
                   norm_ratio=float(mean.norm() / exact.norm()),
                   rel_bias=float((mean - exact).norm() / exact.norm()),
                   rel_mc_noise=float((trace / draws.shape[0]) ** 0.5 / exact.norm()))
    return row


def exact_or_none(policy: Policy, task: Task, prompts: list[Prompt], temperature: float) -> Tensor | None:
    try:
        return exact_gradient(policy_problem(policy, task, prompts, temperature=temperature))
    except ConfigError:
        return None


@dataclasses.dataclass
class TaskVariance:
    """What ``measure`` found: a row per delta mode (``summarize``'s columns), the batch of prompts,
    and whether grad J was known exactly (by enumeration: then the bias columns are filled)."""

    rows: list[dict[str, Any]]
    prompts: list[Prompt]
    exact: bool


def measure(cfg: Config, *, repeats: int, modes: list[str] | None = None, checkpoint: str | None = None,
            progress: Callable[[int], None] | None = None) -> TaskVariance:
    """R = ``repeats`` rollouts of one batch at the config's policy (or ``checkpoint``), each mode's
    gradient estimate on every one; ``modes`` default to every delta mode (+ the optimal baselines
    when grad J is exact). ``progress(r)`` is called after the r-th rollout."""
    seed_everything(cfg.seed)
    task = build_task(cfg.task)
    policy = build_policy(cfg.policy, task).double()
    if checkpoint:
        load_checkpoint(policy, checkpoint)
    prompts = PromptSource(task, cfg.seed).next_batch(cfg.train.prompts_per_step)
    exact = exact_or_none(policy, task, prompts, cfg.train.temperature)
    if modes is None:  # a mode normalising each reward source (gdpo) has the task's one reward here
        modes = [m for m in DELTAS.names() if not DELTAS.meta(m).get("needs_sources")]
        modes += list(OPTIMAL) if exact is not None else []
    for mode in modes:
        if mode not in OPTIMAL and DELTAS.meta(mode).get("needs_sources"):
            raise UserError(f"--modes: {mode!r} normalises each reward source on its own; rlvr variance task "
                            "measures the task's reward alone")
    generator = torch.Generator().manual_seed(cfg.seed)
    draws: dict[str, list[Tensor]] = {m: [] for m in modes}
    for r in range(repeats):
        rollouts = generate(policy, task, prompts, group_size=cfg.train.group_size, generator=generator,
                            temperature=cfg.train.temperature)
        for mode in modes:
            draws[mode].append(estimate(policy, rollouts, cfg, mode, task))
        if progress is not None:
            progress(r + 1)
    rows: list[dict[str, Any]] = [{"mode": m, **summarize(torch.stack(draws[m]), exact)} for m in modes]
    return TaskVariance(rows, prompts, exact is not None)
