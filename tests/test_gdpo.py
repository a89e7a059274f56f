"""GDPO (algo.deltas gdpo): each reward source z-scored within its group, the weighted sum whitened
over the batch. Hand-computed numbers, the collapse of GRPO it fixes, the path from
``rewards.sources`` through the rollouts to the trainer's deltas, and the command line."""

import json
import math

import pytest
import torch

from rlvr.algorithms import DELTAS, compute_deltas
from rlvr.cli import main
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.rewards.sources import build_rewards
from rlvr.rollout import score, score_sources
from rlvr.tasks import build_task
from rlvr.trainer import Trainer

EPS = 1e-9  # small enough that the hand-computed numbers below hold to 1e-7

# the paper's motivating example: two binary sources, two responses per prompt. Prompt 0's second
# response satisfies both sources, prompt 1's only the first; the first responses satisfy neither.
SOURCES = torch.tensor([[[0.0, 0.0], [1.0, 1.0]],
                        [[0.0, 0.0], [1.0, 0.0]]])  # (B=2, G=2, S=2)


def gdpo(sources, weights, **kw):
    weights = torch.tensor(weights)
    summed = (sources * weights).sum(-1)
    return compute_deltas(summed, "gdpo", sources=sources, source_weights=weights, **{"eps": EPS, **kw})


def test_grpo_on_the_sum_collapses_the_two_prompts_and_gdpo_keeps_them_apart():
    """Sums (0, 2) and (0, 1): GRPO gives both prompts (-1/sqrt2, 1/sqrt2). GDPO: prompt 0's two
    sources each z-score to -+1/sqrt2, summing to -+sqrt2; prompt 1's second source is flat (z = 0),
    so -+1/sqrt2. Over the batch (-sqrt2, sqrt2, -1/sqrt2, 1/sqrt2): mean 0, std (N-1)
    sqrt((2 + 2 + 1/2 + 1/2) / 3) = sqrt(5/3), so the deltas are -+sqrt(6/5) and -+sqrt(3/10)."""
    grpo = compute_deltas((SOURCES).sum(-1), "grpo", eps=EPS)
    assert torch.allclose(grpo, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]) / math.sqrt(2), atol=1e-7)
    expected = torch.tensor([[-math.sqrt(6 / 5), math.sqrt(6 / 5)], [-math.sqrt(3 / 10), math.sqrt(3 / 10)]])
    assert torch.allclose(gdpo(SOURCES, [1.0, 1.0]), expected, atol=1e-7)


def test_weights_and_three_responses_by_hand():
    """One prompt, G = 3, weights (1, 0.5). Source 0 (0, 1, 2): mean 1, std 1 -> z (-1, 0, 1).
    Source 1 (1, 1, 0): mean 2/3, std sqrt(1/3) -> z (1/sqrt3, 1/sqrt3, -2/sqrt3) -> x0.5.
    A = (-1 + 0.5/sqrt3, 0.5/sqrt3, 1 - 1/sqrt3), then whitened over the 3 responses."""
    sources = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])
    root3 = math.sqrt(3)
    combined = torch.tensor([[-1 + 0.5 / root3, 0.5 / root3, 1 - 1 / root3]], dtype=torch.double)
    expected = (combined - combined.mean()) / combined.std()
    assert torch.allclose(gdpo(sources.double(), [1.0, 0.5]), expected, atol=1e-7)
    # the population std everywhere with unbiased_std false
    z0 = torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3)
    z1 = torch.tensor([1.0, 1.0, -2.0]) / 3 / math.sqrt(2 / 9)
    combined = (z0 + 0.5 * z1).double()
    expected = (combined - combined.mean()) / combined.std(correction=0)
    assert torch.allclose(gdpo(sources.double(), [1.0, 0.5], unbiased_std=False)[0], expected, atol=1e-7)


def test_one_source_is_grpo_then_batch_whitening():
    torch.manual_seed(0)
    rewards = torch.randn(4, 5) * 3 + 1
    reference = compute_deltas(compute_deltas(rewards, "grpo"), "reinforce++")
    assert torch.equal(compute_deltas(rewards, "gdpo", sources=rewards.unsqueeze(-1), source_weights=[1.0]), reference)
    # a positive weight is a scale, and whitening removes it (up to eps)
    scaled = compute_deltas(3 * rewards, "gdpo", sources=rewards.unsqueeze(-1), source_weights=[3.0])
    assert torch.allclose(scaled, reference, atol=1e-5)
    # ... which is not GRPO itself: the batch whitening mixes the prompts
    assert not torch.allclose(reference, compute_deltas(rewards, "grpo"), atol=1e-3)


def test_a_source_of_weight_zero_or_flat_in_every_group_changes_nothing():
    torch.manual_seed(1)
    first = torch.randn(3, 4)
    noise, flat = torch.randn(3, 4), torch.full((3, 4), 7.0)
    alone = compute_deltas(first, "gdpo", sources=first.unsqueeze(-1), source_weights=[1.0])
    for second, weight in ((noise, 0.0), (flat, 2.0)):
        both = torch.stack([first, second], -1)
        assert torch.allclose(compute_deltas(first, "gdpo", sources=both, source_weights=[1.0, weight]), alone,
                              atol=1e-6)


def test_without_per_source_rewards_it_is_a_config_error():
    assert DELTAS.meta("gdpo")["needs_sources"] and not DELTAS.meta("grpo").get("needs_sources")
    with pytest.raises(ConfigError, match="^algo.deltas: 'gdpo' normalises each reward source"):
        compute_deltas(torch.zeros(2, 3), "gdpo")
    with pytest.raises(ValueError, match="do not match"):
        compute_deltas(torch.zeros(2, 3), "gdpo", sources=torch.zeros(2, 3, 2), source_weights=[1.0])


