"""What the training loop itself carries from one outer step to the next: ``TrainState``.

Everything else a checkpoint holds is a component's own ``state_dict`` (policy, reference,
optimizer, prompt stream, rollout backend, reward runner) plus the RNG states; ``Trainer.state_dict``
lists them all in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """What the loop carries from one outer step to the next besides the modules, the optimizer, the
    prompt stream, the RNGs, the rollout backend and the reward runner (each has its own state_dict).
    A checkpoint holds exactly these fields, and resuming restores exactly them."""

    kl_coef: float                                      # beta; moves each step when algo.kl_target is set
    nonfinite_streak: int = 0                           # non-finite losses or gradients in a row
    history: list[dict[str, Any]] = field(default_factory=list)  # the metric rows so far (step 0 first)
    sft_final: dict[str, float] = field(default_factory=dict)    # the SFT warm start's last metrics
    wall_seconds: float = 0.0                           # wall time of the sessions before this one
    optimizer_steps: int = 0                            # inner steps so far: the learning rate's position


def legacy_train_state(state: dict[str, Any]) -> TrainState:
    """The TrainState of a checkpoint written before it existed (its fields stood loose in the state)."""
    scalars = state["scalars"]
    return TrainState(kl_coef=scalars["kl_coef"], nonfinite_streak=scalars["nonfinite_streak"],
                      history=state["history"], sft_final=state["sft_final"], wall_seconds=state["wall_seconds"])
