"""The rollout backends by name (``distributed.backend``): ``build_rollout_backend`` is the one way in.

Each backend is a ``RolloutBackend`` (backend.py); Ray is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from rlvr.config import Config
from rlvr.distributed.backend import RolloutBackend
from rlvr.multiturn import EpisodeSampler
from rlvr.policies import Policy
from rlvr.registry import Registry
from rlvr.rewards import RewardRunner
from rlvr.rollout import PromptSource
from rlvr.tasks import Task

BACKENDS: Registry[Callable[..., RolloutBackend]] = Registry("rollout backend")


@BACKENDS.register("local")
def _local(cfg: Config, task: Task, policy: Policy, prompts: PromptSource,
           rewards: RewardRunner | None, episodes: EpisodeSampler | None) -> RolloutBackend:
    from rlvr.distributed.local import LocalRollouts
    return LocalRollouts(cfg, task, policy, prompts, rewards, episodes)


@BACKENDS.register("ray")
def _ray(cfg: Config, task: Task, policy: Policy, prompts: PromptSource,
         rewards: RewardRunner | None, episodes: EpisodeSampler | None) -> RolloutBackend:
    from rlvr.distributed.ray_rollouts import RayRollouts  # imports ray: only when asked for
    return RayRollouts(cfg, task, policy, prompts, rewards)  # each actor plays its episodes with envs of its own


def build_rollout_backend(cfg: Config, task: Task, policy: Policy, prompts: PromptSource, *,
                          rewards: RewardRunner | None = None,
                          episodes: EpisodeSampler | None = None) -> RolloutBackend:
    """The backend named by ``cfg.distributed.backend``. ``rewards`` guards the reward calls made in
    this process (Ray actors guard theirs with a runner of their own, built from ``cfg.rewards``)."""
    return BACKENDS.get(cfg.distributed.backend)(cfg, task, policy, prompts, rewards, episodes)
