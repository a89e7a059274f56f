"""algo.top_entropy_quantile (rlvr.algorithms.selection): the policy-gradient term on the batch's
high-entropy tokens only (Wang et al. 2025, arXiv:2506.01939). The threshold and the selection by hand,
the gradient against a loss written by hand on the selected tokens, micro-batches and
train.skip_flat_groups against the whole batch, and q = 1 against the default."""

import math

import numpy as np
import pytest
import torch

from rlvr.algorithms.selection import entropy_threshold, high_entropy_tokens, selection_metrics
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.trainer import Trainer
from test_micro_batches import TINY_LM

# 7 valid tokens, sorted: .125 .25 .375 .5 .75 .875 .875 (a tie at the top); 8.0 is padding
ENTROPY = torch.tensor([[0.125, 0.875, 0.5, 8.0],
                        [0.375, 0.875, 0.25, 0.75]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0],
                     [1.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize(("q", "tau", "selected"), [
    (1.0, 0.125, [[1, 1, 1, 0], [1, 1, 1, 1]]),      # p = 0: the minimum, every valid token
    (0.5, 0.5, [[0, 1, 1, 0], [0, 1, 0, 1]]),        # p = 3: h_(3) = .5 exactly
    (0.25, 0.8125, [[0, 1, 0, 0], [0, 1, 0, 0]]),    # p = 4.5: halfway between .75 and .875
    (0.1, 0.875, [[0, 1, 0, 0], [0, 1, 0, 0]]),      # p = 5.4: inside the tie, both tied tokens kept
    (0.01, 0.875, [[0, 1, 0, 0], [0, 1, 0, 0]]),     # never fewer than the top value's ties
])
def test_threshold_and_selection_by_hand(q, tau, selected):
    """tau = h_(floor p) + (p - floor p)(h_(ceil p) - h_(floor p)), p = (1 - q)(n - 1), over the valid
    tokens only; selected: valid and H >= tau. The padding's 8.0 is neither counted nor selected."""
    assert float(entropy_threshold(ENTROPY, MASK, top_quantile=q)) == pytest.approx(tau, abs=1e-7)
    selection = high_entropy_tokens(ENTROPY, MASK, top_quantile=q)
    assert selection.tolist() == selected
    assert selection.dtype == MASK.dtype
    assert float(selection_metrics(selection, MASK)["policy/selected_token_frac"]) == pytest.approx(
        sum(map(sum, selected)) / 7)


def test_the_threshold_is_numpys_linear_quantile_and_the_count_is_exact():
    """Random continuous entropies with ragged padding: tau equals numpy's linear (1 - q) quantile of the
    valid entropies, and exactly n - ceil((1 - q)(n - 1)) tokens are selected (no ties)."""
    generator = torch.Generator().manual_seed(0)
    entropy = torch.rand(6, 9, generator=generator, dtype=torch.float64) * 3
    mask = (torch.rand(6, 9, generator=generator) < 0.6).double()
    entropy[mask == 0] = 100.0  # padding holds the largest values: selecting it would show
    valid = entropy[mask != 0].numpy()
    n = valid.size
    for q in (0.05, 0.2, 0.37, 0.5, 0.8, 0.999):
        tau = float(entropy_threshold(entropy, mask, top_quantile=q))
        assert tau == pytest.approx(float(np.quantile(valid, 1 - q)), rel=1e-12)
        selection = high_entropy_tokens(entropy, mask, top_quantile=q)
        assert int(selection.sum()) == n - math.ceil((1 - q) * (n - 1)), q
        assert float((selection * (1 - mask)).sum()) == 0


def test_q_one_selects_every_valid_token_whatever_the_ties_and_nothing_without_tokens():
    flat = torch.full((3, 4), 0.7)                            # every entropy tied
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert torch.equal(high_entropy_tokens(flat, mask, top_quantile=1.0), mask)
    assert torch.equal(high_entropy_tokens(flat, mask, top_quantile=0.2), mask)  # a tie keeps them all
    assert torch.equal(high_entropy_tokens(ENTROPY, MASK, top_quantile=1.0), MASK)
    empty = torch.zeros(2, 3)
    assert math.isinf(float(entropy_threshold(flat[:2, :3], empty, top_quantile=0.5)))
    assert torch.equal(high_entropy_tokens(flat[:2, :3], empty, top_quantile=0.5), empty)
    assert float(selection_metrics(empty, empty)["policy/selected_token_frac"]) == 0.0


def test_the_config_field_is_validated():
    assert load_config(None).algo.top_entropy_quantile == 1.0
    assert load_config(None, {"algo.top_entropy_quantile": 0.2}).algo.top_entropy_quantile == 0.2
    for bad, message in [(0, "algo.top_entropy_quantile: 0.0 must be > 0.0"),
                         (1.5, "algo.top_entropy_quantile: 1.5 must be <= 1.0")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, {"algo.top_entropy_quantile": bad})


# ----------------------------------------------------------------------------- through the trainer

POLICIES = {"toy": {"task.reward": "position-match"}, "transformer": {**TINY_LM, "task.copy_weight": 0.5}}


def trainer_and_batch(tmp_path, policy, q, **overrides):
    cfg = load_config(None, {**POLICIES[policy], "train.prompts_per_step": 3, "train.group_size": 4,
                             "algo.deltas": "raw", "algo.loss": "clipped", "algo.top_entropy_quantile": q,
                             "train.diagnostics_every": 0, "run_dir": str(tmp_path / "run"), **overrides})
    t = Trainer(cfg, show_progress=False)
    return t, t.rollout_backend.rollouts(3)


def hand_selection(t, rollouts, loss_mask, q):
    """The selection from a plain reference: numpy's quantile of pi_old's entropies over the loss tokens."""
    with torch.no_grad():
        _, entropy = t.policy.logprobs(rollouts.prompt_ids, rollouts.response_ids, rollouts.mask,
                                       group_size=rollouts.group_size)
    tau = np.quantile(entropy[loss_mask != 0].double().numpy(), 1 - q)
    return ((entropy.double() >= tau) & (loss_mask != 0)).to(loss_mask.dtype)


def clipped(ratio, advantages):
    """PPO's clipped per-token loss with eps 0.2 (the default range), by hand."""
    return -torch.minimum(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)


def flat_grad(t):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in t.policy.parameters()])


