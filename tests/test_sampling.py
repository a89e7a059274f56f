"""Sampling-side variants on the real toy policy and sorting task: dynamic sampling, length
shaping and overlong filtering, per-token process credit."""

import pytest
import torch

from rlvr.algorithms import compute_deltas, token_advantages
from rlvr.algorithms.shaping import overlong_penalty
from rlvr.policies.toy import ToyPolicy
from rlvr.rollout import (
    dynamic_sample,
    generate,
    has_signal,
    length_penalty,
    select_prompts,
    token_reward_tensor,
)
from rlvr.tasks import SortTask
from test_gradient_unbiased import PROMPT, flat_grad


def sort_task(length=3, reward="binary"):
    return SortTask(length=length, vocab_size=5, reward=reward, fixed_prompts=None, eval_fraction=0.2,
                    num_eval_prompts=8, split_seed=0)


def drawer(task, policy, group_size, seed):
    rng = __import__("numpy").random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    calls = []
    def draw(count):
        prompts = [task.train_prompt(rng) for _ in range(count)]
        rollouts = generate(policy, task, prompts, group_size=group_size, generator=generator, temperature=1.0)
        calls.append(rollouts)
        return rollouts
    return draw, calls


@pytest.mark.parametrize("seed", range(4))
def test_dynamic_sampling_never_keeps_a_zero_variance_group_and_refills_to_the_batch_size(seed):
    torch.manual_seed(seed)
    task = sort_task(reward="position-match")
    # a peaked policy: most groups of 4 responses are 4 copies of one response, hence flat
    policy = ToyPolicy(vocab_size=5, embedding_dim=6, prompt_length=3, response_length=3, init_scale=4.0)
    draw, calls = drawer(task, policy, group_size=6, seed=seed)
    rollouts, first_rewards, stats = dynamic_sample(draw, 8, max_refills=30, enabled=True)
    all_groups = torch.cat([c.rewards for c in calls])
    assert (~has_signal(all_groups)).sum() >= 8
    assert has_signal(rollouts.rewards).all()
    assert len(rollouts.prompts) == 8 == rollouts.rewards.shape[0]
    assert rollouts.response_ids.shape == (48, 3) and rollouts.logprobs.shape == (48, 3)
    assert torch.equal(first_rewards, calls[0].rewards)
    assert stats["sampling/draws"] == len(calls) and stats["sampling/kept_groups"] == 8
    # the kept rows are the drawn rows, responses still aligned with their prompts' rewards
    for g, prompt in enumerate(rollouts.prompts):
        responses = rollouts.responses()[g * 6:(g + 1) * 6]
        assert [task.reward(prompt, r) for r in responses] == rollouts.rewards[g].tolist()


def test_dynamic_sampling_stops_after_max_refills_and_trains_on_what_remains():
    task = sort_task(length=3)
    torch.manual_seed(0)
    policy = ToyPolicy(vocab_size=5, embedding_dim=6, prompt_length=3, response_length=3, init_scale=2.0)
    draw, calls = drawer(task, policy, group_size=2, seed=0)
    rollouts, _, stats = dynamic_sample(draw, 6, max_refills=2, enabled=True)
    assert len(calls) == 3 == stats["sampling/draws"]
    survivors = int(sum(has_signal(c.rewards).sum() for c in calls))
    assert len(rollouts.prompts) == min(survivors, 6) < 6
    assert has_signal(rollouts.rewards).all()
    assert stats["sampling/dropped_groups"] == 18 - survivors
    disabled, _, stats = dynamic_sample(draw, 6, max_refills=2, enabled=False)
    assert len(disabled.prompts) == 6 and stats == {}


