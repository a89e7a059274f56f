"""The notes' two-state example: why a baseline matters, computed exactly and trained 100 times.

    state s1: a1 -> 11, a2 -> 9        (an "easy" state: every action pays a lot)
    state s2: a1 -> 0,  a2 -> 2        (a "hard" state: small rewards)
The global optimum picks a1 in s1 and a2 in s2. The policy is a softmax per state, theta (S, A)
with pi(a | s) = softmax(theta[s])[a]; its score is d log pi(a|s) / d theta[s', a'] =
1[s = s'] (1[a = a'] - pi(a'|s)). Without a baseline every sampled action in s1 is pushed up by a
large reward, so whichever action s1 happens to sample early is amplified (the notes' failure:
myopic, high-variance updates can eliminate the global optimum); subtracting E[R | s] centers the
rewards to +-1 and the sign of each update is right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.analysis.exact import BASELINES, FiniteProblem, estimates, exact_gradient, exact_moments

REWARDS = torch.tensor([[11.0, 9.0], [0.0, 2.0]], dtype=torch.double)  # (S, A)
OPTIMAL_ACTIONS = torch.tensor([0, 1])                                   # a1 in s1, a2 in s2
STATE_NAMES, ACTION_NAMES = ["s1", "s2"], ["a1", "a2"]
METHODS = ["none", "constant", "value", "optimal", "group-mean", "rloo"]


@dataclass
class TrainSetup:
    """How the 100 training runs are made (the failure of naive updates depends on these)."""

    lr: float = 0.5             # plain SGD on theta
    group_size: int = 2         # G actions sampled per state per step
    steps: int = 300
    seeds: int = 100
    init_logit_gap: float = 0.0  # theta[s, a1] - theta[s, a2] at the start (0: uniform policy)
    constant: float = 5.5       # the constant baseline: the mean reward of the uniform policy
    success: float = 0.9        # converged: pi(optimal action | s) > success in every state


def notes_table(rewards: Tensor = REWARDS) -> list[dict[str, object]]:
    """The notes' table: raw rewards, and rewards minus the per-state mean under the uniform policy."""
    baseline = rewards.mean(-1, keepdim=True)
    centered = rewards - baseline
    rows: list[dict[str, object]] = []
    for s, name in enumerate(STATE_NAMES):
        for a, action in enumerate(ACTION_NAMES):
            rows.append({"state": name, "action": action, "reward": float(rewards[s, a]),
                         "baseline": float(baseline[s, 0]), "centered": float(centered[s, a])})
    return rows


def spread(values: Tensor) -> dict[str, float]:
    """Range and variance (uniform over the four state-action pairs) of a reward table."""
    return {"min": float(values.min()), "max": float(values.max()), "variance": float(values.var(correction=0))}


def softmax_problem(theta: Tensor, rewards: Tensor = REWARDS) -> FiniteProblem:
    """theta (S, A) -> the finite problem with the tabular softmax's exact scores (S, A, S*A)."""
    num_states, num_actions = theta.shape
    probs = torch.softmax(theta, dim=-1)
    eye_a = torch.eye(num_actions, dtype=theta.dtype)
    within = eye_a.unsqueeze(0) - probs.unsqueeze(1)                       # (S, A, A'): 1[a=a'] - pi(a'|s)
    eye_s = torch.eye(num_states, dtype=theta.dtype)
    scores = (eye_s.reshape(num_states, 1, num_states, 1) * within.unsqueeze(2))  # (S, A, S, A')
    return FiniteProblem(probs=probs, rewards=rewards, scores=scores.reshape(num_states, num_actions, -1))


def variance_table(theta: Tensor, *, group_size: int, constant: float) -> list[dict[str, float | str]]:
    """Exact E[g] and tr Cov[g] of every baseline at one policy, with G actions per state."""
    problem = softmax_problem(theta)
    true_grad = exact_gradient(problem)
    rows: list[dict[str, float | str]] = []
    for name in METHODS:
        m = exact_moments(problem, name, group_size=group_size, constant=constant)
        rows.append({"baseline": name, "trace_cov": m.trace,
                     "bias_norm": float((m.mean - true_grad).norm()),
                     "mean_over_true": float(m.mean @ true_grad / true_grad.square().sum())})
    return rows


