"""Research hooks: code that watches or corrects the training loop without living in it.

The trainer calls every hook at three points of an outer step and merges what they return into the
step's metrics row; it knows nothing of what they compute:

    before_inner(step, policy, batch, loss_of)  at the policy that sampled the batch, before the inner loop
    after_backward(policy, batch, loss_of)      after each inner step's backward pass; may correct .grad
    after_inner(step, policy, batch)            after the inner loop

``loss_of(batch)`` is the policy-gradient loss alone (no KL, no entropy). The built-in hooks (the
notes' per-parameter optimal baseline, the half-batch variance diagnostics) live in
``rlvr.analysis``; ``rlvr.analysis.hooks.build_hooks`` turns a config into the list, and ``Trainer(hooks=...)`` takes
any other list (``[]``: none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from rlvr.policies import Policy

LossOf = Callable[[Any], Tensor]  # batch -> the policy-gradient loss


class TrainerHook:
    """A hook does nothing unless it overrides a method; each returns metrics for the step's row."""

    def before_inner(self, step: int, policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, Any]:
        return {}

    def after_backward(self, policy: Policy, batch: Any, loss_of: LossOf) -> dict[str, Any]:
        return {}

    def after_inner(self, step: int, policy: Policy, batch: Any) -> dict[str, Any]:
        return {}
