"""The math layer: pure functions on tensors, found through registries.

Shapes, named once for the whole package:
    B  prompts in a batch            G  responses per prompt (group size)
    N  = B * G responses             T  response tokens (padded; a mask marks real ones)
    V  vocabulary size

Nothing here reads a config object, keeps state or calls ``.item()``: functions take tensors and
keyword-only hyper-parameters and return tensors (losses also return a dict of detached metrics).
"""

from rlvr.algorithms.adaptive import EXIT_RULES
from rlvr.algorithms.aggregation import AGGREGATIONS, aggregate
from rlvr.algorithms.correction import ROLLOUT_CORRECTIONS, correction_metrics, rollout_correction
from rlvr.algorithms.credit import CREDIT, token_advantages
from rlvr.algorithms.deltas import DELTAS, compute_deltas
from rlvr.algorithms.kl import (
    KL_ESTIMATORS,
    adaptive_kl_coef,
    kl_penalty,
    kl_shaped_rewards,
    token_kl,
)
from rlvr.algorithms.logprobs import token_entropy, token_logprobs
from rlvr.algorithms.losses import POLICY_LOSSES, policy_loss
from rlvr.algorithms.schedules import SCHEDULES, schedule_value

__all__ = [
    "AGGREGATIONS",
    "CREDIT",
    "DELTAS",
    "EXIT_RULES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "ROLLOUT_CORRECTIONS",
    "SCHEDULES",
    "adaptive_kl_coef",
    "aggregate",
    "compute_deltas",
    "correction_metrics",
    "kl_penalty",
    "kl_shaped_rewards",
    "policy_loss",
    "rollout_correction",
    "schedule_value",
    "token_advantages",
    "token_entropy",
    "token_kl",
    "token_logprobs",
]
