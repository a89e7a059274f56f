"""Every fast path of the transformer policy computes what the reference decoder computes (issue 7,
issue 16). The reference is policies/decoder.py's ``Transformer``: ``response_logits`` / ``logprobs``
(one pass over prompt + response per row) and ``generate`` (sampling that recomputes every step).
Each fast path is called as the function it is, or runs in a policy built with it (fast paths are
chosen when a policy is built): the group-packed pass (grouped.py), the fused decoder
(fused_decode.py), shared and compacted decode rows (decode_rows.py), distinct-row scoring
(distinct.py); also the rotary table and the sampler's recorded log-probs."""

import copy

import pytest
import torch

from rlvr.algorithms.logprobs import token_entropy, token_logprobs
from rlvr.policies.decode_rows import DecodeRows
from rlvr.policies.decoder import Transformer, TransformerConfig, rotary
from rlvr.policies.distinct import distinct_rows, score_distinct, score_every_row
from rlvr.policies.grouped import grouped_response_logits, split_groups
from rlvr.policies.tokens import inverse_cdf_sample
from rlvr.policies.transformer import TransformerFastPaths, TransformerPolicy
from rlvr.tokenizer import CharTokenizer

PROMPTS = ["3 1 4 1 5>", "2 7>", "9 9 0 1>"]
DECODE_ONLY = dict(shared_decode_rows=False, compact_below=0.0)   # every row decoded to the end


def policy(**fast) -> TransformerPolicy:
    torch.manual_seed(0)
    tok = CharTokenizer("0123456789 >")
    net = Transformer(TransformerConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                        num_layers=2, num_heads=4, init_std=0.3))
    with torch.no_grad():  # an <eos>-prone head: responses of different lengths, padding after them
        net.lm_head.weight[tok.eos_id] += 0.5
    return TransformerPolicy(net, tok, max_new_tokens=10, fast=TransformerFastPaths(**fast))


def reference_samples(p: TransformerPolicy, ids, group: int, seed: int, temperature: float = 1.0):
    return p.net.generate(ids, group, max_new_tokens=p.max_new_tokens, pad_id=p.codec.pad_id,
                          eos_id=p.codec.eos_id, generator=torch.Generator().manual_seed(seed),
                          temperature=temperature, top_p=p.top_p)


def assert_same_samples(fast, plain):
    assert torch.equal(fast.response_ids, plain.response_ids)
    assert torch.equal(fast.mask, plain.mask)
    # float32 rounding order: the reference recomputes the whole sequence each step (on the peaked policy
    # below, log-probs reach ~-10 and differ from the cached step's by ~1e-5)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=1e-5)


def rollout(p: TransformerPolicy, group: int = 4):
    ids = p.encode_prompts(PROMPTS)
    samples = reference_samples(p, ids, group, seed=2)
    lengths = samples.mask.sum(-1)
    assert lengths.min() < lengths.max()  # the test means something: there is padding to skip
    return ids, samples


def loss_and_grads(p: TransformerPolicy, logits_of, response_ids, mask):
    """Log-probs, entropies, a loss that weights rows differently, and its gradient, from
    ``logits_of()`` (N, T, V)."""
    p.zero_grad()
    logits = logits_of()
    logp, entropy = token_logprobs(logits, response_ids), token_entropy(logits)
    weights = torch.linspace(-1, 1, logp.shape[0])[:, None]
    loss = (weights * logp * mask).sum() / mask.sum() + 0.1 * (entropy * mask).sum()
    loss.backward()
    return logp * mask, entropy * mask, loss, torch.cat([q.grad.flatten() for q in p.parameters()])


