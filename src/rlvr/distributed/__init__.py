"""Scaling out on existing engines: Ray actors for rollouts, torch.distributed (DDP) for the learner.

- ``backend.py``       the rollout seam the trainer calls (``rollouts(step)``, ``sync(policy)``)
- ``shards.py``        how a batch is cut into shards with their own sampling streams
- ``local.py``         shards sampled in this process (each rank's own shards under torchrun)
- ``ray_rollouts.py``  shards sampled by Ray actors that own copies of the policy; weights through
                       Ray's object store once per outer step; optional one-step-off-policy mode
- ``ddp.py``           the data-parallel learner under ``torchrun`` (gloo on CPU, NCCL on GPUs)
docs/scaling.md maps these onto a multi-node GPU cluster.
"""

from rlvr.distributed.backend import RolloutBackend
from rlvr.distributed.backends import BACKENDS, build_rollout_backend
from rlvr.distributed.launch import is_main_process, launched_by_torchrun, train

__all__ = ["BACKENDS", "RolloutBackend", "build_rollout_backend", "is_main_process",
           "launched_by_torchrun", "train"]
