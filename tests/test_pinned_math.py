"""The math layer's numbers pinned by hand: every expected value is worked out in the comment
beside it, so a flipped sign, a swapped bound or a misplaced eps changes a number and fails."""

import math

import pytest
import torch

from rlvr.algorithms import (
    aggregate,
    compute_deltas,
    kl_penalty,
    policy_loss,
    schedule_value,
    token_entropy,
    token_logprobs,
)
from rlvr.algorithms.logprobs import sequence_logprob
from rlvr.algorithms.shaping import overlong_penalty
from rlvr.config import load_config
from rlvr.trainer import Trainer, compute_loss


def loss_and_grad(name, log_ratio, advantages, mask=None, **eps):
    """Per-token loss and d(sum of loss)/d(logp) at logp = log_ratio, old_logp = 0."""
    logp = torch.tensor(log_ratio, dtype=torch.float64).reshape(1, -1).requires_grad_(True)
    adv = torch.tensor(advantages, dtype=torch.float64).reshape(1, -1)
    mask = torch.ones_like(adv) if mask is None else torch.tensor(mask, dtype=torch.float64).reshape(1, -1)
    per_token, metrics = policy_loss(name, logp, torch.zeros_like(adv), adv, mask, **eps)
    per_token.sum().backward()
    return per_token.detach()[0].tolist(), logp.grad[0].tolist(), metrics


def close(a, b, tol=1e-9):
    return all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b, strict=True))


LN = math.log


# ---------------------------------------------------------------- policy losses
def test_clipped_loss_on_both_sides_of_the_clip_for_both_advantage_signs():
    """eps_low 0.1, eps_high 0.3 (asymmetric, so swapped bounds fail). l = -min(rA, clip(r)A).
    A = +1: r = 1.25 inside -> -1.25, grad -rA = -1.25 | r = 1.4 above -> -1.3, grad 0
            r = 0.5 below -> min(0.5, 0.9) = 0.5 -> -0.5, grad -0.5 (the unclipped term is smaller)
    A = -1: r = 0.85 below -> min(-0.85, -0.9) = -0.9 -> 0.9, grad 0
            r = 0.95 inside -> 0.95, grad +0.95 | r = 1.4 above -> min(-1.4, -1.3) -> 1.4, grad 1.4"""
    ratios = [1.25, 1.4, 0.5, 0.85, 0.95, 1.4]
    adv = [1, 1, 1, -1, -1, -1]
    loss, grad, metrics = loss_and_grad("clipped", [LN(r) for r in ratios], adv, clip_eps_low=0.1,
                                        clip_eps_high=0.3)
    assert close(loss, [-1.25, -1.3, -0.5, 0.9, 0.95, 1.4])
    assert close(grad, [-1.25, 0.0, -0.5, 0.0, 0.95, 1.4])
    assert math.isclose(float(metrics["policy/clip_frac"]), 2 / 6)      # r = 1.4 (A > 0) and r = 0.85 (A < 0)
    # approx_kl = mean((r - 1) - log r) over the six tokens
    expected_kl = sum((r - 1) - LN(r) for r in ratios) / 6
    assert math.isclose(float(metrics["policy/approx_kl"]), expected_kl, rel_tol=1e-9)
    assert math.isclose(float(metrics["policy/ratio_mean"]), sum(ratios) / 6, rel_tol=1e-9)


def test_dual_clip_bounds_negative_advantages_at_c_times_abs_a():
    """c = 3, eps 0.2. A = -2: r = 5 -> clipped loss 10 > c|A| = 6 -> 6, grad 0;
    r = 2 -> 4 < 6 -> 4, grad -rA = 4; A = +2, r = 5 -> -2.4 (clipped at 1.2), grad 0, no dual clip."""
    loss, grad, metrics = loss_and_grad("dual-clip", [LN(5), LN(2), LN(5)], [-2, -2, 2],
                                        clip_eps_low=0.2, clip_eps_high=0.2, dual_clip_c=3.0)
    assert close(loss, [6.0, 4.0, -2.4])
    assert close(grad, [0.0, 4.0, 0.0])
    assert math.isclose(float(metrics["policy/dual_clip_frac"]), 1 / 3)