def step_direction(baseline: str, constant: float) -> Callable[[Tensor, Tensor], Tensor]:
    """(theta (S, A), groups (S, 1, G)) -> one gradient estimate (S, A); vmapped over seeds."""
    fn = BASELINES.get(baseline)

    def direction(theta: Tensor, groups: Tensor) -> Tensor:
        g = estimates(softmax_problem(theta), groups, fn, constant=constant)  # (S, 1, P)
        return g.mean((0, 1)).reshape(theta.shape)

    return torch.vmap(direction)


def train_runs(baseline: str, setup: TrainSetup) -> Tensor:
    """SGD ascent with sampled estimates from ``setup.seeds`` seeds at once.

    Returns pi(optimal action | s) over training: (steps + 1, seeds, S)."""
    generator = torch.Generator().manual_seed(0)
    num_states, num_actions = REWARDS.shape
    theta = torch.zeros(setup.seeds, num_states, num_actions, dtype=torch.double)
    theta[..., 0] = setup.init_logit_gap
    direction = step_direction(baseline, setup.constant)
    history = [optimal_probs(theta)]
    for _ in range(setup.steps):
        probs = torch.softmax(theta, dim=-1).reshape(-1, num_actions)
        draws = torch.multinomial(probs, setup.group_size, replacement=True, generator=generator)
        groups = draws.reshape(setup.seeds, num_states, 1, setup.group_size)
        theta = theta + setup.lr * direction(theta, groups)
        history.append(optimal_probs(theta))
    return torch.stack(history)


def optimal_probs(theta: Tensor) -> Tensor:
    """theta (K, S, A) -> pi(optimal action | s) (K, S)."""
    probs = torch.softmax(theta, dim=-1)
    return probs.gather(-1, OPTIMAL_ACTIONS.reshape(1, -1, 1).expand(theta.shape[0], -1, 1)).squeeze(-1)


def outcome(history: Tensor, success: float) -> dict[str, float]:
    """Share of seeds at the global optimum, and stuck on a2 in s1 (the amplified 9), at the end."""
    final = history[-1]                                   # (K, S)
    return {"converged": float((final > success).all(-1).double().mean()),
            "s1_stuck_on_a2": float((final[:, 0] < 1 - success).double().mean()),
            "s2_stuck_on_a1": float((final[:, 1] < 1 - success).double().mean())}


def variance_sweep(setup: TrainSetup, points: int = 41) -> dict[str, object]:
    """tr Cov[g] of every baseline for policies with pi(a1 | s) = p in both states."""
    ps = torch.linspace(0.02, 0.98, points, dtype=torch.double)
    traces: dict[str, list[float]] = {name: [] for name in METHODS}
    for p in ps:
        gap = torch.log(p / (1 - p))
        theta = torch.stack([gap, torch.zeros_like(gap)]).expand(2, 2).clone()
        for row in variance_table(theta, group_size=setup.group_size, constant=setup.constant):
            traces[str(row["baseline"])].append(float(row["trace_cov"]))
    return {"p": ps.tolist(), "traces": traces}


def training_study(setup: TrainSetup) -> tuple[list[dict[str, float | str]], dict[str, object]]:
    """Train every method from ``setup.seeds`` seeds; outcomes and convergence curves."""
    rows: list[dict[str, float | str]] = []
    converged: dict[str, list[float]] = {}
    for name in METHODS:
        history = train_runs(name, setup)                                   # (steps+1, K, S)
        rows.append({"baseline": name, **outcome(history, setup.success)})
        converged[name] = (history > setup.success).all(-1).double().mean(-1).tolist()
    return rows, {"steps": list(range(setup.steps + 1)), "converged": converged}
