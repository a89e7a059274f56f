"""Evaluation numbers pinned by hand and by brute force (issue 15).

pass@k is checked against the definition itself: draw k of the n samples without replacement,
every k-subset equally likely; pass@k is the share of subsets that hold at least one correct
sample. ``evaluate`` is checked on a scripted policy whose greedy and sampled responses are fixed
(every metric worked out below), and on the real toy policy's samples against the brute force.
"""

import itertools
from fractions import Fraction

import pytest
import torch

from rlvr.evaluation import evaluate, pass_at_k
from rlvr.policies.base import Samples, response_lists
from rlvr.policies.toy import ToyPolicy
from rlvr.tasks.sorting import SortTask


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> Fraction:
    """Share of the k-subsets of the samples that contain a correct one (exact)."""
    subsets = list(itertools.combinations(range(len(outcomes)), k))
    return Fraction(sum(any(outcomes[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("num_samples", range(1, 9))
def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample(num_samples):
    """Every (c, k) with 0 <= c <= n, 1 <= k <= n: includes c = 0, c = n and n - c < k."""
    for num_correct in range(num_samples + 1):
        outcomes = [True] * num_correct + [False] * (num_samples - num_correct)
        for k in range(1, num_samples + 1):
            exact = brute_force_pass_at_k(outcomes, k)
            assert abs(pass_at_k(num_samples, num_correct, k) - float(exact)) < 1e-12, (num_samples, num_correct, k)


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 2, 0.7),      # 1 - C(3,2)/C(5,2) = 1 - 3/10   (1 - (1 - 2/5)^2 = 0.64 would be the with-replacement guess)
    (5, 2, 3, 0.9),      # n - c = k: 1 - C(3,3)/C(5,3) = 1 - 1/10 (not 1)
    (5, 3, 3, 1.0),      # n - c = 2 < k = 3: every 3-subset holds a correct sample
    (5, 0, 3, 0.0),      # c = 0: never
    (5, 5, 1, 1.0),      # c = n: always
    (4, 1, 1, 0.25),     # k = 1: c / n
    (10, 1, 5, 0.5),     # 1 - C(9,5)/C(10,5) = 1 - 126/252
    (10, 3, 4, 5 / 6),   # 1 - C(7,4)/C(10,4) = 1 - 35/210
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 0, 5), (3, 3, 4), (4, 5, 2), (4, -1, 2), (4, 1, 0)])
def test_pass_at_k_refuses_impossible_arguments(n, c, k):
    """k > n has no k-subsets (it used to return 1.0 even with no correct sample), c outside 0..n
    and k < 1 mean nothing."""
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(n, c, k)


class ScriptedPolicy:
    """A policy whose greedy responses and samples are given: evaluate's bookkeeping by hand."""

    def __init__(self, greedy: list[list[int]], samples: list[list[int]]) -> None:
        self._greedy, self._samples = torch.tensor(greedy), torch.tensor(samples)
        self.calls: list[tuple[int, float]] = []

    def encode_prompts(self, prompts):
        return torch.tensor([list(p) for p in prompts])

    def decode_responses(self, response_ids, mask):
        return response_lists(response_ids, mask)

    def greedy(self, prompt_ids):
        return self._greedy, torch.ones(self._greedy.shape)

    def sample(self, prompt_ids, group_size, *, generator, temperature=1.0):
        self.calls.append((group_size, temperature))
        return Samples(response_ids=self._samples, mask=torch.ones(self._samples.shape),
                       logprobs=torch.zeros(self._samples.shape))


def sort_task(prompts, reward="position-match"):
    return SortTask(length=2, vocab_size=3, reward=reward, fixed_prompts=prompts, eval_fraction=0.0,
                    num_eval_prompts=len(prompts), split_seed=0)


def test_evaluate_on_scripted_responses_gives_the_hand_computed_metrics():
    # prompts (2,0) (1,1) (0,1); solutions (0,2) (1,1) (0,1); reward = positions matching the solution
    task = sort_task([[2, 0], [1, 1], [0, 1]])
    greedy = [[0, 2],    # solved: reward 2
              [1, 0],    # first position only: reward 1
              [2, 2]]    # nothing: reward 0
    samples = [[0, 2], [0, 0], [2, 0], [0, 2],     # prompt 0: correct, -, -, correct  -> c = 2 of n = 4
               [0, 0], [1, 0], [0, 1], [2, 2],     # prompt 1: none correct            -> c = 0
               [0, 1], [0, 1], [1, 1], [0, 1]]     # prompt 2: 3 correct               -> c = 3
    policy = ScriptedPolicy(greedy, samples)
    out = evaluate(policy, task, pass_k=2, pass_samples=4, seed=0, temperature=0.7)
    # reward_mean (2 + 1 + 0) / 3 = 1; exact_match 1/3
    # pass@2: prompt 0: 1 - C(2,2)/C(4,2) = 5/6; prompt 1: 0; prompt 2: n - c = 1 < 2 -> 1; mean 11/18
    assert out["eval/reward_mean"] == pytest.approx(1.0, abs=1e-12)
    assert out["eval/exact_match"] == pytest.approx(1 / 3, abs=1e-12)
    assert out["eval/pass@2"] == pytest.approx(11 / 18, abs=1e-12)
    assert policy.calls == [(4, 0.7)]                  # n samples per prompt, at the asked temperature


def test_evaluate_pass_at_k_equals_brute_force_on_the_toy_policys_samples():
    """The toy policy's real samples (captured as evaluate draws them): eval/pass@k is the mean over
    prompts of the brute-force share of k-subsets with a correct sample."""
    torch.manual_seed(0)
    prompts = [[2, 0], [1, 1], [0, 1], [2, 1], [0, 0]]
    task = sort_task(prompts, reward="binary")
    policy = ToyPolicy(vocab_size=3, embedding_dim=4, prompt_length=2, response_length=2, init_scale=0.3)
    drawn: list[Samples] = []
    sample = policy.sample

    def capture(*args, **kwargs):
        drawn.append(sample(*args, **kwargs))
        return drawn[-1]

    policy.sample = capture
    n, k = 8, 3
    out = evaluate(policy, task, pass_k=k, pass_samples=n, seed=3)
    responses = response_lists(drawn[0].response_ids, drawn[0].mask)
    per_prompt = []
    for i, prompt in enumerate(prompts):
        outcomes = [task.is_correct(tuple(prompt), r) for r in responses[i * n:(i + 1) * n]]
        per_prompt.append(brute_force_pass_at_k(outcomes, k))
    assert out[f"eval/pass@{k}"] == pytest.approx(float(sum(per_prompt) / len(prompts)), abs=1e-12)