def test_ratio_and_naive_losses():
    """ratio: l = -rA, grad -rA. naive: l = -A logp, grad -A. logp = log 2, A = 3."""
    loss, grad, _ = loss_and_grad("ratio", [LN(2)], [3])
    assert close(loss, [-6.0]) and close(grad, [-6.0])
    loss, grad, _ = loss_and_grad("naive", [LN(2)], [3])
    assert close(loss, [-3 * LN(2)]) and close(grad, [-3.0])


def test_gspo_one_clipped_ratio_per_sequence():
    """Token log-ratios 0.1, 0.3 and a padded 5.0: s = exp(mean(0.1, 0.3)) = exp(0.2) = 1.2214028.
    eps 0.2/0.2: s > 1.2 with A = 1 -> every token's loss -1.2, grad 0.
    eps 0.2/0.3: inside -> loss -s, grad -s per real token (d s_it / d logp_t = s), padding 0."""
    s = math.exp(0.2)
    loss, grad, metrics = loss_and_grad("gspo", [0.1, 0.3, 5.0], [1, 1, 1], mask=[1, 1, 0],
                                        clip_eps_low=0.2, clip_eps_high=0.2)
    assert close(loss, [-1.2, -1.2, 0.0]) and close(grad, [0.0, 0.0, 0.0])
    assert math.isclose(float(metrics["policy/seq_ratio_mean"]), s, rel_tol=1e-9)
    assert float(metrics["policy/clip_frac"]) == 1.0              # 2 of the 2 real tokens, not 2 of 3
    loss, grad, _ = loss_and_grad("gspo", [0.1, 0.3, 5.0], [1, 1, 1], mask=[1, 1, 0],
                                  clip_eps_low=0.2, clip_eps_high=0.3)
    assert close(loss, [-s, -s, 0.0]) and close(grad, [-s, -s, 0.0])


def test_cispo_weighs_log_pi_by_the_clipped_ratio():
    """old_logp = 0 so logp = log r. l = -sg[clip(r)] A logp, grad -clip(r) A.
    r = e^0.5 = 1.6487 -> weight 1.3 (eps_high 0.3); r = e^-0.5 = 0.6065 -> 0.9 (eps_low 0.1);
    r = e^0.1 = 1.1052 -> inside, itself. A = 2, -1, 1."""
    loss, grad, metrics = loss_and_grad("cispo", [0.5, -0.5, 0.1], [2, -1, 1], clip_eps_low=0.1,
                                        clip_eps_high=0.3)
    r3 = math.exp(0.1)
    assert close(loss, [-1.3 * 2 * 0.5, -0.9 * -1 * -0.5, -r3 * 0.1])
    assert close(grad, [-2.6, 0.9, -r3])
    assert math.isclose(float(metrics["policy/clip_frac"]), 2 / 3)


