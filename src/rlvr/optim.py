"""The optimizer and its learning-rate schedule.

The learning rate of optimizer step s (0-based; one step per inner step, S = outer_steps * inner_steps
in all, a step skipped for a non-finite gradient included) is lr * multiplier(s):

    warmup      (s + 1) / W                                           for s < W = optim.warmup_steps
    constant    1
    linear      m + (1 - m) (1 - p)                   p = (s - W) / (S - W), m = optim.min_lr_ratio
    cosine      m + (1 - m) (1 + cos(pi p)) / 2

so a decaying schedule reaches m * lr when training ends (p = 1 at s = S). The step count lives in
the trainer's ``TrainState`` (checkpointed: a resumed run continues the schedule exactly).

``optim.reset_every`` clears the optimizer's own state now and then (``reset_optimizer``); the
schedule above keeps counting s.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rlvr.algorithms import schedule_value
from rlvr.config import OptimConfig


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    # fused: one kernel per parameter for the whole update, where the loop issues ~10 small ops each
    # (it writes the weights without bumping their version counters: nothing may cache on those)
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, fused=True)


def lr_multiplier(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total``, as a fraction of optim.lr."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * schedule_value(schedule, progress)


def has_schedule(cfg: OptimConfig) -> bool:
    """Whether the learning rate changes during training (then the metrics log it as optim/lr)."""
    return cfg.warmup_steps > 0 or cfg.lr_schedule != "constant"


def set_lr(optimizer: torch.optim.Optimizer, cfg: OptimConfig, step: int, *, total: int) -> float:
    """Set every parameter group's learning rate for optimizer step ``step``; returns it."""
    lr = cfg.lr * lr_multiplier(step, total=total, warmup=cfg.warmup_steps, schedule=cfg.lr_schedule,
                                min_ratio=cfg.min_lr_ratio)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Forget the optimizer's per-parameter state: Adam's moments m, v and its step count t (plain SGD
    keeps none). The next update is then a fresh optimizer's first: for Adam, with
    m_1 = (1 - b1) g and v_1 = (1 - b2) g^2 bias-corrected back to g and g^2,

        theta <- theta - lr * g / (|g| + eps)          (|delta theta| = lr wherever |g| >> eps)

    (AdamW also decays theta by lr * weight_decay first). The learning rate is not part of it: the
    trainer sets it every step from the global step count. ProRL (Liu et al. 2025, "ProRL: Prolonged
    Reinforcement Learning Expands Reasoning Boundaries in Large Language Models", arXiv:2505.24864)
    re-initialises the optimizer with each hard reset of the reference policy."""
    optimizer.state.clear()