def trainer_gradient(t, parts):
    t.optimizer.zero_grad(set_to_none=True)
    loss, metrics = t.accumulate_gradient(parts, entropy_coef=0.0)
    return loss, metrics, flat_grad(t)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_the_gradient_is_that_of_a_loss_on_the_selected_tokens_by_hand(tmp_path, policy, aggregation):
    """With l_it PPO's clipped loss, the gradient of
        token-mean:           sum_{selected} l_it / (all valid tokens)
        seq-mean-token-mean:  mean_i sum_{t selected} l_it / |y_i|   (all of y_i's tokens)
    written here by hand, from the hand selection: the unselected tokens count in the denominators."""
    q = 0.3
    t, rollouts = trainer_and_batch(tmp_path, policy, q, **{"algo.aggregation": aggregation})
    batch = t.make_batch(rollouts)
    selection = hand_selection(t, rollouts, batch.loss_mask, q)
    assert torch.equal(batch.selection, selection)
    valid = int(batch.loss_mask.sum())
    assert 0 < int(selection.sum()) < valid  # a real choice
    loss, metrics, grad = trainer_gradient(t, [batch])

    t.optimizer.zero_grad(set_to_none=True)
    logp, _ = t.policy.logprobs(rollouts.prompt_ids, rollouts.response_ids, rollouts.mask,
                                group_size=rollouts.group_size)
    ratio = (logp - rollouts.logprobs).exp()
    terms = torch.where(selection != 0, clipped(ratio, batch.advantages), torch.zeros(()))
    if aggregation == "token-mean":
        by_hand = terms.sum() / valid
    else:
        by_hand = (terms.sum(-1) / batch.loss_mask.sum(-1)).mean()
    by_hand.backward()
    expected = flat_grad(t)
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    torch.testing.assert_close(metrics["loss/policy"], by_hand.detach(), rtol=1e-5, atol=1e-7)