def loss_and_grad_2d(name, log_ratio, advantages, logp=None, **settings):
    """loss_and_grad on a (2, 3) batch, all tokens real: old_logp = logp - log_ratio, so the ratio is
    the one given whatever logp is (logp defaults to log_ratio, old_logp 0)."""
    ratio = torch.tensor(log_ratio, dtype=torch.float64)
    current = (ratio if logp is None else torch.tensor(logp, dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor(advantages, dtype=torch.float64)
    per_token, metrics = policy_loss(name, current, current.detach() - ratio, adv, torch.ones_like(adv), **settings)
    per_token.sum().backward()
    return per_token.detach(), current.grad, metrics


def close2d(actual, expected, tol=1e-9):
    return torch.allclose(actual, torch.tensor(expected, dtype=torch.float64), rtol=tol, atol=tol)


def test_sapo_gate_by_hand():
    """f(r) = sigma(tau (r - 1)) 4 / tau, l = -f(r) A, dl/dlogp = -A 4 sigma (1 - sigma) r.
    tau_pos 1, tau_neg 2 (apart, so swapping them fails).
    Row 1, A = +2, tau 1:  r = 1:         sigma 1/2 -> f 2,   l -4,   grad -2 * 1 * 1 = -2
                           r = 1 + ln 3:  sigma 3/4 -> f 3,   l -6,   grad -2 * 3/4 * (1 + ln 3) = -3.1479184
                           r = 1 - ln 2:  sigma 1/3 -> f 4/3, l -8/3, grad -2 * 8/9 * (1 - ln 2) = -0.5455161
    Row 2, A = -1, tau 2:  r = 1:           sigma 1/2 -> f 1,   l 1,   grad 1
                           r = 1 + ln 3/2:  sigma 3/4 -> f 3/2, l 3/2, grad 3/4 (1 + ln 3/2) = 1.1619796
                           r = 1 - ln 3/2:  sigma 1/4 -> f 1/2, l 1/2, grad 3/4 (1 - ln 3/2) = 0.3380204"""
    ratios = [[1, 1 + LN(3), 1 - LN(2)], [1, 1 + LN(3) / 2, 1 - LN(3) / 2]]
    loss, grad, metrics = loss_and_grad_2d("sapo", [[LN(r) for r in row] for row in ratios],
                                           [[2.0] * 3, [-1.0] * 3], sapo_tau_pos=1.0, sapo_tau_neg=2.0)
    assert close2d(loss, [[-4, -6, -8 / 3], [1, 1.5, 0.5]])
    assert close2d(grad, [[-2, -1.5 * (1 + LN(3)), -16 / 9 * (1 - LN(2))],
                          [1, 0.75 * (1 + LN(3) / 2), 0.75 * (1 - LN(3) / 2)]])
    # the gradient weight 4 sigma (1 - sigma): 1, 3/4, 8/9 and 1, 3/4, 3/4
    assert math.isclose(float(metrics["policy/sapo_weight_mean"]), (1 + 0.75 + 8 / 9 + 1 + 0.75 + 0.75) / 6)


def test_gmpo_geometric_mean_of_sign_clipped_ratios_by_hand():
    """clip_low 0.3, clip_high 0.5 (apart, so swapping them fails); old_logp 0, logp = log r.
    Row 1, A = +1: log r (0.2, 0.8, -0.6) -> only the upper clip: c = (0.2, 0.5, -0.6), mean 0.1/3,
        s1 = e^(1/30) = 1.0338951; every token's loss -s1; gradient -A s1 where c is not clipped:
        (-s1, 0, -s1) (the -0.6 is below -0.3 but a positive advantage has no lower clip).
    Row 2, A = -2: log r (-0.5, 0.1, 0.7) -> only the lower clip: c = (-0.3, 0.1, 0.7), mean 1/6,
        s2 = e^(1/6) = 1.1813604; loss 2 s2; gradient (0, 2 s2, 2 s2)."""
    s1, s2 = math.exp(0.1 / 3), math.exp(0.5 / 3)
    loss, grad, metrics = loss_and_grad_2d("gmpo", [[0.2, 0.8, -0.6], [-0.5, 0.1, 0.7]], [[1.0] * 3, [-2.0] * 3],
                                           gmpo_clip_low=0.3, gmpo_clip_high=0.5)
    assert close2d(loss, [[-s1] * 3, [2 * s2] * 3])
    assert close2d(grad, [[-s1, 0, -s1], [0, 2 * s2, 2 * s2]])
    assert math.isclose(float(metrics["policy/clip_frac"]), 2 / 6)           # the 0.8 and the -0.5
    assert math.isclose(float(metrics["policy/seq_ratio_mean"]), (s1 + s2) / 2)
    # seq-mean-token-mean is the paper's mean_i (-A_i s_i), and its gradient s_i/3 per unclipped token
    logp = torch.tensor([[0.2, 0.8, -0.6], [-0.5, 0.1, 0.7]], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[1.0] * 3, [-2.0] * 3], dtype=torch.float64)
    per_token, _ = policy_loss("gmpo", logp, torch.zeros_like(adv), adv, torch.ones_like(adv),
                               gmpo_clip_low=0.3, gmpo_clip_high=0.5)
    value = aggregate(per_token, torch.ones_like(adv), "seq-mean-token-mean")
    value.backward()
    assert math.isclose(float(value), (-s1 + 2 * s2) / 2, rel_tol=1e-12)
    assert close2d(logp.grad, [[-s1 / 6, 0, -s1 / 6], [0, s2 / 3, s2 / 3]])


# A 2x3 batch for the covariance losses: A = +2 on row 1, -2 on row 2 (mean 0); logp centred on -4 by
# d = [[3, 1.5, -1.25], [-2, -1, -0.25]] (sum 0, so mean logp = -4): cov_t = d_t A_t =
#     [[6, 3, -2.5], [4, 2, 0.5]]
# ratios [[1.1, 1.0, 0.9], [0.5, 1.0, 1.1]], eps 0.2: PPO clips only r = 0.5 (A < 0, r < 0.8).
COV_LOGP = [[-1.0, -2.5, -5.25], [-6.0, -5.0, -4.25]]
COV_ADV = [[2.0] * 3, [-2.0] * 3]
COV_RATIOS = [[1.1, 1.0, 0.9], [0.5, 1.0, 1.1]]


def test_clip_cov_detaches_the_top_candidate_by_covariance():
    """PPO loss (eps 0.2): row 1 (A 2) -2r = (-2.2, -2, -1.8), grad -rA the same; row 2 (A -2):
    r = 0.5 clipped -> loss -min(-1, -1.6) = 1.6, grad 0; r = 1, 1.1 -> 2, 2.2, grad 2, 2.2.
    Candidates: real, not PPO-clipped, 1 < cov < 5: cov 6 is above the bound, cov 4 is PPO-clipped,
    so 3 (row 1, token 2) and 2 (row 2, token 2). ratio 0.2 of 6 tokens -> floor(1.2) = 1 token: the
    cov-3 one, whose gradient -2 becomes 0 (its value -2 stays)."""
    loss, grad, metrics = loss_and_grad_2d("clip-cov", [[LN(r) for r in row] for row in COV_RATIOS], COV_ADV,
                                           logp=COV_LOGP, clip_eps_low=0.2, clip_eps_high=0.2,
                                           clip_cov_ratio=0.2, clip_cov_lower=1.0, clip_cov_upper=5.0)
    assert close2d(loss, [[-2.2, -2, -1.8], [1.6, 2, 2.2]])
    assert close2d(grad, [[-2.2, 0, -1.8], [0, 2, 2.2]])
    assert math.isclose(float(metrics["policy/clip_frac"]), 1 / 6)
    assert math.isclose(float(metrics["policy/cov_selected_frac"]), 1 / 6)
    # ratio 0.34 -> floor(2.04) = 2 tokens: both candidates, the cov-2 one too (its gradient 2 -> 0)
    _, grad, metrics = loss_and_grad_2d("clip-cov", [[LN(r) for r in row] for row in COV_RATIOS], COV_ADV,
                                        logp=COV_LOGP, clip_eps_low=0.2, clip_eps_high=0.2,
                                        clip_cov_ratio=0.34, clip_cov_lower=1.0, clip_cov_upper=5.0)
    assert close2d(grad, [[-2.2, 0, -1.8], [0, 0, 2.2]])


def test_kl_cov_penalises_the_top_covariance_tokens_by_hand():
    """Ratio loss -rA: row 1 (-2.2, -2, -1.8), row 2 (1, 2, 2.2), gradients the same.
    ratio 0.34 of 6 -> 2 tokens, the top covariances 6 (row 1 token 1, r 1.1) and 4 (row 2 token 1,
    r 0.5), each + k |log r| with k 0.5: + 0.5 ln 1.1 = 0.0476551 and + 0.5 ln 2 = 0.3465736;
    gradients + k sign(log r): -2.2 + 0.5 = -1.7 and 1 - 0.5 = 0.5."""
    loss, grad, metrics = loss_and_grad_2d("kl-cov", [[LN(r) for r in row] for row in COV_RATIOS], COV_ADV,
                                           logp=COV_LOGP, kl_cov_ratio=0.34, kl_cov_coef=0.5)
    assert close2d(loss, [[-2.2 + 0.5 * LN(1.1), -2, -1.8], [1 + 0.5 * LN(2), 2, 2.2]])
    assert close2d(grad, [[-1.7, -2, -1.8], [0.5, 2, 2.2]])
    assert math.isclose(float(metrics["policy/cov_selected_frac"]), 2 / 6)


# ---------------------------------------------------------------- deltas
def test_grpo_divides_by_std_plus_eps_outside_the_root():
    """Rewards (0, 2): mean 1, unbiased std sqrt(2). eps = 1 (large enough to see where it goes):
    (R - 1) / (sqrt(2) + 1) = +-0.41421356; eps inside the root would give 1/sqrt(3) = 0.577."""
    d = compute_deltas(torch.tensor([[0.0, 2.0]], dtype=torch.float64), "grpo", eps=1.0)
    assert close(d[0].tolist(), [-1 / (math.sqrt(2) + 1), 1 / (math.sqrt(2) + 1)])
    # population std (N): std = 1 -> +-1/2
    d = compute_deltas(torch.tensor([[0.0, 2.0]], dtype=torch.float64), "grpo", eps=1.0, unbiased_std=False)
    assert close(d[0].tolist(), [-0.5, 0.5])


def test_reinforce_plus_plus_whitens_over_the_batch_by_hand():
    """Rewards [[1, 0], [1, 1]]: batch mean 0.75; unbiased std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5.
    eps 0.5: (R - 0.75) / 1.0 = [[0.25, -0.75], [0.25, 0.25]]. Population std sqrt(0.75/4)."""
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    d = compute_deltas(rewards, "reinforce++", eps=0.5)
    assert close(d.flatten().tolist(), [0.25, -0.75, 0.25, 0.25])
    d = compute_deltas(rewards, "reinforce++", eps=0.0, unbiased_std=False)
    std = math.sqrt(0.75 / 4)
    assert close(d.flatten().tolist(), [0.25 / std, -0.75 / std, 0.25 / std, 0.25 / std])


def test_every_other_delta_mode_by_hand():
    """Rewards (1, 2, 6): mean 3. centered/dr-grpo (-2, -1, 3); rloo 3/2 of it (-3, -1.5, 4.5);
    max-only (0, 0, 6); pass-at-k: best 6, leave-one-out max (6, 6, 2) -> (0, 0, 4); raw itself."""
    rewards = torch.tensor([[1.0, 2.0, 6.0]], dtype=torch.float64)
    expected = {"raw": [1, 2, 6], "centered": [-2, -1, 3], "dr-grpo": [-2, -1, 3], "rloo": [-3, -1.5, 4.5],
                "max-only": [0, 0, 6], "pass-at-k": [0, 0, 4]}
    for mode, values in expected.items():
        assert close(compute_deltas(rewards, mode)[0].tolist(), values), mode


def test_gpg_scales_group_centred_rewards_by_batch_over_valid_groups():
    """Rewards [[1, 0, 2], [1, 1, 1], [3, 3, 0]]: B = 3 groups, the middle one flat -> B_valid 2,
    alpha 3/2. Centred: (0, -1, 1), (0, 0, 0), (1, 1, -2) -> times 3/2. All flat: 0 (alpha 3/1, no NaN)."""
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 1.0], [3.0, 3.0, 0.0]], dtype=torch.float64)
    assert close(compute_deltas(rewards, "gpg").flatten().tolist(), [0, -1.5, 1.5, 0, 0, 0, 1.5, 1.5, -3])
    flat = compute_deltas(torch.ones(2, 3, dtype=torch.float64), "gpg")
    assert torch.equal(flat, torch.zeros(2, 3, dtype=torch.float64))


