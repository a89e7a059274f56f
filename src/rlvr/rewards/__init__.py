"""Rewards: everything between a response and the number the trainer learns from.

- ``runner.py``   ``RewardRunner``: user reward code run safely (fallback value, timeouts, NaN and
                  exceptions counted, worker processes, a failure-rate stop); every call goes through it.
- ``sources.py``  ``build_rewards``: the task's verifier, or weighted reward sources (``rewards.sources``:
                  verifier, format, a learned reward model, user functions) combined into one runner.
- ``model.py``    Bradley-Terry reward models trained on preference pairs (``rlvr rm train``).
(The ``rlvr rm`` command is ``rlvr/cli/rewards.py``.)
Reward *shaping* (length, KL in the reward) is math, in ``rlvr.algorithms`` (shaping.py, kl.py).
"""

from rlvr.rewards.runner import RewardRunner, check_value

__all__ = ["RewardRunner", "check_value"]
