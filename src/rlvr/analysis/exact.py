"""Exact moments of the score-function gradient estimator on a finite problem, by enumeration.

A finite problem is a handful of states (prompts) s = 1..S, each with A actions (responses):
    probs (S, A)      pi(a | s)
    rewards (S, A)    R(s, a)
    scores (S, A, P)  d log pi(a | s) / d theta, the score of each action for P parameters
Every batch holds every state (like a fixed prompt list) with G actions sampled per state, and the
gradient estimate is (the notes' unified-delta form, with a baseline b that may be per parameter)
    g = 1/S sum_s 1/G sum_i (R(s, a_i) - b_i) * score(s, a_i)                               (P,)
Its mean and per-parameter variance are computed exactly by enumerating all A**G groups of each
state with their probabilities, or estimated from sampled groups; the same code does both.

Baselines (the notes' section "Baselines for variance reduction"), each a function
    (problem, group_rewards (S, M, G), constant) -> b broadcastable to (S, M, G, P):
none, constant c, value V(s) = E[R | s], the variance-optimal per-parameter constant
    b*_k = E[(d_k log pi)^2 R] / E[(d_k log pi)^2]             (expectation over s and a)
the same closed form within each state, b*_{s,k} (optimal among baselines that depend on the state
and the parameter, so never worse than V(s) nor b*_k), and the group baselines of GRPO (mean of the group, including the sample) and RLOO (mean of the
others). A baseline that uses the sampled action's own reward biases the gradient (tests show it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.errors import UserError
from rlvr.registry import Registry


@dataclass
class FiniteProblem:
    probs: Tensor    # (S, A)
    rewards: Tensor  # (S, A)
    scores: Tensor   # (S, A, P)


@dataclass
class Moments:
    mean: Tensor      # (P,) E[g]
    variance: Tensor  # (P,) Var[g_k]

    @property
    def trace(self) -> float:
        """tr Cov[g]: the expected squared distance of an estimate from its mean."""
        return float(self.variance.sum())


Baseline = Callable[..., Tensor]
BASELINES: Registry[Baseline] = Registry("baseline")


@BASELINES.register("none")
def no_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b = 0: the naive policy gradient (reward-weighted SFT)."""
    return torch.zeros(1, 1, 1, 1, dtype=group_rewards.dtype)


@BASELINES.register("constant")
def constant_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b = c, the same number for every state and action."""
    return torch.full((1, 1, 1, 1), constant, dtype=group_rewards.dtype)


@BASELINES.register("value")
def value_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b(s) = V(s) = sum_a pi(a|s) R(s, a): the per-state mean reward (the notes' practical choice)."""
    return (problem.probs * problem.rewards).sum(-1).reshape(-1, 1, 1, 1)


@BASELINES.register("optimal")
def optimal_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b*_k = E[(d_k log pi)^2 R] / E[(d_k log pi)^2], one constant per parameter (shape (1,1,1,P))."""
    return optimal_baseline_vector(problem).reshape(1, 1, 1, -1)


@BASELINES.register("optimal-per-state")
def optimal_per_state_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b*_{s,k} = E[(d_k log pi)^2 R | s] / E[(d_k log pi)^2 | s]: the same closed form within each
    state, so no worse than either the value baseline or the pooled b*_k (shape (S,1,1,P))."""
    return optimal_baseline_vector(problem, per_state=True).unsqueeze(1).unsqueeze(1)


@BASELINES.register("group-mean")
def group_mean_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b_i = mean_j R_j over the group, R_i included (GRPO's centering): E[g] = (G-1)/G grad J."""
    return group_rewards.mean(-1, keepdim=True).unsqueeze(-1)


@BASELINES.register("rloo")
def rloo_baseline(problem: FiniteProblem, group_rewards: Tensor, *, constant: float) -> Tensor:
    """b_i = mean_{j != i} R_j (leave-one-out): unbiased, needs G >= 2."""
    group_size = group_rewards.shape[-1]
    if group_size < 2:
        raise UserError("the rloo baseline needs a group size of at least 2")
    others = (group_rewards.sum(-1, keepdim=True) - group_rewards) / (group_size - 1)
    return others.unsqueeze(-1)


def optimal_baseline_vector(problem: FiniteProblem, *, per_state: bool = False) -> Tensor:
    """b*_k (P,) over states weighted uniformly, or b*_{s,k} (S, P) within each state with
    ``per_state``; 0 where a parameter's score is always 0."""
    weight = problem.probs.unsqueeze(-1) * problem.scores.square()          # (S, A, P)
    dims = (1,) if per_state else (0, 1)
    numerator = (weight * problem.rewards.unsqueeze(-1)).sum(dims)
    denominator = weight.sum(dims)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))


