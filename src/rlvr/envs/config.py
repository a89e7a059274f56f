"""``env``: which environment plays a multi-turn run's rows, the episode limits, and the guard's limits.

Owned here, next to the code it configures (rlvr.multiturn, rlvr.envs.guard); ``rlvr.config``
composes it into the run's Config.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlvr.options import opt


@dataclass
class EnvConfig:
    factory: str = opt("", "module.path:make_env, make_env(row) -> Env, for a task whose rows an env plays "
                       "(empty: the task's own env, when it is played as episodes)")
    max_turns: int = opt(8, "policy turns per episode; an episode still going after them is truncated", ge=1)
    max_tokens: int = opt(0, "tokens per episode after its first observation, policy and env turns together "
                          "(0: max_turns * (policy.max_new_tokens + 16))", ge=0)
    timeout: float = opt(10.0, "seconds one env call (reset, step) may run before its episode ends with the "
                         "fallback reward", gt=0.0)
    fallback_reward: float = opt(0.0, "return of an episode whose env raised, hung or returned garbage")
    max_failure_rate: float = opt(0.1, "stop the run (with a checkpoint) once more than this share of all "
                                  "episodes so far has faulted", ge=0.0, le=1.0)
    workers: int = opt(0, "env worker processes (0: envs run in the training process; >0: each episode's "
                       "env in one of them, a hung worker killed and replaced)", ge=0)
