"""Process credit composes with every reward-side term (issue 15's first bug).

Per-token terms (the KL in the reward) are added on their own token, per-response terms (DAPO's
overlong penalty) on the response's last real token; the rewards-to-go then carry them.
"""

import torch

from rlvr.algorithms import token_advantages
from rlvr.algorithms.credit import shaped_token_rewards
from rlvr.config import load_config
from rlvr.trainer import Trainer


def test_shaped_token_rewards_by_hand():
    token_rewards = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 7.0]])   # 7.0 sits on padding
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    per_token = torch.tensor([[-0.1, -0.2, -0.3], [-0.4, -0.5, float("nan")]])
    per_response = torch.tensor([-0.5, -1.0])
    shaped = shaped_token_rewards(token_rewards, mask, per_response=per_response, per_token=per_token)
    # row 0: 1-0.1, 0-0.2, 1-0.3-0.5 (last real token is t=2)
    # row 1: 0-0.4, 1-0.5-1.0 (last real token is t=1), padding 0
    assert torch.allclose(shaped, torch.tensor([[0.9, -0.2, 0.2], [-0.4, -0.5, 0.0]]))
    # summed over the response: the task's token rewards plus exactly the outcome's shaping
    assert torch.allclose(shaped.sum(-1), torch.tensor([2.0 - 0.6 - 0.5, 1.0 - 0.9 - 1.0]))
    assert shaped_token_rewards(None, mask, per_response=per_response) is None


def test_the_last_real_token_is_found_in_every_row_shape():
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    shaped = shaped_token_rewards(torch.zeros(3, 4), mask, per_response=torch.tensor([1.0, 2.0, 3.0]))
    assert shaped.tolist() == [[1, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]]


def test_process_credit_of_shaped_token_rewards_by_hand():
    """One prompt, G = 2, centered deltas per position over the rewards-to-go of the shaped rewards
    [[0.9, -0.2, 0.2], [-0.4, -0.5, 0]]: to-go [[0.9, 0.0, 0.2], [-0.9, -0.5, 0.0]]; position means
    0, -0.25, 0.1 -> advantages [[0.9, 0.25, 0.1], [-0.9, -0.25, 0 (padding)]]."""
    shaped = torch.tensor([[0.9, -0.2, 0.2], [-0.4, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages = token_advantages("process", torch.zeros(1, 2), shaped, mask, mode="centered")
    assert torch.allclose(advantages, torch.tensor([[0.9, 0.25, 0.1], [-0.9, -0.25, 0.0]]))
    # outcome credit: each response's delta on its real tokens, 0 on padding
    outcome = token_advantages("outcome", torch.tensor([[0.5, -2.0]]), shaped, mask, mode="centered")
    assert outcome.tolist() == [[0.5, 0.5, 0.5], [-2.0, -2.0, 0.0]]


def trainer(tmp_path, **overrides):
    cfg = load_config(None, {"task.reward": "position-match", "train.prompts_per_step": 3,
                             "train.group_size": 4, "train.outer_steps": 2, "algo.credit": "process",
                             "algo.deltas": "raw", "run_dir": str(tmp_path / "run"), **overrides})
    return Trainer(cfg, show_progress=False)


def test_kl_in_the_reward_reaches_process_credit_token_by_token(tmp_path):
    """Fails on the code before the fix: process credit never read the shaped rewards, and the
    loss-side coefficient is 0 when the KL is in the reward, so beta 0.05 and 5.0 gave identical
    advantages."""
    runs = {}
    for coef in (0.05, 5.0):
        t = trainer(tmp_path, **{"algo.kl_coef": coef, "algo.kl_in": "reward", "algo.kl_estimator": "k1"})
        with torch.no_grad():
            for p in t.reference.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
        rollouts = t.rollout_backend.rollouts(3)
        batch = t.make_batch(rollouts)
        assert batch.kl_loss_coef == 0.0
        runs[coef] = (t, rollouts, batch)
    (t, rollouts, small), (_, same_rollouts, large) = runs[0.05], runs[5.0]
    assert torch.equal(rollouts.response_ids, same_rollouts.response_ids)
    assert not torch.allclose(small.advantages, large.advantages)
    # raw deltas: the advantage of token t is the shaped reward-to-go, sum_{s>=t} (r_s - beta k1_s)
    k1 = (rollouts.logprobs - small.ref_logprobs) * rollouts.mask
    task_tokens = torch.tensor([t.task.token_rewards(rollouts.prompts[n // 4], rollouts.responses()[n])
                                for n in range(12)])
    expected = (task_tokens - 0.05 * k1).flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(small.advantages, expected, atol=1e-6)


def test_overlong_shaping_reaches_process_credit_on_the_last_token(tmp_path):
    """Fails on the code before the fix (the penalty was a no-op under process credit). Length
    limit 3, buffer round(0.34 * 3) = 1, factor 2: a 3-token response gets -2, a 2-token one 0."""
    plain = trainer(tmp_path)
    rollouts = plain.rollout_backend.rollouts(3)
    rollouts.mask[5, 2] = 0.0                  # response 5 ends after 2 tokens
    shaped = trainer(tmp_path, **{"algo.overlong_buffer": 0.34, "algo.overlong_penalty": 2.0})
    difference = shaped.make_batch(rollouts).advantages - plain.make_batch(rollouts).advantages
    # raw deltas, rewards-to-go: every real token of a full-length response carries the -2
    expected = -2.0 * rollouts.mask
    expected[5] = 0.0
    assert torch.allclose(difference, expected)