# ---------------------------------------------------------------- KL, aggregation, log-probs, entropy
def test_kl_estimators_by_hand():
    """logp = -1, ref = -2: log q = ref - logp = -1. k1 = 1, k2 = 0.5, k3 = e^-1 - 1 + 1 = e^-1.
    Gradients in logp: k1 1, k2 -(log q) = 1, k3 1 - q = 1 - e^-1."""
    for name, value, grad in [("k1", 1.0, 1.0), ("k2", 0.5, 1.0), ("k3", math.exp(-1), 1 - math.exp(-1))]:
        logp = torch.tensor([[-1.0]], dtype=torch.float64, requires_grad=True)
        kl = kl_penalty(name, logp, torch.tensor([[-2.0]], dtype=torch.float64))
        kl.sum().backward()
        assert math.isclose(kl.item(), value, rel_tol=1e-12) and math.isclose(logp.grad.item(), grad), name
    # k3's value with k2's gradient
    logp = torch.tensor([[-1.0]], dtype=torch.float64, requires_grad=True)
    kl = kl_penalty("k3", logp, torch.tensor([[-2.0]], dtype=torch.float64), grad_name="k2")
    kl.sum().backward()
    assert math.isclose(kl.item(), math.exp(-1)) and math.isclose(logp.grad.item(), 1.0)