def test_truncated_responses_are_neither_counted_nor_selected(tmp_path):
    """With algo.mask_truncated the quantile is over the loss tokens: a truncated response's tokens,
    whose entropies tie with their group-mates' on the toy policy, are never selected."""
    q = 0.5
    t, rollouts = trainer_and_batch(tmp_path, "toy", q, **{"algo.mask_truncated": True})
    rollouts.truncated = torch.zeros(12, dtype=torch.bool)
    rollouts.truncated[[1, 6, 9]] = True
    batch = t.make_batch(rollouts)
    assert batch.loss_mask[[1, 6, 9]].sum() == 0
    assert torch.equal(batch.selection, hand_selection(t, rollouts, batch.loss_mask, q))
    assert float((batch.selection * (1 - batch.loss_mask)).sum()) == 0
    # power: in the truncated responses' groups some position is selected
    assert float(batch.selection[[0, 2, 3, 4, 5, 7, 8, 10, 11]].sum()) > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_micro_batches_train_on_the_tokens_the_whole_batch_selected(tmp_path, policy):
    """train.micro_batch_size 4: one group per micro-batch. A threshold of each micro-batch's own would
    select other tokens (checked, so this test has power); the accumulated gradient is the whole batch's."""
    q = 0.3
    t, rollouts = trainer_and_batch(tmp_path, policy, q, **{"train.micro_batch_size": 4})
    batch = t.make_batch(rollouts)
    parts = t.learner_slices(batch)
    assert len(parts) == 3
    with torch.no_grad():
        own = [high_entropy_tokens(t.policy.logprobs(p.rollouts.prompt_ids, p.rollouts.response_ids, p.rollouts.mask,
                                                     group_size=4)[1], p.loss_mask, top_quantile=q) for p in parts]
    assert any(not torch.equal(mine, part.selection) for mine, part in zip(own, parts, strict=True))
    whole_loss, whole_metrics, whole = trainer_gradient(t, [batch])
    micro_loss, micro_metrics, micro = trainer_gradient(t, parts)
    assert float(whole.abs().max()) > 0
    torch.testing.assert_close(micro, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))
    torch.testing.assert_close(micro_loss, whole_loss, rtol=1e-5, atol=1e-7)


def test_skip_flat_groups_trains_on_the_tokens_the_whole_batch_selected(tmp_path):
    """The flat group's tokens count in the quantile (they are the batch's); leaving the group out of the
    forward keeps the other groups' selection and the gradient."""
    q = 0.2
    t, rollouts = trainer_and_batch(tmp_path, "toy", q)
    batch = t.make_batch(rollouts)
    batch.advantages = torch.randn(batch.advantages.shape, generator=torch.Generator().manual_seed(2))
    batch.advantages[4:8] = 0.0  # the middle group is flat
    t.cfg.train.skip_flat_groups = True
    parts = t.learner_slices(batch)
    assert [len(p.rollouts.prompts) for p in parts] == [2]
    trained = torch.cat([batch.loss_mask[:4], batch.loss_mask[8:]])
    with torch.no_grad():
        entropy = t.policy.logprobs(parts[0].rollouts.prompt_ids, parts[0].rollouts.response_ids,
                                    parts[0].rollouts.mask, group_size=4)[1]
    assert not torch.equal(high_entropy_tokens(entropy, trained, top_quantile=q), parts[0].selection)  # power
    _, _, whole = trainer_gradient(t, [batch])
    _, _, skipped = trainer_gradient(t, parts)
    assert float(whole.abs().max()) > 0
    torch.testing.assert_close(skipped, whole, rtol=1e-5, atol=1e-6 * float(whole.abs().max()))