def assert_all_close(fast, plain):
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- training: the group-packed pass
@pytest.mark.parametrize("packed", [True, False])
def test_group_packed_pass_equals_the_reference_logprobs_loss_and_gradients(packed):
    """grouped.py against ``Transformer.response_logits``, with the padding after <eos> skipped
    (``live``: the policy's training pass) or computed."""
    p = policy()
    ids, samples = rollout(p)
    response_ids, mask = samples.response_ids, samples.mask
    prompt_of = torch.arange(12) // 4
    live = mask[:, 1:] > 0 if packed else None
    pad = p.codec.pad_id
    fast = loss_and_grads(p, lambda: grouped_response_logits(p.net, ids, response_ids, prompt_of, pad_id=pad,
                                                             live=live), response_ids, mask)
    plain = loss_and_grads(p, lambda: p.net.response_logits(ids, response_ids, prompt_of, pad), response_ids, mask)
    assert_all_close(fast, plain)


@pytest.mark.parametrize("group_tokens", [512, 4, 1])
def test_group_packed_pass_takes_responses_in_any_order_and_any_number_per_prompt(group_tokens):
    """The tree-mask layout for rows in shuffled prompt order, 0 to 5 responses per prompt (prompt 2
    has none), a group whole or cut into sequences of ~4 or ~1 response tokens: the logits at every
    live position equal the reference's plain pass over prompt + response each."""
    p = policy()
    ids, samples = rollout(p)
    rows = torch.tensor([7, 0, 5, 1, 6, 2, 4])                 # prompts 1 0 1 0 1 0 1: none of prompt 2
    prompt_of, response_ids, mask = rows // 4, samples.response_ids[rows], samples.mask[rows]
    fast = grouped_response_logits(p.net, ids, response_ids, prompt_of, pad_id=p.codec.pad_id,
                                   live=mask[:, 1:] > 0, group_tokens=group_tokens)
    plain = p.net.response_logits(ids, response_ids, prompt_of, p.codec.pad_id)
    seen = mask > 0
    assert seen.sum() > 2 * len(rows)
    torch.testing.assert_close(fast[seen], plain[seen], atol=1e-5, rtol=1e-4)


def test_split_groups_keeps_each_sequence_within_one_prompt_and_about_the_budget():
    prompt_of = torch.tensor([1, 0, 1, 0, 1, 0, 1, 3])
    counts = torch.tensor([5, 2, 4, 3, 1, 6, 2, 7])
    seq_prompt, seq_of = split_groups(prompt_of, counts, 4, budget=6)
    assert torch.equal(seq_prompt[seq_of], prompt_of)                      # a sequence holds one prompt's rows
    totals = torch.zeros(len(seq_prompt), dtype=torch.long).index_add_(0, seq_of, counts)
    longest = torch.zeros(len(seq_prompt), dtype=torch.long).index_reduce_(0, seq_of, counts, "amax")
    assert bool((totals <= 6 + longest).all()) and len(seq_prompt) > 3     # cut, and within budget + 1 row
    whole, whole_of = split_groups(prompt_of, counts, 4, budget=512)
    assert whole.tolist() == [0, 1, 3] and torch.equal(whole[whole_of], prompt_of)  # prompt 2: no sequence


# ---------------------------------------------------------------- training: distinct-row scoring
def test_distinct_rows_groups_same_prompt_same_masked_response():
    ids = torch.tensor([[5, 6, 2, 0], [5, 6, 2, 7], [5, 6, 2, 0], [4, 2, 0, 0],   # prompt 0
                        [5, 6, 2, 0], [5, 6, 0, 0], [5, 6, 0, 0], [5, 6, 2, 0]])  # prompt 1
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0],
                         [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]).float()
    rows, inverse = distinct_rows(ids, mask, group_size=4)
    # row 1 differs from row 0 only after <eos> (masked): the same response; row 4 is row 0's
    # response to another prompt: distinct; rows 5 and 6 differ in length: distinct
    assert rows.tolist() == [0, 3, 4, 5, 6]
    assert inverse.tolist() == [0, 0, 0, 1, 2, 3, 4, 2]


