"""Micro-batches (train.micro_batch_size): the accumulated gradient and the aggregated metrics equal
the whole batch's, for every aggregation, with the KL term and the entropy bonus (rlvr.batching)."""

import pytest
import torch

from rlvr.algorithms import AGGREGATIONS
from rlvr.batching import micro_batches
from rlvr.config import load_config
from rlvr.trainer import Trainer

TINY_LM = {"task.name": "sort-text", "task.length": 3, "policy.kind": "transformer",
           "policy.hidden_size": 16, "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2,
           "task.num_eval_prompts": 4}
POLICIES = {"toy": {}, "transformer": TINY_LM}
SUMMED = ("loss/policy", "loss/total", "policy/kl", "policy/entropy",
          "policy/approx_kl", "policy/ratio_mean", "policy/clip_frac")  # token means add up exactly too


def trainer_and_batch(tmp_path, policy, aggregation, kl_coef, micro_batch_size=None):
    cfg = load_config(None, {**POLICIES[policy], "train.prompts_per_step": 3, "train.group_size": 4,
                             "algo.loss": "clipped", "algo.aggregation": aggregation, "algo.kl_coef": kl_coef,
                             "train.micro_batch_size": micro_batch_size, "train.diagnostics_every": 0,
                             "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    rollouts = t.rollout_backend.rollouts(3)
    with torch.no_grad():  # move the policy off the sampler and the reference: ratios, KL and its gradient != 0
        for p in t.policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    batch = t.make_batch(rollouts)
    generator = torch.Generator().manual_seed(0)
    ragged = (torch.rand(batch.loss_mask.shape, generator=generator) < 0.7).to(batch.loss_mask.dtype)
    ragged[:, 0] = 1
    batch.loss_mask = batch.loss_mask * ragged  # uneven token counts per response and per micro-batch
    return t, batch


def gradient(t, parts):
    t.optimizer.zero_grad(set_to_none=True)
    loss, metrics = t.accumulate_gradient(parts, entropy_coef=0.05)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in t.policy.parameters()])
    return loss, metrics, flat


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
@pytest.mark.parametrize("aggregation", AGGREGATIONS.names())
def test_accumulated_micro_batches_give_the_whole_batch_gradient_and_metrics(tmp_path, policy, aggregation, kl_coef):
    t, batch = trainer_and_batch(tmp_path, policy, aggregation, kl_coef, micro_batch_size=9)
    parts = t.learner_slices(batch)
    assert [len(p.rollouts.prompts) for p in parts] == [2, 1]  # 9 responses: two groups of 4, then the rest
    whole_loss, whole_metrics, whole_grad = gradient(t, [batch])
    micro_loss, micro_metrics, micro_grad = gradient(t, parts)
    assert float(whole_grad.abs().max()) > 0
    torch.testing.assert_close(micro_grad, whole_grad, rtol=1e-5, atol=1e-6 * float(whole_grad.abs().max()))
    torch.testing.assert_close(micro_loss, whole_loss, rtol=1e-5, atol=1e-7)
    assert ("policy/kl" in whole_metrics) == (kl_coef > 0)
    for key in SUMMED:
        if key in whole_metrics:
            torch.testing.assert_close(micro_metrics[key], whole_metrics[key], rtol=1e-5, atol=1e-7, msg=key)


def test_micro_batches_are_whole_groups_and_uneven_when_the_size_asks(tmp_path):
    t, batch = trainer_and_batch(tmp_path, "toy", "token-mean", 0.0)
    sizes = {size: [len(p.rollouts.prompts) for p in micro_batches(batch, size, mode="token-mean", constant=1.0)]
             for size in (None, 0, 3, 8, 9, 12, 100)}
    assert sizes == {None: [3], 0: [3], 3: [1, 1, 1], 8: [2, 1], 9: [2, 1], 12: [3], 100: [3]}
    assert micro_batches(batch, None, mode="token-mean", constant=1.0)[0] is batch  # the default: as before
    two, one = micro_batches(batch, 8, mode="token-mean", constant=1.0)
    assert two.rollouts.prompts == batch.rollouts.prompts[:2] and one.rollouts.prompts == batch.rollouts.prompts[2:]
    torch.testing.assert_close(two.loss_mask, batch.loss_mask[:8])
    whole = float(batch.loss_mask.sum())
    assert two.token_share == pytest.approx(float(batch.loss_mask[:8].sum()) / whole)


def test_a_run_with_micro_batches_logs_the_metrics_of_the_whole_batch(tmp_path):
    def run(name, size):
        cfg = load_config(None, {"train.outer_steps": 2, "train.inner_steps": 2, "eval.every": 2,
                                 "algo.loss": "clipped", "algo.kl_coef": 0.1, "algo.aggregation": "seq-mean-token-mean",
                                 "train.micro_batch_size": size, "run_dir": str(tmp_path / name)})
        t = Trainer(cfg, show_progress=False)
        t.run()
        return t
    whole, micro = run("whole", None), run("micro", 10)
    for old, new in zip(whole.history[1:], micro.history[1:], strict=True):
        for key in ("loss/policy", "policy/kl", "policy/entropy", "policy/clip_frac", "policy/grad_norm"):
            assert new[key] == pytest.approx(old[key], rel=1e-4, abs=1e-6), key
