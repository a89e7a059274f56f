"""The built-in research hooks (``rlvr.hooks``): the per-parameter optimal baseline and the live
variance diagnostics, each wrapping the functions of its module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlvr.analysis.diagnostics import gradient_agreement, importance_ess
from rlvr.analysis.param_baseline import build_param_baseline
from rlvr.hooks import LossOf, TrainerHook

if TYPE_CHECKING:
    from rlvr.config import Config
    from rlvr.policies import Policy
    from rlvr.tasks import Task


class ParamBaselineHook(TrainerHook):
    """``algo.param_baseline``: subtracts b (.) grad(unit-advantage loss) after every backward pass."""

    def __init__(self, cfg: Config, task: Task) -> None:
        self.correct = build_param_baseline(cfg, task)

    def after_backward(self, policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, Any]:
        return self.correct(policy, batch, loss_of)


class VarianceDiagnostics(TrainerHook):
    """Every ``every`` outer steps: half-batch gradient agreement before the inner loop (with the
    gradient correction the optimizer sees) and the importance-ratio ESS after it."""

    def __init__(self, *, every: int, temperature: float, correction: TrainerHook) -> None:
        self.every, self.temperature, self.correction = every, temperature, correction

    def before_inner(self, step: int, policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, Any]:
        if step % self.every:
            return {}
        return gradient_agreement(policy, batch, loss_of, self.correction.after_backward)

    def after_inner(self, step: int, policy: Policy, batch: Any) -> dict[str, Any]:
        if step % self.every:
            return {}
        return importance_ess(policy, batch, temperature=self.temperature)


def build_hooks(cfg: Config, task: Task, *, language_model: bool) -> list[TrainerHook]:
    """The config's research hooks: ``algo.param_baseline`` (when not ``none``) and the variance
    diagnostics every ``train.diagnostics_every`` steps (default: every step for the toy policy,
    never for a language model, where the half-batch gradients triple a step)."""
    hooks: list[TrainerHook] = []
    if cfg.algo.param_baseline != "none":
        hooks.append(ParamBaselineHook(cfg, task))
    every = cfg.train.diagnostics_every
    if every is None:
        every = 0 if language_model else 1
    if every:
        correction = hooks[0] if hooks else TrainerHook()
        hooks.append(VarianceDiagnostics(every=every, temperature=cfg.train.temperature, correction=correction))
    return hooks