# ----------------------------------------------------------------------------- the sources' path


def sources_config(tmp_path, **more):
    return load_config(None, {
        "task.length": 2, "task.vocab_size": 3, "task.reward": "position-match", "policy.init_scale": 0.03,
        "rewards.sources": "[{kind: verifier}, {kind: exact, weight: 0.5}]", "algo.deltas": "gdpo",
        "train.prompts_per_step": 3, "train.group_size": 8, "train.outer_steps": 3, "train.inner_steps": 2,
        "run_dir": str(tmp_path / "run"), **more})


def test_the_rewards_give_each_sources_unweighted_value_and_their_weights(tmp_path):
    cfg = sources_config(tmp_path)
    task = build_task(cfg.task)
    rewards = build_rewards(cfg, task)
    assert rewards.source_weights == [1.0, 0.5]
    prompt = (2, 0)  # sorted: (0, 2)
    responses = [[0, 2], [0, 1], [1, 1], [0, 2]]
    totals, by_source = rewards.scored([prompt] * 4, responses)
    assert by_source == [[2.0, 1.0], [1.0, 0.0], [0.0, 0.0], [2.0, 1.0]]
    assert totals == [2.5, 1.0, 0.0, 2.5] == rewards([prompt] * 4, responses, counted=False)
    summed, sources = score_sources(task, [prompt], responses, 4, rewards=rewards)
    assert sources.shape == (1, 4, 2) and sources.tolist() == [by_source]
    assert torch.equal(summed, score(task, [prompt], responses, 4, rewards=rewards))
    assert score_sources(task, [prompt], responses, 4)[1] is None  # no runner: the task's reward alone


def test_the_verifier_alone_is_one_source_of_weight_one(tmp_path):
    cfg = load_config(None, {"run_dir": str(tmp_path / "run")})
    task = build_task(cfg.task)
    rewards = build_rewards(cfg, task)
    assert rewards.source_weights == [1.0]
    totals, by_source = rewards.scored([(1, 0, 2)] * 2, [[0, 1, 2], [2, 1, 0]])
    assert by_source == [[t] for t in totals]


def test_the_trainer_gives_gdpo_the_rollouts_sources(tmp_path):
    """rewards.sources -> Rollouts.source_rewards (B, G, S) -> the trainer's deltas: exactly gdpo of
    the recorded sources with the configured weights (and their weighted sum is the reward)."""
    trainer = Trainer(sources_config(tmp_path), show_progress=False)
    rollouts = trainer.rollout_backend.rollouts(3)
    sources = rollouts.source_rewards
    assert sources.shape == (3, 8, 2)
    assert (sources.std(1) > 0).all(-1).any()  # in some group both sources vary: each one's z-score counts
    assert torch.allclose((sources * torch.tensor([1.0, 0.5])).sum(-1), rollouts.rewards)
    batch = trainer.make_batch(rollouts)
    expected = compute_deltas(rollouts.rewards, "gdpo", sources=sources, source_weights=[1.0, 0.5])
    assert torch.equal(batch.deltas, expected)
    unweighted = compute_deltas(rollouts.rewards, "gdpo", sources=sources, source_weights=[1.0, 1.0])
    assert not torch.allclose(batch.deltas, unweighted, atol=1e-3)
    assert torch.equal(batch.advantages, expected.reshape(-1, 1).expand_as(rollouts.mask) * rollouts.mask)
    trainer.close()


def test_three_steps_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--config", "sort-toy", "--algo", "gdpo", "--rewards.sources",
                 "[{kind: verifier}, {kind: exact, weight: 0.5}]", "--train.outer_steps", "3",
                 "--run-dir", str(run), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "deltas: gdpo" in (run / "config.yaml").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss/total" in r]
    assert len(trained) == 3 and all(math.isfinite(r["loss/total"]) for r in trained)
    assert all("reward/verifier" in r and "reward/exact" in r for r in trained)
    assert any(r["train/delta_abs_mean"] > 0 for r in trained)


@pytest.mark.parametrize("flags,field", [
    ([], "rewards.sources"),
    (["--rewards.sources", "[{kind: verifier}, {kind: exact}]", "--algo.kl_coef", "0.1", "--algo.kl_in", "reward"],
     "algo.kl_in"),
    (["--rewards.sources", "[{kind: verifier}, {kind: exact}]", "--algo.overlong_buffer", "0.2"], "algo.overlong_buffer"),
    (["--rewards.sources", "[{kind: verifier}, {kind: exact}]", "--algo.credit", "process"], "algo.credit"),
])
def test_gdpo_without_sources_or_with_shaping_of_the_sum_is_a_one_line_error(tmp_path, capsys, flags, field):
    code = main(["train", "--config", "sort-toy", "--algo", "gdpo", *flags, "--run-dir", str(tmp_path / "run"),
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"rlvr: error: {field}: "), err
    assert not (tmp_path / "run").exists()


def test_the_variance_tool_leaves_gdpo_out_and_refuses_it_by_name():
    """``rlvr variance task`` scores with the task's reward alone: no sources to normalise."""
    from rlvr.analysis.task_variance import measure
    from rlvr.errors import UserError

    cfg = load_config(None, {"task.length": 2, "task.vocab_size": 3, "train.group_size": 3})
    rows = measure(cfg, repeats=2, modes=None).rows
    assert "gdpo" not in [r["mode"] for r in rows] and "grpo" in [r["mode"] for r in rows]
    with pytest.raises(UserError, match="^--modes: 'gdpo' normalises each reward source"):
        measure(cfg, repeats=2, modes=["grpo", "gdpo"])
