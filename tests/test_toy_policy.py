"""The lecture's toy policy: sampling, log-probs, and the shape contract of every policy."""

import torch

from rlvr.policies.toy import ToyPolicy


def make():
    torch.manual_seed(0)
    return ToyPolicy(vocab_size=5, embedding_dim=10, prompt_length=3, response_length=3)


def test_recorded_logprobs_equal_the_models_logprobs():
    policy = make()
    prompts = torch.tensor([[1, 0, 2], [3, 2, 4]])
    samples = policy.sample(prompts, 7, generator=torch.Generator().manual_seed(0), temperature=1.3)
    assert samples.response_ids.shape == (14, 3)
    logp, entropy = policy.logprobs(prompts, samples.response_ids, samples.mask, group_size=7, temperature=1.3)
    assert torch.allclose(logp, samples.logprobs)
    assert (entropy > 0).all()


def test_samples_follow_the_policy_distribution():
    policy = make()
    prompt = torch.tensor([[3, 2, 4]])
    samples = policy.sample(prompt, 40_000, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(policy(prompt)[0], -1)  # (T, V)
    for t in range(3):
        freq = torch.bincount(samples.response_ids[:, t], minlength=5).float() / 40_000
        assert torch.allclose(freq, probs[t], atol=0.01)


def test_group_members_are_contiguous_and_use_their_own_prompt():
    policy = make()
    prompts = torch.tensor([[1, 0, 2], [3, 2, 4]])
    samples = policy.sample(prompts, 3, generator=torch.Generator().manual_seed(0))
    logp, _ = policy.logprobs(prompts, samples.response_ids, samples.mask, group_size=3)
    alone, _ = policy.logprobs(prompts[1:], samples.response_ids[3:], samples.mask[3:], group_size=3)
    assert torch.allclose(logp[3:], alone)


def test_greedy_is_the_argmax_per_position():
    policy = make()
    prompts = torch.tensor([[1, 2, 3]])
    ids, mask = policy.greedy(prompts)
    assert torch.equal(ids, policy(prompts).argmax(-1)) and mask.sum() == 3