@pytest.mark.parametrize("grouped", [True, False])
def test_scoring_distinct_responses_once_equals_scoring_every_row(grouped):
    """Duplicated responses scored once and copied: the same log-probs, entropies, loss and gradients
    as scoring all N rows (the copy's backward adds the duplicates' gradients), over either training
    pass."""
    p = policy(grouped_training_pass=grouped)
    ids, samples = rollout(p)
    response_ids, mask = samples.response_ids.clone(), samples.mask.clone()
    response_ids[[1, 2, 6]] = response_ids[[0, 0, 5]]          # duplicates within groups 0 and 1
    mask[[1, 2, 6]] = mask[[0, 0, 5]]
    response_ids[9] = response_ids[0]                           # group 0's response under prompt 2
    mask[9] = mask[0]
    scored = []
    weights = torch.linspace(-1, 1, 12)[:, None]               # a loss that weights rows differently
    for score in (score_distinct, score_every_row):
        p.zero_grad()
        logp, entropy = score(p.scores, ids, response_ids, mask, group_size=4, temperature=1.0)
        loss = (weights * logp * mask).sum() / mask.sum() + 0.1 * (entropy * mask).sum()
        loss.backward()
        scored.append((logp * mask, entropy * mask, loss, torch.cat([q.grad.flatten() for q in p.parameters()])))
    assert_all_close(*scored)


def test_policy_logprobs_with_every_fast_path_equal_the_reference():
    """The policy as build_policy makes it (grouped pass, packed, distinct rows) against
    ``Transformer.logprobs``: log-probs, entropies, loss and gradients."""
    p = policy()
    ids, samples = rollout(p)
    response_ids, mask = samples.response_ids.clone(), samples.mask.clone()
    response_ids[3], mask[3] = response_ids[1], mask[1]        # a duplicate, so distinct scoring acts
    prompt_of = torch.arange(12) // 4
    out = []
    for logprobs in (lambda: p.logprobs(ids, response_ids, mask, group_size=4, temperature=0.8),
                     lambda: p.net.logprobs(ids, response_ids, prompt_of, pad_id=p.codec.pad_id, temperature=0.8)):
        p.zero_grad()
        logp, entropy = logprobs()
        loss = (torch.linspace(-1, 1, 12)[:, None] * logp * mask).sum() / mask.sum() + 0.1 * (entropy * mask).sum()
        loss.backward()
        out.append((logp * mask, entropy * mask, loss, torch.cat([q.grad.flatten() for q in p.parameters()])))
    assert_all_close(*out)


