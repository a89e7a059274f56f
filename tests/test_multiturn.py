"""Multi-turn sampling (rlvr.policies.episodes): episodes laid out as one token row, the KV cache
carried across turns against the plain recompute reference, training log-probs against the sampler's,
observation tokens never trained on, chat templates applied turn by turn (prefix-preserving or one
line), demonstrated episodes laid out as sampled ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import custom_envs
from rlvr.algorithms.credit import token_advantages
from rlvr.config import load_config
from rlvr.errors import UserError
from rlvr.multiturn import demonstrated_episodes
from rlvr.policies import build_policy
from rlvr.policies.episodes import EpisodeLimits, sample_episodes
from rlvr.sft import episode_sft_loss
from rlvr.tasks import build_task

TINY = {"task.name": "custom_envs:echo_task", "policy.kind": "transformer", "policy.hidden_size": 32,
        "policy.intermediate_size": 64, "policy.num_layers": 2, "policy.num_heads": 2,
        "policy.prompt_template": "{prompt}:"}
LIMITS = EpisodeLimits(max_turns=3, max_tokens=40, max_new_tokens=4)
ROWS = ["12", "34", "56"]


class PlainEnvs:
    """The envs of a batch called directly (the guard is tested in test_env_guard.py)."""

    fallback_reward = 0.0
    faults: dict = {}

    def __init__(self, factory=custom_envs.make_echo_env):
        self.factory = factory

    def start(self, rows):
        self.envs = [self.factory(r) for r in rows]
        return [e.reset() for e in self.envs]

    def step(self, actions):
        return {n: self.envs[n].step(a) for n, a in actions.items()}

    def finish(self, n):
        return self.envs[n].metrics()


def warmed(overrides=None, steps=60):
    """A tiny transformer after a short SFT on demonstrated episodes: it ends its turns with <eos> and
    often needs two or three turns, so every path below sees observations."""
    cfg = load_config(None, {**TINY, **(overrides or {})})
    task = build_task(cfg.task)
    torch.manual_seed(0)
    policy = build_policy(cfg.policy, task)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        loss = episode_sft_loss(policy, task, PlainEnvs(), [task.train_prompt(rng) for _ in range(16)], rng)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy, task


@pytest.fixture(scope="module")
def policy():
    return warmed()[0]


def episodes(policy, *, cached=True, seed=1, group_size=3, rows=ROWS, envs=None):
    return sample_episodes(policy, rows, envs or PlainEnvs(), group_size=group_size, limits=LIMITS,
                           generator=torch.Generator().manual_seed(seed), temperature=1.0, cached=cached)


def test_episodes_have_several_turns_and_the_layout(policy):
    s = episodes(policy)
    turns = [sum(role == "policy" for role, _ in t) for t in s.turns]
    assert max(turns) >= 2 and min(turns) >= 1
    eos, codec = policy.codec.eos_id, policy.codec
    for n, transcript in enumerate(s.turns):
        real = int(s.attended[n].sum())
        assert s.attended[n, :real].all() and not s.attended[n, real:].any()       # a prefix
        ids = s.response_ids[n, :real].tolist()
        sampled = s.mask[n, :real].bool().tolist()
        # the row read back: policy turns (sampled, ending in <eos>) and observations (not sampled)
        pieces, current, kind = [], [], sampled[0]
        for token, is_sampled in zip(ids, sampled, strict=True):
            if is_sampled != kind:
                pieces.append((kind, current))
                current, kind = [], is_sampled
            current.append(token)
            if is_sampled and token == eos:
                pieces.append((True, current))
                current, kind = [], False
        if current:
            pieces.append((kind, current))
        read = [("policy" if k else "env", codec.decode(p)) for k, p in pieces if p]
        assert read == [(role, text if role == "policy" else f"{text}:") for role, text in transcript[1:]]
        # returns: the env's rewards, each on its turn's <eos>
        assert float(s.token_rewards[n].sum()) == pytest.approx(float(s.returns[n]))
        for t in s.token_rewards[n].nonzero().flatten().tolist():
            assert ids[t] == eos and sampled[t]


def test_returns_and_truncation_pinned(policy):
    s = episodes(policy)
    for n, transcript in enumerate(s.turns):
        actions = [text for role, text in transcript if role == "policy"]
        row = ROWS[n // 3]
        hit = row in actions
        expected = -0.1 * (actions.index(row) if hit else min(len(actions), 2)) + (1.0 if hit else 0.0)
        assert float(s.returns[n]) == pytest.approx(expected)
        assert s.env_metrics[n] == {"tries": float(len(actions))}


@pytest.mark.parametrize("fused", [True, False])
def test_kv_cache_across_turns_equals_recomputing(policy, fused):
    from rlvr.policies.transformer import CachedDecoding, FusedDecoding
    policy.decoding = FusedDecoding() if fused else CachedDecoding()
    try:
        cached, plain = episodes(policy, cached=True), episodes(policy, cached=False)
    finally:
        policy.decoding = FusedDecoding()
    assert torch.equal(cached.response_ids, plain.response_ids)
    assert torch.equal(cached.mask, plain.mask) and torch.equal(cached.attended, plain.attended)
    torch.testing.assert_close(cached.logprobs, plain.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("grouped", [True, False])
def test_training_logprobs_equal_the_samplers(policy, cached, grouped):
    from rlvr.policies.transformer import grouped_training_logits, per_row_training_logits
    s = episodes(policy, cached=cached)
    policy.training_logits = grouped_training_logits if grouped else per_row_training_logits
    try:
        logp, _ = policy.logprobs(s.prompt_ids, s.response_ids, s.attended, group_size=3)
    finally:
        policy.training_logits = grouped_training_logits
    torch.testing.assert_close(logp.detach() * s.mask, s.logprobs, atol=1e-5, rtol=0)


def test_observation_tokens_get_no_gradient(policy):
    """The loss's gradient is the same whatever the advantages, old log-probs and reference log-probs
    say at observation tokens: only the sampled tokens are trained on."""
    from rlvr.batching import Batch
    from rlvr.config import AlgoConfig
    from rlvr.rollout import Rollouts
    from rlvr.trainer import compute_loss
    s = episodes(policy)
    rollouts = Rollouts(prompts=list(ROWS), prompt_ids=s.prompt_ids, response_ids=s.response_ids, mask=s.mask,
                        logprobs=s.logprobs, rewards=s.returns.reshape(3, 3), group_size=3, attended=s.attended)
    observed = (s.attended - s.mask).bool()
    assert observed.any()
    algo = AlgoConfig()
    gen = torch.Generator().manual_seed(5)

    def gradient(noise: float, where=observed):
        junk = torch.randn(s.mask.shape, generator=gen) * noise * where
        batch = Batch(rollouts=dataclasses.replace(rollouts, logprobs=s.logprobs + junk),
                      deltas=s.returns.reshape(3, 3), advantages=s.mask * 0.7 - s.mask * s.returns[:, None] + junk,
                      ref_logprobs=s.logprobs + junk, loss_mask=s.mask, kl_loss_coef=0.1)
        policy.zero_grad()
        loss, _ = compute_loss(policy, batch, algo, temperature=1.0, aggregation_constant=40.0, entropy_coef=0.0)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in policy.parameters()])

    base = gradient(0.0)
    assert base.abs().sum() > 0
    torch.testing.assert_close(gradient(50.0), base, atol=1e-6, rtol=1e-5)
    # the same junk on the sampled tokens does change it (the test can fail)
    assert (gradient(50.0, s.mask.bool()) - base).abs().max() > 1e-3


def test_process_credit_is_rewards_to_go_over_turns(policy):
    s = episodes(policy)
    raw = token_advantages("process", torch.zeros(3, 3), s.token_rewards, s.mask, mode="raw")
    for n in range(9):
        to_go = s.token_rewards[n].flip(0).cumsum(0).flip(0) * s.mask[n]
        torch.testing.assert_close(raw[n], to_go)
        turn_returns = [float(s.token_rewards[n, t:].sum()) for t in s.mask[n].nonzero().flatten().tolist()]
        assert raw[n][s.mask[n].bool()].tolist() == pytest.approx(turn_returns)


def test_demonstrations_are_laid_out_as_sampled_episodes(policy):
    """A demonstrated episode's row equals the row the sampler writes when it samples the same turns."""
    task = build_task(load_config(None, TINY).task)
    prompt_ids, ids, mask, attended = demonstrated_episodes(policy, PlainEnvs(), ["12", "34"],
                                                            [["77", "12"], ["34"]])
    codec = policy.codec
    enc = codec.encode_answer
    assert ids[0, :int(attended[0].sum())].tolist() == enc("77") + [codec.eos_id] + enc("no 1:") + enc("12") + [codec.eos_id]
    assert mask[0, :int(attended[0].sum())].tolist() == [1.0] * 3 + [0.0] * 5 + [1.0] * 3
    assert ids[1, :int(attended[1].sum())].tolist() == enc("34") + [codec.eos_id]
    assert prompt_ids[1, -len(enc("say 34:")) - 1:].tolist() == codec.encode_prompt("say 34:")
    del task


