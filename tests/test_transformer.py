"""Our transformer policy: KV cache, the grouped training pass, recorded log-probs, padding, HF export."""

from __future__ import annotations

import pytest
import torch

from rlvr.policies.decoder import Transformer, TransformerConfig
from rlvr.policies.tokens import top_p_filter
from rlvr.policies.transformer import TransformerFastPaths, TransformerPolicy
from rlvr.tokenizer import CharTokenizer

# prompts of different lengths, so left padding is exercised
PROMPTS = ["3 1 4 1 5>", "12+7=", "9>", "0 0 1>"]


def tiny_policy(seed: int = 0, **fast) -> TransformerPolicy:
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_texts(["0123456789 >+="])
    net = Transformer(TransformerConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                        num_layers=2, num_heads=4, init_std=0.3))
    return TransformerPolicy(net, tokenizer, max_new_tokens=8, fast=TransformerFastPaths(**fast))


def test_kv_cache_sampling_equals_recomputing_everything():
    """The module's cached forward (no fused step, every row to the end) against the reference
    ``Transformer.generate``, which recomputes the whole sequence each step."""
    policy = tiny_policy(fused_decode=False, shared_decode_rows=False, compact_below=0.0)
    ids = policy.encode_prompts(PROMPTS)
    with_cache = policy.sample(ids, 5, generator=torch.Generator().manual_seed(3), temperature=1.3)
    without = policy.net.generate(ids, 5, max_new_tokens=8, pad_id=policy.codec.pad_id, eos_id=policy.codec.eos_id,
                                  generator=torch.Generator().manual_seed(3), temperature=1.3)
    assert torch.equal(with_cache.response_ids, without.response_ids)
    assert torch.equal(with_cache.mask, without.mask)
    torch.testing.assert_close(with_cache.logprobs, without.logprobs, atol=1e-5, rtol=0)
    # the test means something: responses differ in length and some end at <eos>
    lengths = with_cache.mask.sum(-1)
    assert lengths.min() < lengths.max()


def test_recorded_logprobs_equal_model_logprobs_and_the_grouped_pass_equals_the_reference():
    policy = tiny_policy()
    ids = policy.encode_prompts(PROMPTS)
    samples = policy.sample(ids, 4, generator=torch.Generator().manual_seed(0), temperature=0.7)
    shared, entropy_shared = policy.logprobs(ids, samples.response_ids, samples.mask, group_size=4, temperature=0.7)
    plain, entropy_plain = policy.net.logprobs(ids, samples.response_ids, torch.arange(16) // 4,
                                               pad_id=policy.codec.pad_id, temperature=0.7)
    mask = samples.mask
    torch.testing.assert_close(shared * mask, samples.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared * mask, plain * mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy_shared * mask, entropy_plain * mask, atol=1e-5, rtol=0)


def test_grouped_pass_gradients_equal_the_reference_gradients():
    policy = tiny_policy()
    ids = policy.encode_prompts(PROMPTS[:2])
    samples = policy.sample(ids, 3, generator=torch.Generator().manual_seed(1))
    grads = []
    for logprobs in (lambda: policy.logprobs(ids, samples.response_ids, samples.mask, group_size=3),
                     lambda: policy.net.logprobs(ids, samples.response_ids, torch.arange(6) // 3,
                                                 pad_id=policy.codec.pad_id)):
        policy.zero_grad()
        logp, _ = logprobs()
        (logp * samples.mask).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-3)


