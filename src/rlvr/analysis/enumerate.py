"""A policy over an enumerable response space as a finite problem (see ``rlvr.analysis.exact``).

For the toy policy every response has T tokens from a vocabulary of V, so there are A = V**T of
them; with S prompts the scores (S, A, P) take one batched backward pass (``is_grads_batched``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from rlvr.algorithms.logprobs import sequence_logprob
from rlvr.analysis.exact import FiniteProblem
from rlvr.errors import ConfigError
from rlvr.policies import Policy
from rlvr.tasks import Prompt, Task

MAX_RESPONSES = 4096


def all_responses(task: Task) -> Tensor:
    """Every response of the task's fixed length (V**T, T); refuses spaces too large to enumerate."""
    count = task.vocab_size ** task.response_length
    if count > MAX_RESPONSES:
        raise ConfigError(f"task: {task.vocab_size}**{task.response_length} = {count} responses are too many "
                          f"to enumerate (at most {MAX_RESPONSES}); exact computations need a smaller task")
    return torch.tensor(list(itertools.product(range(task.vocab_size), repeat=task.response_length)))


def response_logprobs(policy: Policy, prompts: Sequence[Prompt], responses: Tensor, *,
                      temperature: float = 1.0) -> Tensor:
    """log pi(y | x) for every prompt and every response (S, A), with gradient."""
    num_prompts, num_responses = len(prompts), responses.shape[0]
    response_ids = responses.repeat(num_prompts, 1)                            # (S*A, T)
    mask = torch.ones(response_ids.shape, dtype=next(policy.parameters()).dtype)
    logp, _ = policy.logprobs(policy.encode_prompts(prompts), response_ids, mask, group_size=num_responses,
                              temperature=temperature)
    return sequence_logprob(logp, mask).reshape(num_prompts, num_responses)


def policy_problem(policy: Policy, task: Task, prompts: Sequence[Prompt], *,
                   temperature: float = 1.0) -> FiniteProblem:
    """Probabilities, rewards and exact scores of every response to every prompt."""
    if getattr(policy, "response_length", None) != task.response_length or not hasattr(policy, "vocab_size"):
        raise ConfigError("policy.kind: exact enumeration needs a fixed-length policy such as 'toy'")
    responses = all_responses(task)
    logp = response_logprobs(policy, prompts, responses, temperature=temperature)   # (S, A)
    params = [p for p in policy.parameters() if p.requires_grad]
    flat = logp.reshape(-1)
    eye = torch.eye(flat.numel(), dtype=flat.dtype)
    grads = torch.autograd.grad(flat, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    scores = torch.cat([(g if g is not None else torch.zeros(flat.numel(), *p.shape, dtype=flat.dtype))
                        .reshape(flat.numel(), -1) for g, p in zip(grads, params, strict=True)], dim=1)
    rewards = torch.tensor([[task.reward(prompt, r) for r in responses.tolist()] for prompt in prompts],
                           dtype=flat.dtype)
    return FiniteProblem(probs=logp.detach().exp(), rewards=rewards,
                         scores=scores.reshape(*logp.shape, -1).detach())