def test_envs_opening_differently_within_a_group_fail_in_one_line(policy):
    class Random(custom_envs.EchoEnv):
        count = 0

        def reset(self):
            Random.count += 1
            return f"say {Random.count}"
    with pytest.raises(UserError, match="opened with different observations"):
        episodes(policy, envs=PlainEnvs(Random))


# ---------------------------------------------------------------- a chat model, turn by turn
# chat templates over the tiny model's alphabet: a turn is <bos> content <eos>; the user's ends in ':'
CHAT = ("{% for m in messages %}<bos>{{ m['content'] }}{% if m['role'] == 'user' %}:{% endif %}<eos>{% endfor %}"
        "{% if add_generation_prompt %}<bos>{% endif %}")
REWRITING = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}<bos>0<eos>"
             "{% else %}<bos>{{ m['content'] }}{% if m['role'] == 'user' %}:{% endif %}<eos>{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}<bos>{% endif %}")


@pytest.fixture(scope="module")
def hf_policy(tmp_path_factory, policy):
    pytest.importorskip("transformers")
    from rlvr.policies.hf import HFCodec, HFPolicy
    folder = tmp_path_factory.mktemp("hf") / "model"
    policy.save_hf(folder)
    hf = HFPolicy.from_folder(folder, max_new_tokens=4)
    hf.codec.tokenizer.chat_template = CHAT
    hf.codec = HFCodec(hf.codec.tokenizer, chat_template=True)
    hf.prompt_template = "{prompt}"
    task = build_task(load_config(None, TINY).task)
    optimizer = torch.optim.AdamW(hf.parameters(), lr=3e-3)
    rng = np.random.default_rng(1)
    for _ in range(40):  # demonstrations in the chat layout: the model learns to end its turns there too
        loss = episode_sft_loss(hf, task, PlainEnvs(), [task.train_prompt(rng) for _ in range(16)], rng)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return hf