def test_the_selection_is_a_constant_of_the_batch_across_inner_steps(tmp_path):
    """After the policy moved (a later inner step), the batch still trains on pi_old's selection:
    the gradient equals the by-hand loss (REINFORCE, -A log pi) on those tokens, not on pi_theta's
    top entropies."""
    q = 0.3
    t, rollouts = trainer_and_batch(tmp_path, "toy", q, **{"algo.loss": "naive"})
    batch = t.make_batch(rollouts)
    before = batch.selection.clone()
    with torch.no_grad():
        for p in t.policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    moved = hand_selection(t, rollouts, batch.loss_mask, q)
    assert not torch.equal(moved, before)  # pi_theta would pick other tokens
    assert torch.equal(t.make_batch(rollouts).selection, moved)  # (a new batch would)
    loss, _, grad = trainer_gradient(t, [batch])
    assert torch.equal(batch.selection, before)
    t.optimizer.zero_grad(set_to_none=True)
    logp, _ = t.policy.logprobs(rollouts.prompt_ids, rollouts.response_ids, rollouts.mask, group_size=4)
    terms = -batch.advantages * logp
    (torch.where(before != 0, terms, torch.zeros(())).sum() / batch.loss_mask.sum()).backward()
    expected = flat_grad(t)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))


def run(tmp_path, name, **overrides):
    cfg = load_config(None, {"task.reward": "position-match", "train.outer_steps": 3, "train.inner_steps": 2,
                             "train.prompts_per_step": 3, "train.group_size": 4, "eval.every": 3,
                             "algo.deltas": "grpo", "algo.loss": "clipped", "run_dir": str(tmp_path / name),
                             **overrides})
    t = Trainer(cfg, show_progress=False)
    t.run()
    return t


def test_q_one_leaves_a_run_bit_identical_to_the_default_and_q_below_one_changes_it(tmp_path):
    default = run(tmp_path, "default")
    one = run(tmp_path, "one", **{"algo.top_entropy_quantile": 1.0})
    fifth = run(tmp_path, "fifth", **{"algo.top_entropy_quantile": 0.2})

    def numbers(t):
        return [{k: v for k, v in row.items() if not k.startswith("time/") and k != "perf/tokens_per_s"}
                for row in t.history]
    assert numbers(one) == numbers(default)
    for a, b in zip(one.policy.parameters(), default.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all("policy/selected_token_frac" not in row for row in default.history)
    fractions = [row["policy/selected_token_frac"] for row in fifth.history if "loss/total" in row]
    assert len(fractions) == 3 and all(0 < f < 1 for f in fractions), fractions
    assert any(not torch.equal(a, b) for a, b in zip(fifth.policy.parameters(), default.policy.parameters(),
                                                      strict=True))


def test_q_one_through_the_selection_path_is_bit_identical(tmp_path):
    """A selection of every loss token (q = 1 through ``high_entropy_tokens``) changes no bit of the
    loss or the gradient: masking by a 0/1 selection is exact."""
    t, rollouts = trainer_and_batch(tmp_path, "transformer", 1.0)
    batch = t.make_batch(rollouts)
    assert batch.selection is None  # q = 1: no selection, no extra forward
    loss, metrics, grad = trainer_gradient(t, [batch])
    with torch.no_grad():
        entropy = t.policy.logprobs(rollouts.prompt_ids, rollouts.response_ids, rollouts.mask, group_size=4)[1]
    batch.selection = high_entropy_tokens(entropy, batch.loss_mask, top_quantile=1.0)
    assert torch.equal(batch.selection, batch.loss_mask)
    loss_all, metrics_all, grad_all = trainer_gradient(t, [batch])
    assert torch.equal(loss, loss_all) and torch.equal(grad, grad_all)
    assert all(torch.equal(metrics[k], metrics_all[k]) for k in metrics)