def test_recorded_logprobs_equal_an_explicit_old_policy_forward():
    """One gradient step per batch: the ratio is 1 at the step, so the sampler's recorded log-probs
    stand in for an old-policy forward; they equal one (a frozen copy of the reference scoring the same
    rollouts)."""
    p = policy()
    ids = p.encode_prompts(PROMPTS)
    samples = p.sample(ids, 3, generator=torch.Generator().manual_seed(2))
    old = copy.deepcopy(p.net).requires_grad_(False)
    with torch.no_grad():
        explicit, _ = old.logprobs(ids, samples.response_ids, torch.arange(9) // 3, pad_id=p.codec.pad_id)
    torch.testing.assert_close(samples.logprobs, explicit * samples.mask, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("fused_decode", [True, False])
def test_cached_decoding_samples_what_the_reference_samples(fused_decode):
    """The KV-cache loop, with the fused decoder or the module's cached forward, every row decoded to
    the end: the same tokens (the same random draws) and log-probs as ``Transformer.generate``."""
    p = policy(fused_decode=fused_decode, **DECODE_ONLY)
    ids = p.encode_prompts(PROMPTS)
    fast = p.sample(ids, 5, generator=torch.Generator().manual_seed(4), temperature=1.2)
    assert_same_samples(fast, reference_samples(p, ids, 5, seed=4, temperature=1.2))


def decoded_rows(rows: DecodeRows, response_ids, mask, group: int) -> int:
    """How many decode rows the sampler computes for these responses under ``rows`` (the strategy
    replayed over the drawn tokens, as ``LMPolicy.generate`` runs it)."""
    n = response_ids.shape[0]
    rows_of = torch.arange(n) // group if rows.shared else torch.arange(n)
    done = torch.zeros(n, dtype=torch.bool)
    total = 0
    for t in range(response_ids.shape[1]):
        done = done | (mask[:, t] == 0) | (response_ids[:, t] == 2)
        if bool(done.all()):
            break
        _, rows_of, stand = rows.regroup(rows_of, response_ids[:, t], done, vocab=16)
        total += stand.numel()
    return total


@pytest.mark.parametrize("fused_decode", [True, False])
def test_compacted_decoding_samples_what_the_reference_samples(fused_decode):
    """Finished rows dropped from the decode batch: the same tokens and log-probs as the reference,
    and fewer rows decoded than decoding all N rows to the end."""
    p = policy(fused_decode=fused_decode, shared_decode_rows=False, compact_below=0.99)  # compact when a row ends
    ids = p.encode_prompts(PROMPTS)
    fast = p.sample(ids, 6, generator=torch.Generator().manual_seed(5))
    plain = reference_samples(p, ids, 6, seed=5)
    lengths = plain.mask.sum(-1)
    assert lengths.min() < lengths.max() - 1        # rows did end early, so rows were dropped
    assert_same_samples(fast, plain)
    every = decoded_rows(DecodeRows(), plain.response_ids, plain.mask, 6)
    assert decoded_rows(p.decode_rows, plain.response_ids, plain.mask, 6) < every


@pytest.mark.parametrize("fused_decode", [True, False])
def test_shared_decode_rows_sample_what_the_reference_samples(fused_decode):
    """Responses equal so far decoded once (one row per prompt at first, splitting when tokens
    differ; with compaction, as built by default): the same tokens and log-probs as the reference,
    with fewer rows computed."""
    p = policy(fused_decode=fused_decode)
    with torch.no_grad():
        p.net.lm_head.weight.mul_(4.0)        # a peaked policy: a group repeats its responses
    ids = p.encode_prompts(PROMPTS)
    fast = p.sample(ids, 6, generator=torch.Generator().manual_seed(7))
    plain = reference_samples(p, ids, 6, seed=7)
    assert_same_samples(fast, plain)
    distinct = {tuple(r) for r in torch.cat([torch.arange(18)[:, None] // 6, plain.response_ids], 1).tolist()}
    assert len(distinct) < 18                  # groups did repeat responses ...
    every = decoded_rows(DecodeRows(), plain.response_ids, plain.mask, 6)
    assert decoded_rows(p.decode_rows, plain.response_ids, plain.mask, 6) < every   # ... and fewer rows were decoded


def test_decode_rows_share_split_and_compact():
    """``DecodeRows.regroup`` by hand: 2 prompts x 3 responses on shared rows 0 and 1."""
    rows_of = torch.tensor([0, 0, 0, 1, 1, 1])
    token = torch.tensor([5, 5, 7, 4, 4, 2])                    # prompt 0 splits; response 5 ends
    done = torch.tensor([False, False, False, False, False, True])
    keep, new_rows, stand = DecodeRows(shared=True).regroup(rows_of, token, done, vocab=10)
    assert keep.tolist() == [0, 0, 1]                           # row 0 continues twice (a split), row 1 once
    assert new_rows[:5].tolist() == [0, 0, 1, 2, 2] and stand.tolist() == [0, 2, 3]
    keep, new_rows, _ = DecodeRows(shared=False, compact_below=0.0).regroup(torch.arange(6), token, done, vocab=10)
    assert keep is None and torch.equal(new_rows, torch.arange(6))   # every row kept
    keep, new_rows, _ = DecodeRows(shared=False, compact_below=0.9).regroup(torch.arange(6), token, done, vocab=10)
    assert keep.tolist() == [0, 1, 2, 3, 4] and new_rows[:5].tolist() == [0, 1, 2, 3, 4]  # 5/6 < 0.9: compacted


def test_fused_decoder_follows_parameter_updates_and_reuses_slots_across_shapes():
    """The decoder's key/value slots are reused between sampling calls: after a step of the trainer's
    optimiser (fused AdamW, which writes weights without bumping their version counters) and for calls
    of other batch shapes, it still samples what the reference samples (stale fused weights or a stale
    slot would change tokens or log-probs)."""
    from rlvr.config import OptimConfig
    from rlvr.trainer import build_optimizer
    p = policy(compact_below=0.5)
    ids = p.encode_prompts(PROMPTS)
    opt = build_optimizer(OptimConfig(name="adamw", lr=0.05), p.parameters())

    def both(prompt_ids, group, seed):
        fast = p.sample(prompt_ids, group, generator=torch.Generator().manual_seed(seed))
        assert_same_samples(fast, reference_samples(p, prompt_ids, group, seed))
        return fast

    before = both(ids, 5, 0)
    logp, _ = p.logprobs(ids, before.response_ids, before.mask, group_size=5)
    (-(logp * before.mask).sum()).backward()
    opt.step()
    after = both(ids, 5, 0)
    assert not torch.allclose(before.logprobs, after.logprobs)   # the update changed the sampler
    both(ids[:2], 3, 1)                                           # fewer rows: a prefix of the slots
    both(p.encode_prompts(["1 2>", "3>"]), 7, 2)                  # other prompt width: new slots


def test_rotary_table_equals_computed_rotary_also_past_its_end():
    net = policy().net
    positions = torch.tensor([[0, 5, 17], [3, 200, 1]])   # 200: past the table, computed afresh
    for pos in (positions[:, :1], positions):
        cos, sin = net.rope(pos)
        ref_cos, ref_sin = rotary(pos, 8, net.config.rope_theta)
        torch.testing.assert_close(cos, ref_cos)
        torch.testing.assert_close(sin, ref_sin)


def test_inverse_cdf_draws_follow_the_probabilities_and_never_a_zero_probability_token():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]])
    rows = probs.repeat(20000, 1) * 3.0                       # unnormalised rows are fine
    tokens = inverse_cdf_sample(rows, torch.Generator().manual_seed(0)).view(20000, 2)
    for j in range(2):
        freq = torch.bincount(tokens[:, j], minlength=6).float() / 20000
        # 4.5 standard errors of a binomial frequency at n = 20000 is < 0.016
        assert (freq - probs[j]).abs().max() < 0.016, (j, freq)
    assert not bool((probs[0][tokens[:, 0]] == 0).any())
    # all mass on one token: always that token, never one past the end (u * total < total)
    edge = torch.tensor([[0.0, 0.0, 1.0, 0.0]]).repeat(1000, 1)
    assert bool((inverse_cdf_sample(edge, torch.Generator().manual_seed(1)) == 2).all())


def test_bf16_autocast_loss_and_gradient_stay_within_stated_tolerance_of_float32():
    """train.bf16: the matrix products in bfloat16, log-softmax and the loss in float32. Stated
    tolerance (on a policy with peaked logits, |z| up to ~10): per-token log-probs within 0.03 on
    average and 0.15 at most, the mean log-prob within 2%, gradient cosine > 0.99."""
    from rlvr.trainer import autocast
    p = policy()
    ids, samples = rollout(p)
    mask = samples.mask
    out = {}
    for bf16 in (False, True):
        p.zero_grad()
        with autocast(p, bf16):
            logp, _ = p.logprobs(ids, samples.response_ids, mask, group_size=4)
        weights = torch.linspace(-1, 1, logp.shape[0])[:, None]     # a loss that weights rows differently
        ((weights * logp * mask).sum() / mask.sum()).backward()
        out[bf16] = (logp.detach() * mask, torch.cat([q.grad.flatten() for q in p.parameters()]))
    (lp32, g32), (lp16, g16) = out[False], out[True]
    assert lp16.dtype == torch.float32 and not torch.equal(lp16, lp32)   # bf16 did run, results are fp32
    error = (lp16 - lp32).abs()
    assert error.sum() / mask.sum() < 0.03 and error.max() < 0.15
    assert abs(float(lp16.sum() - lp32.sum())) < 0.02 * abs(float(lp32.sum()))
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) > 0.99
