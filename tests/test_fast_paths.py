"""Every fast path of the transformer policy computes what its plain path computes (issue 7):
packed (no padding) vs padded training log-probs and gradients, the fused decoder vs the module path,
the rotary table vs computing it, the sampler's recorded log-probs vs an explicit old-policy forward."""

import copy

import pytest
import torch

from rlvr.policies.transformer import Transformer, TransformerConfig, TransformerPolicy, rotary
from rlvr.tokenizer import CharTokenizer

PROMPTS = ["3 1 4 1 5>", "2 7>", "9 9 0 1>"]


def policy(**kwargs) -> TransformerPolicy:
    torch.manual_seed(0)
    tok = CharTokenizer("0123456789 >")
    net = Transformer(TransformerConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                        num_layers=2, num_heads=4, init_std=0.3))
    with torch.no_grad():  # an <eos>-prone head: responses of different lengths, padding after them
        net.lm_head.weight[tok.eos_id] += 0.5
    return TransformerPolicy(net, tok, max_new_tokens=10, **kwargs)


def rollout(p: TransformerPolicy, group: int = 4):
    ids = p.encode_prompts(PROMPTS)
    samples = p.sample(ids, group, generator=torch.Generator().manual_seed(2))
    lengths = samples.mask.sum(-1)
    assert lengths.min() < lengths.max()  # the test means something: there is padding to skip
    return ids, samples


def loss_and_grads(p: TransformerPolicy, ids, samples, group: int):
    p.zero_grad()
    logp, entropy = p.logprobs(ids, samples.response_ids, samples.mask, group_size=group)
    loss = (logp * samples.mask).sum() / samples.mask.sum()
    loss.backward()
    return logp * samples.mask, entropy * samples.mask, loss, torch.cat([q.grad.flatten() for q in p.parameters()])


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_packed_equals_padded_logprobs_loss_and_gradients(shared_prefix):
    p = policy(shared_prefix=shared_prefix)
    ids, samples = rollout(p)
    fast = loss_and_grads(p, ids, samples, 4)
    p.pack = False
    plain = loss_and_grads(p, ids, samples, 4)
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_packed_shared_prefix_equals_plain_per_response_forward():
    p = policy()
    ids, samples = rollout(p)
    fast = loss_and_grads(p, ids, samples, 4)
    p.pack, p.shared_prefix = False, False
    plain = loss_and_grads(p, ids, samples, 4)
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_fused_decoder_samples_equal_the_module_path():
    p = policy()
    ids = p.encode_prompts(PROMPTS)
    fast = p.sample(ids, 5, generator=torch.Generator().manual_seed(4), temperature=1.2)
    p.fused_decode = False
    plain = p.sample(ids, 5, generator=torch.Generator().manual_seed(4), temperature=1.2)
    assert torch.equal(fast.response_ids, plain.response_ids)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)  # float32 rounding order


def test_rotary_table_equals_computed_rotary_also_past_its_end():
    net = policy().net
    positions = torch.tensor([[0, 5, 17], [3, 200, 1]])   # 200: past the table, computed afresh
    for pos in (positions[:, :1], positions):
        cos, sin = net.rope(pos)
        ref_cos, ref_sin = rotary(pos, 8, net.config.rope_theta)
        torch.testing.assert_close(cos, ref_cos)
        torch.testing.assert_close(sin, ref_sin)


def test_recorded_logprobs_equal_an_explicit_old_policy_forward():
    """One gradient step per batch: the ratio is 1 at the step, so the sampler's recorded log-probs
    stand in for an old-policy forward; they equal one (a frozen copy scoring the same rollouts)."""
    p = policy()
    ids, samples = rollout(p, group=3)
    old = copy.deepcopy(p).requires_grad_(False)
    old.pack, old.shared_prefix = False, False
    with torch.no_grad():
        explicit, _ = old.logprobs(ids, samples.response_ids, samples.mask, group_size=3)
    torch.testing.assert_close(samples.logprobs, explicit * samples.mask, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused_decode", [True, False])
def test_compacted_decoding_samples_what_decoding_every_row_samples(fused_decode):
    """Finished rows dropped from the decode batch: the same tokens (the same random draws) and
    log-probs as computing all N rows to the end."""
    p = policy(fused_decode=fused_decode, compact_below=0.99, share_prefixes=False)  # compact when a row ends
    ids = p.encode_prompts(PROMPTS)
    fast = p.sample(ids, 6, generator=torch.Generator().manual_seed(5))
    p.compact_below = 0.0
    plain = p.sample(ids, 6, generator=torch.Generator().manual_seed(5))
    lengths = plain.mask.sum(-1)
    assert lengths.min() < lengths.max() - 1        # rows did end early, so rows were dropped
    assert torch.equal(fast.response_ids, plain.response_ids)
    assert torch.equal(fast.mask, plain.mask)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)