def test_aggregations_by_hand():
    """loss [[1, 2, 3], [4, 9, 9]], mask [[1, 1, 1], [1, 0, 0]]: token-mean 10/4 = 2.5;
    seq-mean-token-mean (2 + 4)/2 = 3; seq-mean-token-sum (6 + 4)/2 = 5; seq-sum-constant 5/4."""
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    expected = {"token-mean": 2.5, "seq-mean-token-mean": 3.0, "seq-mean-token-sum": 5.0, "seq-sum-constant": 1.25}
    for mode, value in expected.items():
        assert math.isclose(float(aggregate(loss, mask, mode, constant=4.0)), value), mode


def test_token_log_probs_sequence_log_probs_and_entropies_by_hand():
    """logits (1, 2, 3): logsumexp = 3.4076059644; log p(2) = -0.4076059644.
    Entropy of logits (0, 0) = ln 2; of (0, ln 3) (p = 1/4, 3/4) = 0.5623351446; of 4 equal = ln 4."""
    logits = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    assert math.isclose(float(token_logprobs(logits, torch.tensor([[2]]))), -0.4076059644443804, rel_tol=1e-12)
    entropies = token_entropy(torch.tensor([[0.0, 0.0, -1e9], [0.0, LN(3), -1e9], [1.0, 1.0, 1.0]],
                                           dtype=torch.float64))
    assert close(entropies.tolist(), [LN(2), 0.5623351446188083, LN(3)])
    # log pi(response) sums the real tokens only: -1 - 2 (the -5 is padding)
    assert sequence_logprob(torch.tensor([[-1.0, -2.0, -5.0]]), torch.tensor([[1.0, 1.0, 0.0]])).item() == -3.0