def test_chat_episodes_are_prefix_preserving_and_scored_as_sampled(hf_policy):
    s = episodes(hf_policy, group_size=2)
    tokenizer = hf_policy.codec.tokenizer
    assert max(sum(r == "policy" for r, _ in t) for t in s.turns) >= 2
    checked = 0
    for n, transcript in enumerate(s.turns):  # the ids of the whole episode = the template's rendering of it
        if transcript[-1][0] == "env" or s.truncated[n]:
            continue
        messages = [{"role": "user" if r == "env" else "assistant", "content": t} for r, t in transcript]
        prompt = s.prompt_ids[n // 2][s.prompt_ids[n // 2] != hf_policy.codec.pad_id].tolist()
        ids = prompt + s.response_ids[n, :int(s.attended[n].sum())].tolist()
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        assert ids == tokenizer(rendered, add_special_tokens=False).input_ids
        checked += 1
    assert checked
    logp, _ = hf_policy.logprobs(s.prompt_ids, s.response_ids, s.attended, group_size=2)
    torch.testing.assert_close(logp.detach() * s.mask, s.logprobs, atol=1e-5, rtol=0)
    plain = episodes(hf_policy, group_size=2, cached=False)
    assert torch.equal(plain.response_ids, s.response_ids)


def test_a_template_that_rewrites_earlier_turns_fails_in_one_line(hf_policy):
    hf_policy.codec.tokenizer.chat_template = REWRITING
    try:
        with pytest.raises(UserError, match="not prefix-preserving") as info:
            for seed in range(5):
                episodes(hf_policy, group_size=2, seed=seed)
    finally:
        hf_policy.codec.tokenizer.chat_template = CHAT
    assert "\n" not in str(info.value)


def test_env_max_turns_truncates_an_episode_the_env_would_continue(policy):
    """rlvr's turn limit (2) below the env's own (3): an episode still going after 2 policy turns ends
    there, marked truncated; one the env ended is not."""
    limits = EpisodeLimits(max_turns=2, max_tokens=40, max_new_tokens=4)
    s = sample_episodes(policy, ROWS, PlainEnvs(), group_size=3, limits=limits,
                        generator=torch.Generator().manual_seed(1), temperature=1.0)
    cut = 0
    for n, transcript in enumerate(s.turns):
        actions = [text for role, text in transcript if role == "policy"]
        assert len(actions) <= 2
        found = ROWS[n // 3] in actions
        if len(actions) == 2 and not found and transcript[-1][0] == "policy":
            assert bool(s.truncated[n])
            cut += 1
        elif found:
            assert not bool(s.truncated[n])
    assert cut >= 1