def test_fused_decoder_follows_parameter_updates_and_reuses_slots_across_shapes():
    """The decoder's key/value slots are reused between sampling calls: after a step of the trainer's
    optimiser (fused AdamW, which writes weights without bumping their version counters) and for calls
    of other batch shapes, it still samples what the plain module path samples (stale fused weights
    or a stale slot would change tokens or log-probs)."""
    from rlvr.config import OptimConfig
    from rlvr.trainer import build_optimizer
    p = policy(compact_below=0.5)
    ids = p.encode_prompts(PROMPTS)
    opt = build_optimizer(OptimConfig(name="adamw", lr=0.05), p.parameters())

    def both(prompt_ids, group, seed):
        fast = p.sample(prompt_ids, group, generator=torch.Generator().manual_seed(seed))
        p.fused_decode = False
        plain = p.sample(prompt_ids, group, generator=torch.Generator().manual_seed(seed))
        p.fused_decode = True
        assert torch.equal(fast.response_ids, plain.response_ids)
        torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)
        return fast

    before = both(ids, 5, 0)
    logp, _ = p.logprobs(ids, before.response_ids, before.mask, group_size=5)
    (-(logp * before.mask).sum()).backward()
    opt.step()
    after = both(ids, 5, 0)
    assert not torch.allclose(before.logprobs, after.logprobs)   # the update changed the sampler
    both(ids[:2], 3, 1)                                           # fewer rows: a prefix of the slots
    both(p.encode_prompts(["1 2>", "3>"]), 7, 2)                  # other prompt width: new slots