# ---------------------------------------------------------------- schedules, shaping
@pytest.mark.parametrize("name,progress,until,value", [
    ("constant", 0.7, 1.0, 1.0),
    ("linear", 0.0, 1.0, 1.0), ("linear", 0.25, 1.0, 0.75), ("linear", 0.25, 0.5, 0.5),
    ("linear", 0.75, 0.5, 0.0),                  # past ``until``: floored at 0, not -0.5
    ("cosine", 0.0, 1.0, 1.0), ("cosine", 0.5, 1.0, 0.5), ("cosine", 0.25, 1.0, (1 + math.sqrt(0.5)) / 2),
    ("cosine", 0.25, 0.5, 0.5), ("cosine", 0.75, 0.5, 0.0),   # capped at progress/until = 1, not rising
])
def test_every_schedule_by_hand(name, progress, until, value):
    assert math.isclose(schedule_value(name, progress, until=until), value, abs_tol=1e-12)


def test_overlong_penalty_by_hand():
    """L_max 10, buffer 4: 0 up to 6 tokens, then (6 - |y|)/4: 7 -> -0.25, 10 -> -1; truncated -1;
    times factor 2."""
    lengths = torch.tensor([5, 6, 7, 10, 3])
    truncated = torch.tensor([False, False, False, False, True])
    penalty = overlong_penalty(lengths, truncated, max_length=10, buffer=4, factor=2.0)
    assert close(penalty.tolist(), [0.0, 0.0, -0.5, -2.0, -2.0])


