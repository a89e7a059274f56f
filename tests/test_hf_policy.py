"""The Hugging Face policy on a tiny Llama folder (our transformer exported): no deprecated transformers
arguments, the shared-prompt training pass against the per-row reference (values and gradients)."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from golden_runs import hf_model
from rlvr.config import load_config
from rlvr.policies import build_policy
from rlvr.tasks import build_task

pytest.importorskip("transformers")
from rlvr.policies.hf import HFPolicy  # noqa: E402
from rlvr.policies.hf_grouped import per_row_response_logits, shared_prompt_response_logits  # noqa: E402

TINY = {"task.name": "sort-text", "task.length": 3, "policy.kind": "transformer", "policy.hidden_size": 16,
        "policy.intermediate_size": 32, "policy.num_layers": 2, "policy.num_heads": 2, "policy.init_std": 0.3}
PROMPTS = ["3 1 2>", "1>", "2 2 0 1>"]  # different lengths: left padding in every batch


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return hf_model(tmp_path_factory.mktemp("hf"), TINY)


def rollouts(policy, prompts=PROMPTS, group_size=3, seed=0):
    ids = policy.encode_prompts(prompts)
    return ids, policy.sample(ids, group_size, generator=torch.Generator().manual_seed(seed))


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_sampling_and_scoring_raise_no_deprecation_warning(model_folder):
    """The cache goes in under the name the installed transformers' forward takes (``cache`` in 5.2x;
    ``past_key_values`` is deprecated there)."""
    policy = HFPolicy.from_folder(model_folder, max_new_tokens=6)
    handler = Records()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids, samples = rollouts(policy)
            policy.logprobs(ids, samples.response_ids, samples.mask, group_size=3)
    finally:
        logger.removeHandler(handler)
    deprecations = [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    assert not deprecations, [str(w.message) for w in deprecations]
    assert not [m for m in handler.messages if "deprecated" in m], handler.messages


def gradients(policy):
    return torch.cat([p.grad.flatten() for p in policy.parameters()])


def logits_and_gradient(policy, pass_, prompt_ids, response_ids, mask, prompt_of, **kw):
    policy.zero_grad()
    logits = pass_(policy.model, prompt_ids, response_ids, prompt_of, pad_id=policy.codec.pad_id, **kw)
    weights = torch.linspace(-1.0, 2.0, logits.shape[1])                  # an arbitrary per-token loss
    logp = logits.log_softmax(-1).gather(-1, response_ids[..., None]).squeeze(-1)
    (logp * mask * weights).sum().backward()
    return logits.detach(), gradients(policy)


@pytest.mark.parametrize("prompts", [PROMPTS, ["1 2>", "0 0 0 1 2>"], ["2>"]])
@pytest.mark.parametrize("order", ["grouped", "shuffled"])
def test_shared_prompt_pass_equals_the_per_row_reference_values_and_gradients(model_folder, prompts, order):
    """Left-padded prompts of different lengths, rows in any prompt order and a prompt without
    responses: the shared-prompt pass's logits (on the real tokens) and gradients equal the reference's."""
    policy = HFPolicy.from_folder(model_folder, max_new_tokens=6)
    ids, samples = rollouts(policy, prompts)
    prompt_of = torch.arange(samples.response_ids.shape[0]) // 3
    rows = torch.arange(prompt_of.numel())
    if order == "shuffled":
        rows = torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(1))
        rows = rows[prompt_of[rows] != 0] if len(prompts) > 1 else rows     # prompt 0 gets no response
    response_ids, mask, prompt_of = samples.response_ids[rows], samples.mask[rows], prompt_of[rows]
    ref, ref_grad = logits_and_gradient(policy, per_row_response_logits, ids, response_ids, mask, prompt_of,
                                        keeps_logits=True)
    got, got_grad = logits_and_gradient(policy, shared_prompt_response_logits, ids, response_ids, mask,
                                        prompt_of, cache_arg=policy.cache_arg)
    real = mask[..., None] > 0
    torch.testing.assert_close(got * real, ref * real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, atol=1e-5, rtol=1e-4)
    assert ref_grad.abs().max() > 1e-3                                      # the gradient is not trivially 0


def test_a_response_of_one_token_comes_from_the_prompt_pass_alone(model_folder):
    policy = HFPolicy.from_folder(model_folder, max_new_tokens=1)
    ids, samples = rollouts(policy)
    prompt_of = torch.arange(samples.response_ids.shape[0]) // 3
    ref, ref_grad = logits_and_gradient(policy, per_row_response_logits, ids, samples.response_ids, samples.mask,
                                        prompt_of, keeps_logits=False)
    got, got_grad = logits_and_gradient(policy, shared_prompt_response_logits, ids, samples.response_ids,
                                        samples.mask, prompt_of, cache_arg=policy.cache_arg)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad, ref_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shared", [False, True])
def test_config_shared_prefix_chooses_the_hf_training_pass_and_logprobs_agree(model_folder, shared):
    """policy.shared_prefix picks the pass when the policy is built (off by default: the reference);
    the policy's log-probs equal the sampler's recorded ones either way."""
    extra = {"policy.shared_prefix": True} if shared else {}
    cfg = load_config(None, {"task.name": "sort-text", "task.length": 3, "policy.kind": "hf",
                             "policy.model": str(model_folder), **extra})
    policy = build_policy(cfg.policy, build_task(cfg.task))
    assert policy.shared_prefix is shared
    ids, samples = rollouts(policy)
    logp, _ = policy.logprobs(ids, samples.response_ids, samples.mask, group_size=3)
    torch.testing.assert_close(logp * samples.mask, samples.logprobs, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- LoRA (policy.lora, the lora extra)
def lora_policy(model_folder, rank=4, **kw):
    pytest.importorskip("peft")
    from rlvr.policies.lora import LoraConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return HFPolicy.from_folder(model_folder, max_new_tokens=6, lora=LoraConfig(rank=rank, **kw))


def train_adapters(policy, steps=3):
    """A few plain gradient steps on the adapters, so B is no longer zero."""
    ids, samples = rollouts(policy)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        logp, _ = policy.logprobs(ids, samples.response_ids, samples.mask, group_size=3)
        (-(logp * samples.mask).sum()).backward()
        optimizer.step()
    return ids, samples


def test_lora_trains_only_the_adapters_and_the_reference_is_the_base_model(model_folder):
    base = HFPolicy.from_folder(model_folder, max_new_tokens=6)
    policy = lora_policy(model_folder, target_modules=["q_proj", "v_proj"])
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert {id(p) for p in policy.trainable_parameters()} == {id(p) for n, p in policy.named_parameters()
                                                               if "lora_" in n}
    reference = policy.frozen_reference()
    assert not list(reference.parameters()) or not any(p.requires_grad for p in reference.parameters())
    ids, samples = train_adapters(policy)
    args = (ids, samples.response_ids, samples.mask)
    want, _ = base.logprobs(*args, group_size=3)
    moved, _ = policy.logprobs(*args, group_size=3)
    assert (moved - want).abs().max() > 1e-3                                   # the adapters did train
    got, _ = reference.logprobs(*args, group_size=3)
    assert torch.equal(got, want)                                              # adapters off: the base model
    assert not got.requires_grad
    again, _ = policy.logprobs(*args, group_size=3)
    assert torch.equal(again, moved)                                           # the policy's adapters are back on


def test_lora_reference_refresh_takes_the_policy_adapters_without_a_second_model(model_folder):
    policy = lora_policy(model_folder)
    reference = policy.frozen_reference()
    ids, samples = train_adapters(policy)
    args = (ids, samples.response_ids, samples.mask)
    reference.load_state_dict(policy.state_dict())                            # a refresh (algo.ref_refresh_every)
    want, _ = policy.logprobs(*args, group_size=3)
    torch.testing.assert_close(reference.logprobs(*args, group_size=3)[0], want.detach(), atol=0, rtol=0)
    train_adapters(policy, steps=1)
    torch.testing.assert_close(reference.logprobs(*args, group_size=3)[0], want.detach(), atol=0, rtol=0)
    saved = reference.state_dict()
    assert saved and all("lora_" in key for key in saved)                      # only the adapters are its state


def test_lora_state_dict_round_trip_and_merged_save_loads_without_peft(model_folder, tmp_path):
    policy = lora_policy(model_folder)
    ids, samples = train_adapters(policy)
    args = (ids, samples.response_ids, samples.mask)
    want, _ = policy.logprobs(*args, group_size=3)
    fresh = lora_policy(model_folder)
    fresh.load_state_dict(policy.state_dict())                                 # a checkpoint: adapters included
    assert torch.equal(fresh.logprobs(*args, group_size=3)[0], want)
    policy.save_hf(tmp_path / "final")
    config = (tmp_path / "final" / "config.json").read_text()
    assert not (tmp_path / "final" / "adapter_config.json").exists() and "lora" not in config.lower()
    plain = HFPolicy.from_folder(tmp_path / "final", max_new_tokens=6)          # no lora config: plain weights
    assert not any("lora_" in name for name, _ in plain.named_parameters())
    torch.testing.assert_close(plain.logprobs(*args, group_size=3)[0], want.detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(policy.logprobs(*args, group_size=3)[0], want)         # saving left the policy as it was


def test_config_policy_lora_builds_adapters_and_names_a_missing_module(model_folder):
    pytest.importorskip("peft")
    from rlvr.errors import ConfigError

    def built(**extra):
        cfg = load_config(None, {"task.name": "sort-text", "task.length": 3, "policy.kind": "hf",
                                 "policy.model": str(model_folder), **extra})
        return build_policy(cfg.policy, build_task(cfg.task))

    assert built().peft is None and all(p.requires_grad for p in built().parameters())   # rank 0: off
    policy = built(**{"policy.lora.rank": 2, "policy.lora.alpha": 4.0})
    assert policy.peft is not None and all("lora_" in n for n, p in policy.named_parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match="no module named 'w_q'"):
        built(**{"policy.lora.rank": 2, "policy.lora.target_modules": ["w_q"]})


@pytest.mark.parametrize("shared", [False, True])
def test_bf16_autocast_hf_logprobs_stay_within_stated_tolerance_of_float32(model_folder, shared):
    """train.bf16 on an HF policy (trainer.autocast: matrix products in bf16, log-softmax in fp32):
    per-token log-probs within 0.05 nats of float32, 0.02 on average, and in float32."""
    from rlvr.trainer import autocast

    policy = HFPolicy.from_folder(model_folder, max_new_tokens=6, shared_prefix=shared)
    ids, samples = rollouts(policy)
    args = (ids, samples.response_ids, samples.mask)
    with torch.no_grad():
        lp32, _ = policy.logprobs(*args, group_size=3)
        with autocast(policy, True):
            lp16, _ = policy.logprobs(*args, group_size=3)
    diff = ((lp16 - lp32) * samples.mask).abs()
    assert lp16.dtype == torch.float32 and not torch.equal(lp16, lp32)       # bf16 did run, results are fp32
    assert diff.max() < 0.05 and diff.sum() / samples.mask.sum() < 0.02, diff.max()


# ---------------------------------------------------------------- prompt length limit, stop strings
def hf_from_config(model_folder, **extra):
    cfg = load_config(None, {"task.name": "sort-text", "task.length": 3, "policy.kind": "hf",
                             "policy.model": str(model_folder), **extra})
    return build_policy(cfg.policy, build_task(cfg.task))


def test_a_prompt_over_max_prompt_length_is_one_error_line_or_cut_from_the_left(model_folder):
    from rlvr.errors import ConfigError, UserError

    plain = hf_from_config(model_folder)
    full = plain.codec.encode_prompt("2 2 0 1>")
    limited = hf_from_config(model_folder, **{"policy.max_prompt_length": 4})
    with pytest.raises(UserError, match=f"a prompt is {len(full)} tokens, the limit is 4"):
        limited.encode_prompts(["2 2 0 1>"])
    cut = hf_from_config(model_folder, **{"policy.max_prompt_length": 4, "policy.truncate_prompts": True})
    assert cut.encode_prompts(["2 2 0 1>", "1>"])[0].tolist() == full[-4:]
    assert limited.encode_prompts(["1>"]).tolist() == plain.encode_prompts(["1>"]).tolist()   # short: unchanged
    with pytest.raises(ConfigError, match="truncate_prompts"):
        hf_from_config(model_folder, **{"policy.truncate_prompts": True})


def test_a_stop_string_ends_a_row_like_eos_and_stays_in_the_response(model_folder):
    """Same draws with and without the stop string: each stopped row is the unstopped row cut right
    after the token that completed the stop string; a row without it is unchanged."""
    free = hf_from_config(model_folder, **{"policy.max_new_tokens": 8})
    stopped = hf_from_config(model_folder, **{"policy.max_new_tokens": 8, "policy.stop": [" "]})
    ids, a = rollouts(free, group_size=4, seed=3)
    _, b = rollouts(stopped, group_size=4, seed=3)
    texts_a = [c.text for c in free.decode_responses(a.response_ids, a.mask)]
    texts_b = [c.text for c in stopped.decode_responses(b.response_ids, b.mask)]
    assert any(" " in t for t in texts_a)                                    # the stop string does occur
    for row, (ta, tb) in enumerate(zip(texts_a, texts_b, strict=True)):
        n = int(b.mask[row].sum())
        assert torch.equal(b.response_ids[row, :n], a.response_ids[row, :n])
        if " " in ta:
            assert tb == ta[: ta.index(" ") + 1]                             # kept, and nothing after it
        else:
            assert tb == ta and n == int(a.mask[row].sum())
    logp, _ = stopped.logprobs(ids, b.response_ids, b.mask, group_size=4)
    torch.testing.assert_close(logp * b.mask, b.logprobs, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- LoRA state, dropout, checkpointing
def test_a_lora_policys_state_is_its_adapters_and_a_mismatched_state_is_one_error(model_folder):
    from rlvr.errors import UserError

    policy = lora_policy(model_folder)
    names = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert set(policy.state_dict()) == names and names                       # the adapters, nothing else
    full = torch.nn.Module.state_dict(policy)                                 # a state written with the base
    assert len(full) > len(names)
    train_adapters(policy)
    fresh = lora_policy(model_folder)
    fresh.load_state_dict({**full, **policy.state_dict()})                    # base weights in it: skipped
    for name, value in policy.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)
    with pytest.raises(UserError, match="the saved adapters do not match"):
        lora_policy(model_folder, target_modules=["q_proj"]).load_state_dict(policy.state_dict())


def test_lora_dropout_acts_in_the_gradient_pass_only(model_folder):
    policy = lora_policy(model_folder, dropout=0.5)
    ids, samples = train_adapters(policy, steps=1)                          # B no longer 0: dropout shows
    args = (ids, samples.response_ids, samples.mask)
    with torch.no_grad():
        a, b = (policy.logprobs(*args, group_size=3)[0] for _ in range(2))
    assert torch.equal(a, b)                                                  # scoring: no dropout
    torch.manual_seed(1)
    c = policy.logprobs(*args, group_size=3)[0]
    torch.manual_seed(2)
    d = policy.logprobs(*args, group_size=3)[0]
    assert (c - d).abs().max() > 1e-4                                         # the gradient pass: dropout
    assert not policy.model.training                                          # and the modes restored


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_same_log_probs_and_gradients(model_folder, lora):
    """transformers' checkpointing (recompute in backward) against the plain pass: equal values and
    gradients; the model is back in eval mode afterwards."""
    extra = {"policy.lora.rank": 4} if lora else {}
    if lora:
        pytest.importorskip("peft")
    plain = hf_from_config(model_folder, **extra)
    torch.manual_seed(0)
    ids, samples = rollouts(plain)
    grads, counts = [], []
    for checkpointing in (False, True):
        policy = hf_from_config(model_folder, **extra, **{"policy.gradient_checkpointing": checkpointing})
        if lora:
            policy.load_state_dict({k: v + 0.01 for k, v in plain.state_dict().items()})  # B != 0
        calls = []
        mlp = next(m for name, m in policy.model.named_modules() if name.endswith("layers.0.mlp"))
        forward = mlp.forward

        def counted(*args, forward=forward, calls=calls, **kwargs):
            calls.append(1)
            return forward(*args, **kwargs)
        mlp.forward = counted
        policy.zero_grad()
        logp, _ = policy.logprobs(ids, samples.response_ids, samples.mask, group_size=3)
        (logp * samples.mask * torch.linspace(-1, 2, logp.shape[1])).sum().backward()
        grads.append((logp.detach(), torch.cat([p.grad.flatten() for p in policy.trainable_parameters()])))
        assert policy.gradient_checkpointing is checkpointing and not policy.model.training
        counts.append(len(calls))
    assert counts[1] > counts[0]                                              # recomputed in the backward pass
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-6, rtol=1e-5)
    assert grads[0][1].abs().max() > 1e-4


def test_gradient_checkpointing_refuses_the_shared_prompt_pass(model_folder):
    from rlvr.errors import ConfigError

    with pytest.raises(ConfigError, match="policy.gradient_checkpointing: not with policy.shared_prefix"):
        hf_from_config(model_folder, **{"policy.gradient_checkpointing": True, "policy.shared_prefix": True})


def test_an_hf_lora_run_resumes_exactly_from_adapter_only_checkpoints(model_folder, tmp_path):
    """Killed mid-run and resumed: the same metric rows and adapters as the run never stopped; the
    checkpoints hold the adapters, not the base model."""
    pytest.importorskip("peft")
    from rlvr.runs.checkpoint import Checkpoints
    from rlvr.trainer import Trainer
    from test_checkpoint import comparable, crash_during_step, metrics

    def cfg(name):
        return load_config(None, {"task.name": "sort-text", "task.length": 3, "policy.kind": "hf",
                                  "policy.model": str(model_folder), "policy.lora.rank": 4, "policy.lora.alpha": 8.0,
                                  "train.outer_steps": 4, "train.inner_steps": 2, "train.prompts_per_step": 2,
                                  "train.group_size": 3, "eval.every": 2, "eval.pass_samples": 2, "eval.pass_k": 1,
                                  "task.num_eval_prompts": 3, "checkpoint.every": 2, "algo.loss": "clipped",
                                  "algo.kl_coef": 0.1, "algo.ref_refresh_every": 3, "optim.name": "adamw",
                                  "optim.lr": 1e-2, "run_dir": str(tmp_path / name)})

    whole = Trainer(cfg("whole"), show_progress=False)
    whole.run()
    crash_during_step(Trainer(cfg("run"), show_progress=False), 3)
    resumed = Trainer(cfg("run"), show_progress=False)
    resumed.run(resume=True)
    assert comparable(metrics(tmp_path / "run")) == comparable(metrics(tmp_path / "whole"))
    for name, value in whole.policy.state_dict().items():
        assert torch.equal(resumed.policy.state_dict()[name], value), name
    state = Checkpoints(tmp_path / "run", keep=1).latest().state
    assert set(state["policy"]) == set(whole.policy.state_dict()) and all("lora_" in k for k in state["policy"])
    assert (tmp_path / "run" / "final" / "config.json").is_file()            # merged: a plain HF folder