def test_distinct_rows_groups_same_prompt_same_masked_response():
    from rlvr.policies.lm import distinct_rows
    ids = torch.tensor([[5, 6, 2, 0], [5, 6, 2, 7], [5, 6, 2, 0], [4, 2, 0, 0],   # prompt 0
                        [5, 6, 2, 0], [5, 6, 0, 0], [5, 6, 0, 0], [5, 6, 2, 0]])  # prompt 1
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0],
                         [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]).float()
    rows, inverse = distinct_rows(ids, mask, group_size=4)
    # row 1 differs from row 0 only after <eos> (masked): the same response; row 4 is row 0's
    # response to another prompt: distinct; rows 5 and 6 differ in length: distinct
    assert rows.tolist() == [0, 3, 4, 5, 6]
    assert inverse.tolist() == [0, 0, 0, 1, 2, 3, 4, 2]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_scoring_distinct_responses_once_equals_scoring_every_row(shared_prefix):
    """Duplicated responses scored once and copied: the same log-probs, entropies, loss and gradients
    as scoring all N rows (the copy's backward adds the duplicates' gradients)."""
    p = policy(shared_prefix=shared_prefix)
    ids, samples = rollout(p)
    response_ids, mask = samples.response_ids.clone(), samples.mask.clone()
    response_ids[[1, 2, 6]] = response_ids[[0, 0, 5]]          # duplicates within groups 0 and 1
    mask[[1, 2, 6]] = mask[[0, 0, 5]]
    response_ids[9] = response_ids[0]                           # group 0's response under prompt 2
    mask[9] = mask[0]
    samples = type(samples)(response_ids=response_ids, mask=mask, logprobs=samples.logprobs)
    scored = []
    weights = torch.linspace(-1, 1, 12)[:, None]               # a loss that weights rows differently
    for distinct in (True, False):
        p.score_distinct = distinct
        p.zero_grad()
        logp, entropy = p.logprobs(ids, response_ids, mask, group_size=4)
        loss = (weights * logp * mask).sum() / mask.sum() + 0.1 * (entropy * mask).sum()
        loss.backward()
        scored.append((logp * mask, entropy * mask, loss, torch.cat([q.grad.flatten() for q in p.parameters()])))
    for a, b in zip(*scored, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused_decode", [True, False])
def test_shared_prefix_decoding_samples_what_decoding_every_row_samples(fused_decode):
    """Responses equal so far decoded once (one row per prompt at first, splitting when tokens
    differ): the same tokens and log-probs as decoding all N rows, with fewer rows computed."""
    p = policy(fused_decode=fused_decode)
    with torch.no_grad():
        p.net.lm_head.weight.mul_(4.0)        # a peaked policy: a group repeats its responses
    ids = p.encode_prompts(PROMPTS)
    computed = []
    decode = p.decode
    p.decode = lambda ids_, *rest: (computed.append(ids_.shape[0]), decode(ids_, *rest))[1]
    fast = p.sample(ids, 6, generator=torch.Generator().manual_seed(7))
    shared_rows = list(computed)
    p.share_prefixes, p.compact_below = False, 0.0
    plain = p.sample(ids, 6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(fast.response_ids, plain.response_ids)
    assert torch.equal(fast.mask, plain.mask)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    distinct = {tuple(r) for r in torch.cat([torch.arange(18)[:, None] // 6, plain.response_ids], 1).tolist()}
    assert len(distinct) < 18                  # groups did repeat responses ...
    assert sum(shared_rows) < sum(computed[len(shared_rows):])   # ... and fewer rows were decoded


def test_inverse_cdf_draws_follow_the_probabilities_and_never_a_zero_probability_token():
    from rlvr.policies.lm import inverse_cdf_sample
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


@pytest.mark.parametrize("group_tokens", [512, 4, 1])
def test_group_packed_pass_takes_responses_in_any_order_and_any_number_per_prompt(group_tokens):
    """The tree-mask layout for rows in shuffled prompt order, 0 to 5 responses per prompt (prompt 2
    has none), a group whole or cut into sequences of ~4 or ~1 response tokens: the logits at every
    live position equal one plain pass over prompt + response each."""
    p = policy()
    p.group_tokens = group_tokens
    ids, samples = rollout(p)
    rows = torch.tensor([7, 0, 5, 1, 6, 2, 4])                 # prompts 1 0 1 0 1 0 1: none of prompt 2
    prompt_of, response_ids, mask = rows // 4, samples.response_ids[rows], samples.mask[rows]
    live = mask[:, 1:] > 0
    fast = p.response_logits(ids, response_ids, prompt_of, live=live)
    p.pack, p.shared_prefix = False, False
    plain = p.response_logits(ids, response_ids, prompt_of)
    seen = mask > 0
    assert seen.sum() > 2 * len(rows)
    torch.testing.assert_close(fast[seen], plain[seen], atol=1e-5, rtol=1e-4)


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


def test_split_groups_keeps_each_sequence_within_one_prompt_and_about_the_budget():
    from rlvr.policies.transformer import split_groups
    prompt_of = torch.tensor([1, 0, 1, 0, 1, 0, 1, 3])
    counts = torch.tensor([5, 2, 4, 3, 1, 6, 2, 7])
    seq_prompt, seq_of = split_groups(prompt_of, counts, 4, budget=6)
    assert torch.equal(seq_prompt[seq_of], prompt_of)                      # a sequence holds one prompt's rows
    totals = torch.zeros(len(seq_prompt), dtype=torch.long).index_add_(0, seq_of, counts)
    longest = torch.zeros(len(seq_prompt), dtype=torch.long).index_reduce_(0, seq_of, counts, "amax")
    assert bool((totals <= 6 + longest).all()) and len(seq_prompt) > 3     # cut, and within budget + 1 row
    whole, whole_of = split_groups(prompt_of, counts, 4, budget=512)
    assert whole.tolist() == [0, 1, 3] and torch.equal(whole[whole_of], prompt_of)  # prompt 2: no sequence
