"""Per-parameter baselines at training time: the notes' variance-optimal baseline as an estimator.

A per-parameter baseline is not a per-response delta: component k of the gradient uses its own
constant b_k,
    g_k = 1/N sum_n (R_n - b_k) d_k log pi(y_n)
        = [gradient with deltas R]_k - b_k [gradient with every delta 1]_k,
so the trainer computes the loss's gradient as usual (raw deltas) and the hook subtracts b (.) the
gradient of the same policy loss with unit advantages. Because b does not depend on the sampled
responses, the estimate stays unbiased (the score has mean zero).

``PARAM_BASELINES`` maps a name to a factory (config, task) -> hook; the trainer builds the hook
once and calls it after every backward pass, whatever the name.
    none            nothing subtracted
    optimal-exact   b*_k = E[(d_k log pi)^2 R] / E[(d_k log pi)^2] over the batch's prompts, computed
                    exactly by enumerating every response of the toy policy (``rlvr.analysis.enumerate``)
                    once per outer step, at the policy that sampled the batch
    optimal-exact-per-prompt   b*_{s,k}, the same closed form within each prompt (one extra
                    backward pass per prompt instead of one)
The correction is exact for the naive and ratio losses (linear in the advantages); for the clipped
loss it is the first-order one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rlvr.analysis.enumerate import all_responses, policy_problem
from rlvr.analysis.exact import optimal_baseline_vector
from rlvr.errors import ConfigError
from rlvr.registry import Registry

Config = Any  # the run's rlvr.config.Config (not imported: the config imports this registry)
if TYPE_CHECKING:
    from rlvr.policies import Policy
    from rlvr.tasks import Task

LossOf = Callable[[Any], Tensor]            # batch -> the policy-gradient loss (no KL, no entropy)
Hook = Callable[["Policy", Any, LossOf], dict[str, float]]
PARAM_BASELINES: Registry[Callable[[Config, Task], Hook]] = Registry("parameter baseline")


@PARAM_BASELINES.register("none")
def no_param_baseline(cfg: Config, task: Task) -> Hook:
    def hook(policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, float]:
        return {}
    return hook


@PARAM_BASELINES.register("optimal-exact")
def optimal_exact(cfg: Config, task: Task) -> Hook:
    """The notes' b*_k, one constant per parameter pooled over the batch's prompts."""
    return optimal_hook(cfg, task, per_prompt=False)


@PARAM_BASELINES.register("optimal-exact-per-prompt")
def optimal_exact_per_prompt(cfg: Config, task: Task) -> Hook:
    """b*_{s,k}: the same closed form within each prompt (never worse than the value baseline)."""
    return optimal_hook(cfg, task, per_prompt=True)


def optimal_hook(cfg: Config, task: Task, *, per_prompt: bool) -> Hook:
    if cfg.algo.deltas != "raw":
        raise ConfigError(f"algo.param_baseline: {cfg.algo.param_baseline!r} subtracts its own baseline from the "
                          f"raw rewards; set algo.deltas raw (got {cfg.algo.deltas!r})")
    all_responses(task)  # fails now, with the reason, when the response space is too large
    state: dict[str, Any] = {"rollouts": None}

    def hook(policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, float]:
        params = [p for p in policy.parameters() if p.requires_grad]
        if state["rollouts"] is not batch.rollouts.response_ids:  # new rollouts: b at the policy that sampled them
            problem = policy_problem(policy, task, batch.rollouts.prompts, temperature=cfg.train.temperature)
            b = optimal_baseline_vector(problem, per_state=per_prompt)
            state["b"], state["rollouts"] = b.reshape(-1, b.shape[-1]), batch.rollouts.response_ids  # (1 or S, P)
        for rows, b in zip(response_sets(batch, per_prompt), state["b"], strict=True):
            unit = dataclasses.replace(batch, advantages=batch.rollouts.mask * rows, ref_logprobs=None)
            unit_grads = torch.autograd.grad(loss_of(unit), params, allow_unused=True)
            for p, b_p, g in zip(params, split_like(b, params), unit_grads, strict=True):
                if g is not None and p.grad is not None:
                    p.grad.sub_(b_p * g)
        return {"algo/param_baseline_mean": float(state["b"].mean())}
    return hook


def response_sets(batch: Any, per_prompt: bool) -> Tensor:
    """(K, N, 1) indicators of the responses each baseline row applies to: all, or one prompt's."""
    r = batch.rollouts
    owner = torch.arange(r.mask.shape[0]) // r.group_size                       # (N,)
    if not per_prompt:
        return torch.ones(1, r.mask.shape[0], 1, dtype=r.mask.dtype)
    return (owner.unsqueeze(0) == torch.arange(len(r.prompts)).unsqueeze(1)).to(r.mask.dtype).unsqueeze(-1)


def split_like(flat: Tensor, params: list[Tensor]) -> list[Tensor]:
    """A flat (P,) vector -> one tensor per parameter, in ``policy.parameters()`` order."""
    out, start = [], 0
    for p in params:
        out.append(flat[start:start + p.numel()].reshape(p.shape).to(p.dtype))
        start += p.numel()
    return out


def build_param_baseline(cfg: Config, task: Task) -> Hook:
    return PARAM_BASELINES.get(cfg.algo.param_baseline)(cfg, task)