def test_overlong_penalty_follows_dapo_and_is_a_constant_shift_for_fixed_lengths():
    lengths = torch.tensor([4, 16, 17, 20, 20, 20])
    truncated = torch.tensor([False, False, False, False, False, True])
    penalty = overlong_penalty(lengths, truncated, max_length=20, buffer=4, factor=2.0)
    assert penalty.tolist() == pytest.approx([0.0, 0.0, -0.5, -2.0, -2.0, -2.0])
    assert overlong_penalty(lengths, truncated, max_length=20, buffer=0, factor=2.0).abs().sum() == 0
    # the toy's responses all have the full length: every group is shifted alike, the deltas do not move
    task = sort_task(reward="inclusion-adjacency")
    policy = ToyPolicy(vocab_size=5, embedding_dim=6, prompt_length=3, response_length=3)
    draw, _ = drawer(task, policy, group_size=5, seed=1)
    rollouts = draw(4)
    shift = length_penalty(rollouts, max_length=3, buffer_frac=0.5, factor=1.0)
    assert torch.equal(shift, torch.full_like(shift, shift[0, 0].item())) and shift[0, 0] != 0
    shaped = rollouts.rewards + shift
    assert torch.allclose(compute_deltas(shaped, "grpo"), compute_deltas(rollouts.rewards, "grpo"), atol=1e-5)
    # a sampler that reports truncation: those responses get the full penalty
    rollouts.truncated = torch.zeros(20, dtype=torch.bool)
    rollouts.truncated[[0, 7]] = True
    rollouts.mask[1:, 2] = 0  # everyone else shorter: inside the buffer, by one token
    shift = length_penalty(rollouts, max_length=3, buffer_frac=0.67, factor=1.0)
    assert shift.reshape(-1)[[0, 7]].tolist() == [-1.0, -1.0]
    assert torch.allclose(shift.reshape(-1)[[1, 2, 8]], torch.full((3,), -0.5))


def test_selected_groups_carry_their_truncation_flags():
    task = sort_task()
    policy = ToyPolicy(vocab_size=5, embedding_dim=6, prompt_length=3, response_length=3)
    draw, _ = drawer(task, policy, group_size=2, seed=2)
    rollouts = draw(3)
    rollouts.truncated = torch.tensor([False, False, True, False, False, True])
    picked = select_prompts(rollouts, [2, 1])
    assert picked.truncated.tolist() == [False, True, True, False]
    assert picked.prompts == [rollouts.prompts[2], rollouts.prompts[1]]


def test_process_credit_rewards_a_right_token_in_a_wrong_response():
    """Prompt (2, 0, 1), solution (0, 1, 2). The response (1, 0, 2) has one right position (the
    last), below the group mean: broadcast credit blames its right last token, per-token credit
    praises it."""
    task = sort_task(reward="position-match")
    prompt = (2, 0, 1)
    responses = torch.tensor([[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 0, 2]])
    rewards = torch.tensor([[task.reward(prompt, r.tolist()) for r in responses]])  # [[3, 1, 1, 1]]
    from rlvr.rollout import Rollouts
    rollouts = Rollouts(prompts=[prompt], prompt_ids=torch.tensor([prompt]), response_ids=responses,
                        mask=torch.ones(4, 3), logprobs=torch.zeros(4, 3), rewards=rewards, group_size=4)
    token_rewards = token_reward_tensor(task, rollouts)
    assert token_rewards.tolist() == [[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    deltas = compute_deltas(rewards, "centered")
    broadcast = token_advantages("outcome", deltas, token_rewards, rollouts.mask, mode="centered")
    process = token_advantages("process", deltas, token_rewards, rollouts.mask, mode="centered")
    assert broadcast[3, 2] < 0 < process[3, 2]
    assert not torch.allclose(broadcast, process)
    # per position, the group's credits still sum to zero (a baseline per position)
    assert torch.allclose(process.sum(0), torch.zeros(3), atol=1e-6)


def test_process_credit_is_unbiased_and_has_lower_variance_than_broadcast(tiny_toy):
    """Raw deltas, one response at a time, by enumerating all 9 responses of the tiny toy: both
    credit assignments have the exact gradient of E[position-match] as expectation; per-token
    reward-to-go has a smaller variance."""
    policy, responses = tiny_toy
    task = SortTask(length=2, vocab_size=3, reward="position-match", fixed_prompts=None,
                    eval_fraction=0.2, num_eval_prompts=2, split_seed=0)
    prompt = tuple(PROMPT[0].tolist())
    mask = torch.ones(9, 2, dtype=torch.double)
    def token_logp():
        return policy.logprobs(PROMPT, responses, mask, group_size=9)[0]                      # (9, 2)
    probs = token_logp().sum(-1).exp()
    token_rewards = torch.tensor([task.token_rewards(prompt, r.tolist()) for r in responses], dtype=torch.double)
    rewards = token_rewards.sum(-1)
    exact = flat_grad(policy, (probs * rewards).sum())
    estimates = {}
    for credit in ("outcome", "process"):
        adv = token_advantages(credit, rewards.reshape(9, 1), token_rewards, mask, mode="raw")
        per_response = torch.stack([flat_grad(policy, (adv[n] * token_logp()[n]).sum()) for n in range(9)])
        mean = (probs.detach()[:, None] * per_response).sum(0)
        assert torch.allclose(mean, exact, atol=1e-10)
        estimates[credit] = (probs.detach()[:, None] * (per_response - mean) ** 2).sum()
    assert estimates["process"] < estimates["outcome"]