def exact_gradient(problem: FiniteProblem) -> Tensor:
    """grad J (P,), J = 1/S sum_s sum_a pi(a|s) R(s, a), by the log-derivative identity."""
    weighted = (problem.probs * problem.rewards).unsqueeze(-1) * problem.scores
    return weighted.sum((0, 1)) / problem.probs.shape[0]


def estimates(problem: FiniteProblem, groups: Tensor, baseline: Baseline, *, constant: float = 0.0) -> Tensor:
    """groups (S, M, G) action ids -> the M gradient estimates of each state (S, M, P).

    Each is 1/G sum_i (R_i - b_i) score_i for one state's group; g averages them over states."""
    states = torch.arange(groups.shape[0]).reshape(-1, 1, 1)
    group_rewards = problem.rewards[states, groups]                          # (S, M, G)
    group_scores = problem.scores[states, groups]                            # (S, M, G, P)
    b = baseline(problem, group_rewards, constant=constant)
    return ((group_rewards.unsqueeze(-1) - b) * group_scores).mean(2)


def moments(problem: FiniteProblem, groups: Tensor, weights: Tensor, baseline: Baseline, *,
            constant: float = 0.0) -> Moments:
    """Mean and variance of g from weighted groups (S, M, G), weights (S, M) summing to 1 per state.

    States are independent, so Var[g] = 1/S^2 sum_s Var[estimate of state s]."""
    per_state = estimates(problem, groups, baseline, constant=constant)      # (S, M, P)
    mean_s = (weights.unsqueeze(-1) * per_state).sum(1)                      # (S, P)
    var_s = (weights.unsqueeze(-1) * (per_state - mean_s.unsqueeze(1)).square()).sum(1)
    num_states = problem.probs.shape[0]
    return Moments(mean=mean_s.mean(0), variance=var_s.sum(0) / num_states**2)


def all_groups(num_actions: int, group_size: int) -> Tensor:
    """Every ordered group of G actions (A**G, G)."""
    return torch.tensor(list(itertools.product(range(num_actions), repeat=group_size)), dtype=torch.long)


def exact_moments(problem: FiniteProblem, baseline: str | Baseline, *, group_size: int,
                  constant: float = 0.0) -> Moments:
    """E[g] and Var[g] exactly, by enumerating the A**G groups of every state."""
    fn = BASELINES.get(baseline) if isinstance(baseline, str) else baseline
    num_states, num_actions = problem.probs.shape
    groups = all_groups(num_actions, group_size).expand(num_states, -1, -1)   # (S, A**G, G)
    weights = problem.probs[torch.arange(num_states).reshape(-1, 1, 1), groups].prod(-1)
    return moments(problem, groups, weights, fn, constant=constant)


def monte_carlo_moments(problem: FiniteProblem, baseline: str | Baseline, *, group_size: int,
                        num_groups: int, generator: torch.Generator, constant: float = 0.0) -> Moments:
    """The same moments estimated from ``num_groups`` sampled groups per state."""
    fn = BASELINES.get(baseline) if isinstance(baseline, str) else baseline
    num_states = problem.probs.shape[0]
    draws = torch.multinomial(problem.probs, num_groups * group_size, replacement=True, generator=generator)
    groups = draws.reshape(num_states, num_groups, group_size)
    weights = torch.full((num_states, num_groups), 1.0 / num_groups, dtype=problem.probs.dtype)
    return moments(problem, groups, weights, fn, constant=constant)