def test_left_padding_does_not_change_a_prompt_logits():
    policy = tiny_policy()
    alone = policy.encode_prompts(["9>"])
    padded = policy.encode_prompts(["9>", "3 1 4 1 5>"])[:1]
    assert padded.shape[1] > alone.shape[1]
    with torch.no_grad():
        a = policy.net.logits(alone, alone != 0)[:, -1]
        b = policy.net.logits(padded, padded != 0)[:, -1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_greedy_is_the_argmax_path_and_stops_at_eos():
    policy = tiny_policy()
    ids = policy.encode_prompts(PROMPTS)
    response_ids, mask = policy.greedy(ids)
    with torch.no_grad():
        logp, _ = policy.logprobs(ids, response_ids, mask, group_size=1)
        for n in range(len(PROMPTS)):
            length = int(mask[n].sum())
            seq = torch.cat([ids[n:n + 1], response_ids[n:n + 1, :length]], 1)
            logits = policy.net.logits(seq, seq != 0)[0, ids.shape[1] - 1: -1]
            assert torch.equal(logits.argmax(-1), response_ids[n, :length])
            eos_at = (response_ids[n] == policy.codec.eos_id).nonzero()
            if len(eos_at):
                assert length == int(eos_at[0]) + 1 and not mask[n, length:].any()


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = top_p_filter(probs, 0.7)
    torch.testing.assert_close(kept, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_char_tokenizer_ids_follow_w1():
    tok = CharTokenizer.from_texts(["3 1 4 1 5>", "1 1 3 4 5"])
    assert tok.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert [tok.ids[d] for d in "1345 >"] == [4, 5, 6, 7, 8, 9]  # only the characters the task uses
    w1 = CharTokenizer("0123456789 >")
    assert [w1.ids[str(d)] for d in range(10)] == list(range(4, 14))
    assert w1.ids[" "] == 14 and w1.ids[">"] == 15 and w1.vocab_size == 16
    assert w1.encode_prompt("3 1>") == [1, 7, 14, 5, 15]
    assert w1.decode([7, 14, 5, 2, 0]) == "3 1"


def test_hf_export_round_trips(tmp_path):
    transformers = pytest.importorskip("transformers")
    policy = tiny_policy()
    policy.save_hf(tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = policy.encode_prompts(PROMPTS)
    for prompt, row in zip(PROMPTS, ids.tolist(), strict=True):
        assert tokenizer(prompt).input_ids == [t for t in row if t != 0]
    with torch.no_grad():
        ours = policy.net.logits(ids, ids != 0)
        mask = (ids != 0).long()
        theirs = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    real = ids != 0
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
    reloaded = TransformerPolicy.load_hf(tmp_path, max_new_tokens=8)
    for a, b in zip(reloaded.state_dict().values(), policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_hf_export_untied(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tokenizer = CharTokenizer("0123456789 >")
    net = Transformer(TransformerConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_layers=1,
                                        num_heads=2, tie_embeddings=False, init_std=0.5))
    policy = TransformerPolicy(net, tokenizer, max_new_tokens=4)
    policy.save_hf(tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = policy.encode_prompts(["3 1 4>"])
    with torch.no_grad():
        torch.testing.assert_close(policy.net.logits(ids, ids != 0), model(ids).logits, atol=1e-5, rtol=1e-5)


def test_hf_policy_matches_our_policy_on_the_exported_model(tmp_path):
    pytest.importorskip("transformers")
    from rlvr.policies.hf import HFPolicy

    policy = tiny_policy()
    policy.save_hf(tmp_path)
    hf = HFPolicy.from_folder(tmp_path, max_new_tokens=8)
    ids = policy.encode_prompts(PROMPTS)
    assert torch.equal(hf.encode_prompts(PROMPTS), ids)
    ours = policy.sample(ids, 3, generator=torch.Generator().manual_seed(5))
    theirs = hf.sample(ids, 3, generator=torch.Generator().manual_seed(5))   # HF cache, expanded G times
    assert torch.equal(ours.response_ids, theirs.response_ids) and torch.equal(ours.mask, theirs.mask)
    logp, _ = hf.logprobs(ids, ours.response_ids, ours.mask, group_size=3)
    torch.testing.assert_close(logp * ours.mask, ours.logprobs, atol=1e-5, rtol=0)
    decoded = hf.decode_responses(theirs.response_ids, theirs.mask)
    assert [c.token_ids for c in decoded] == [c.token_ids for c in policy.decode_responses(ours.response_ids, ours.mask)]


def test_prompt_template_changes_what_the_model_sees_not_the_task_prompt():
    policy = tiny_policy()
    plain = policy.encode_prompts(["9>"])
    policy.prompt_template = "0 0 {prompt}"
    templated = policy.encode_prompts(["9>"])
    assert templated.tolist() == [[1] + policy.codec.encode_answer("0 0 9>")] and plain.tolist() == [policy.codec.encode_prompt("9>")]


@pytest.mark.parametrize("shared", [True, False])
def test_config_shared_prefix_chooses_the_training_pass_when_the_policy_is_built(tmp_path, shared):
    """policy.shared_prefix (the user-facing key) is the grouped training pass, for a fresh model and
    for one loaded from a folder."""
    from rlvr.config import load_config
    from rlvr.policies import build_policy
    from rlvr.policies.grouped import grouped_training_logits
    from rlvr.tasks import build_task

    def built(**extra):
        cfg = load_config(None, {"task.name": "sort-text", "policy.kind": "transformer", "policy.hidden_size": 16,
                                 "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2,
                                 "policy.shared_prefix": shared, **extra})
        return build_policy(cfg.policy, build_task(cfg.task))

    fresh = built()
    fresh.save_hf(tmp_path)
    for policy in (fresh, built(**{"policy.model": str(tmp_path)})):
        assert policy.fast.grouped_training_pass is shared
        assert (policy.training_logits is grouped_training_logits) is shared