# ---------------------------------------------------------------- the trainer's loss assembly
@pytest.mark.parametrize("kl_in_loss", [True, False])
def test_total_loss_is_pg_plus_beta_kl_minus_c_entropy(tmp_path, kl_in_loss):
    """compute_loss against the three terms computed here from the policy's own log-probs:
    token-mean(pg) + 0.3 * token-mean(k3) - 0.05 * token-mean(entropy)."""
    cfg = load_config(None, {"train.prompts_per_step": 2, "train.group_size": 3, "algo.kl_coef": 0.3,
                             "algo.kl_in": "loss" if kl_in_loss else "reward", "algo.aggregation": "token-mean",
                             "algo.loss": "naive", "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)
    with torch.no_grad():
        for p in t.reference.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    batch = t.make_batch(t.rollout_backend.rollouts(2))
    r = batch.rollouts
    loss, metrics = compute_loss(t.policy, batch, cfg.algo, temperature=1.0, aggregation_constant=3.0,
                                 entropy_coef=0.05)
    logp, entropy = t.policy.logprobs(r.prompt_ids, r.response_ids, r.mask, group_size=r.group_size)
    tokens = r.mask.sum()
    pg = (-batch.advantages * logp * r.mask).sum() / tokens
    log_q = batch.ref_logprobs - logp
    kl = ((log_q.exp() - 1 - log_q) * r.mask).sum() / tokens
    beta = 0.3 if kl_in_loss else 0.0
    expected = pg + beta * kl - 0.05 * (entropy * r.mask).sum() / tokens
    assert kl.item() > 0.01 and ((entropy * r.mask).sum() / tokens).item() > 0.1
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.allclose(metrics["policy/kl"], kl, rtol=1e-5)
    assert torch.allclose(metrics["loss/policy"], pg, rtol=1e-5)


def test_the_reference_is_refreshed_at_steps_1_plus_multiples_of_r(tmp_path):
    """ref_refresh_every R = 2: the reference is the policy as it was after steps 2, 4 (refreshed at
    the start of steps 3, 5), and the initial policy during steps 1 and 2."""
    cfg = load_config(None, {"train.prompts_per_step": 2, "train.group_size": 3, "algo.kl_coef": 0.1,
                             "algo.ref_refresh_every": 2, "train.outer_steps": 5, "optim.lr": 0.05, "algo.deltas": "raw",
                             "run_dir": str(tmp_path / "run")})
    t = Trainer(cfg, show_progress=False)

    def weights(module):
        return torch.cat([p.detach().flatten().clone() for p in module.parameters()])

    policy_after = {0: weights(t.policy)}
    reference_during = {}
    for step in range(1, 6):
        t.outer_step(step)
        policy_after[step] = weights(t.policy)
        reference_during[step] = weights(t.reference)
    assert not torch.equal(policy_after[1], policy_after[0])        # the policy does move every step
    expected_source = {1: 0, 2: 0, 3: 2, 4: 2, 5: 4}
    for step, source in expected_source.items():
        assert torch.equal(reference_during[step], policy_after[source]), step
