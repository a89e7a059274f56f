"""Adaptive sampling (Reinforce-Ada, arXiv:2510.04996): the exit rules, the balanced cut of a pool to
a group (by hand and against a plain transcription of the paper's rule on every pool of 8), the
pool's statistics and the deltas built from them, the rounds counted on scripted rewards, the rule
followed by the trainer on the toy policy (every sampled response recorded and recounted), the plain
run recovered with one round of G, exact resume, and a 3-step run from the command line."""

import json
import math
from itertools import product
from pathlib import Path

import pytest
import torch

from rlvr.algorithms.adaptive import EXIT_RULES, balanced_selection, pool_statistics
from rlvr.algorithms.deltas import compute_deltas, pooled_modes
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.hooks import TrainerHook
from rlvr.rollout import Rollouts, adaptive_sample
from rlvr.trainer import Trainer
from test_checkpoint import comparable, crash_during_step, snapshot
from test_cli import rlvr

SORT_TOY = Path(__file__).resolve().parents[1] / "configs" / "sort-toy.yaml"
balanced, positive = EXIT_RULES.get("balanced"), EXIT_RULES.get("positive")


# ---------------------------------------------------------------- the arithmetic, by hand


def test_exit_rules_by_hand():
    right, wrong = torch.tensor([0, 1, 2, 2, 3, 5, 1]), torch.tensor([9, 3, 1, 2, 2, 0, 0])
    assert balanced(right, wrong, group_size=4).tolist() == [False, False, False, True, True, False, False]
    # an odd G: floor(G/2) = 2 correct and 3 incorrect
    assert balanced(right, wrong, group_size=5).tolist() == [False, False, False, False, False, False, False]
    assert balanced(torch.tensor([2, 3]), torch.tensor([3, 2]), group_size=5).tolist() == [True, False]
    assert positive(right, wrong, group_size=4).tolist() == [False, True, True, True, True, True, True]
    assert EXIT_RULES.get("none") is None


def test_balanced_selection_by_hand():
    T, F = True, False
    correct = torch.tensor([[F, T, F, F, T, T, F, T],   # 4 correct: the first 2 of each kind
                            [F, F, T, F, F, F, F, F],   # 1 correct: it, and 3 incorrect fill up
                            [T, T, T, T, T, F, T, T],   # 1 incorrect: it, and 3 correct
                            [F, F, F, F, T, T, T, T],   # a pool of 4 (the rest is padding, never read)
                            [T, T, T, T, T, T, T, T]])  # all correct: the first 4
    sizes = torch.tensor([8, 8, 8, 4, 8])
    assert balanced_selection(correct, sizes, group_size=4).tolist() == [
        [0, 1, 2, 4], [0, 1, 2, 3], [0, 1, 2, 5], [0, 1, 2, 3], [0, 1, 2, 3]]
    # G = 3: one correct, two incorrect where possible
    assert balanced_selection(correct[:1], sizes[:1], group_size=3).tolist() == [[0, 1, 2]]
    assert balanced_selection(correct[2:3], sizes[2:3], group_size=3).tolist() == [[0, 1, 5]]
    with pytest.raises(ValueError, match="smaller than the group size"):
        balanced_selection(correct[3:4], sizes[3:4], group_size=5)


def paper_rule(correct, group_size):
    """The Reinforce-Ada code's down-sampling, transcribed plainly: n//2 positives first, the rest
    negatives, a short side filled from the other; the first ones of each kind in sampling order."""
    pos = [i for i, c in enumerate(correct) if c]
    neg = [i for i, c in enumerate(correct) if not c]
    target_pos = min(group_size // 2, len(pos))
    target_neg = min(group_size - target_pos, len(neg))
    if target_pos + target_neg < group_size:
        if len(pos) > target_pos:
            target_pos += min(len(pos) - target_pos, group_size - target_pos - target_neg)
        elif len(neg) > target_neg:
            target_neg += min(len(neg) - target_neg, group_size - target_pos - target_neg)
    return sorted(pos[:target_pos] + neg[:target_neg])


@pytest.mark.parametrize("group_size", [2, 3, 4, 5, 8])
def test_balanced_selection_equals_the_papers_rule_on_every_pool_of_8(group_size):
    pools = torch.tensor(list(product([False, True], repeat=8)))                # (256, 8)
    chosen = balanced_selection(pools, torch.full((256,), 8), group_size=group_size)
    for pool, picked in zip(pools.tolist(), chosen.tolist(), strict=True):
        assert picked == paper_rule(pool, group_size)
        kept = [pool[i] for i in picked]
        # balanced where the pool allows it
        assert sum(kept) == min(sum(pool), max(group_size // 2, group_size - (8 - sum(pool))))


def test_pool_statistics_by_hand_and_padding_never_read():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0, math.nan, 1e6],
                            [2.0, 2.0, 2.0, 2.0, 2.0, 4.0],
                            [3.0, math.inf, 0.0, 0.0, 0.0, 0.0]])
    mean, std = pool_statistics(rewards, torch.tensor([4, 6, 1]), unbiased=True)
    torch.testing.assert_close(mean, torch.tensor([0.5, 14 / 6, 3.0]))
    torch.testing.assert_close(std, torch.tensor([(1 / 3) ** 0.5, (30 / 9 / 5) ** 0.5, 0.0]))
    _, population = pool_statistics(rewards, torch.tensor([4, 6, 1]), unbiased=False)
    torch.testing.assert_close(population, torch.tensor([0.5, (30 / 9 / 6) ** 0.5, 0.0]))


def test_pooled_deltas_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])       # the second group is flat
    pool = (torch.tensor([0.25, 0.75]), torch.tensor([0.5, 0.25]))               # its pool is not
    centered = torch.tensor([[0.75, -0.25, 0.75, -0.25], [0.25, 0.25, 0.25, 0.25]])
    for mode in ("centered", "dr-grpo"):
        torch.testing.assert_close(compute_deltas(rewards, mode, pool=pool), centered)
    for mode in ("normalized", "grpo"):
        torch.testing.assert_close(compute_deltas(rewards, mode, eps=0.5, pool=pool),
                                   centered / torch.tensor([[1.0], [0.75]]))
    assert pooled_modes() == ["centered", "dr-grpo", "grpo", "normalized"]
    with pytest.raises(ConfigError, match="'rloo' has no form with a pool's statistics"):
        compute_deltas(rewards, "rloo", pool=pool)
    # without a pool, the group's own statistics: the flat group gets 0
    assert compute_deltas(rewards, "centered")[1].tolist() == [0.0] * 4


# ---------------------------------------------------------------- the rounds, on scripted rewards

SCRIPT = {  # prompt -> its rounds' rewards (1 = correct), M = 4 each
    0: [[1, 0, 1, 0]],                                    # balanced after round 1
    1: [[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 1]],        # 2 incorrect only after round 3
    2: [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],        # never: the budget runs out
    3: [[0, 0, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]],        # 2 correct after round 2
}


class Scripted:
    """A backend stand-in: prompt p's k-th sampling of M responses gets SCRIPT[p][k]; response ids
    encode (prompt, round, index) so the test can see which were kept."""

    def __init__(self):
        self.calls, self.seen = [], {p: 0 for p in SCRIPT}

    def sample(self, prompts, size):
        rows, ids = [], []
        for p in prompts:
            k = self.seen[p]
            self.seen[p] += 1
            rows.append(SCRIPT[p][k])
            ids += [[100 * p + 10 * k + m] for m in range(size)]
        n = len(ids)
        return Rollouts(prompts=list(prompts), prompt_ids=torch.tensor([[p] for p in prompts]),
                        response_ids=torch.tensor(ids), mask=torch.ones(n, 1), logprobs=torch.zeros(n, 1),
                        rewards=torch.tensor(rows, dtype=torch.float), group_size=size)

    def draw(self, count, size):
        self.calls.append(("draw", count, size))
        return self.sample(list(range(count)), size)

    def resample(self, prompts, size):
        self.calls.append(("resample", list(prompts), size))
        return self.sample(prompts, size)


def scripted(rule, rounds=3):
    backend = Scripted()
    groups, first, stats = adaptive_sample(backend.draw, backend.resample, 4, group_size=4, round_size=4,
                                           rounds=rounds, exit_rule=EXIT_RULES.get(rule),
                                           correct=lambda r: r.rewards >= 1, reward_of=lambda r: r.rewards,
                                           unbiased_std=True)
    return backend, groups, first, stats


def test_balanced_rounds_counted_on_scripted_rewards():
    backend, groups, first, stats = scripted("balanced")
    # round 2 resamples the 3 prompts not yet balanced, round 3 the 2 still not; never more than N * M
    assert backend.calls == [("draw", 4, 4), ("resample", [1, 2, 3], 4), ("resample", [1, 2], 4)]
    assert groups.pool_size.tolist() == [4, 12, 12, 8] and groups.group_size == 4
    kept = groups.response_ids.reshape(4, 4).tolist()
    assert kept == [[0, 1, 2, 3],                                        # prompt 0: its one round
                    [100, 101, 111, 120],                                # 2 correct, then 2 incorrect
                    [200, 201, 202, 203],                                # never balanced: the first 4
                    [300, 301, 303, 310]]                                # 2 incorrect, then both correct
    assert groups.rewards.tolist() == [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]
    torch.testing.assert_close(groups.pool_mean, torch.tensor([0.5, 10 / 12, 0.0, 2 / 8]))
    torch.testing.assert_close(groups.pool_std, torch.tensor([(1 / 3) ** 0.5, (10 / 12 * 2 / 12 * 12 / 11) ** 0.5,
                                                              0.0, (2 / 8 * 6 / 8 * 8 / 7) ** 0.5]))
    assert stats == {"sampling/samples_per_prompt": 9.0, "sampling/rounds": 3.0,
                     "sampling/resolved_prompts": 0.75, "sampling/flat_groups": 0.25}
    assert first.tolist() == [row[0] for row in SCRIPT.values()]    # round 1's rewards, unselected


def test_positive_rounds_counted_on_scripted_rewards():
    backend, groups, _, stats = scripted("positive")
    assert backend.calls == [("draw", 4, 4), ("resample", [2], 4), ("resample", [2], 4)]
    assert groups.pool_size.tolist() == [4, 4, 12, 4]
    assert groups.rewards.tolist() == [[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert stats["sampling/flat_groups"] == 0.5 and stats["sampling/resolved_prompts"] == 0.75
    # one round: nobody is resampled, whatever the rule
    backend, groups, _, stats = scripted("balanced", rounds=1)
    assert backend.calls == [("draw", 4, 4)] and groups.pool_size.tolist() == [4] * 4
    assert stats["sampling/rounds"] == 1.0


# ---------------------------------------------------------------- through the trainer, on the toy policy


def toy(tmp_path, name, **overrides):
    base = {"run_dir": str(tmp_path / name), "train.outer_steps": 3, "train.inner_steps": 2, "eval.every": 3,
            "checkpoint.every": 0, "algo.adaptive_sampling": "balanced", "algo.deltas": "dr-grpo",
            "task.reward": "binary"}
    return load_config(SORT_TOY, {**base, **overrides})


class Recorder(TrainerHook):
    """Every response the backend samples, and the batch each step trains on."""

    def __init__(self, trainer):
        self.sampled, self.batches = [], []
        backend = trainer.rollout_backend
        rollouts, resample = backend.rollouts, backend.resample

        def record(method):
            def wrapped(*args, **kwargs):
                out = method(*args, **kwargs)
                self.sampled[-1].append(out)
                return out
            return wrapped
        backend.rollouts, backend.resample = record(rollouts), record(resample)

    def before_inner(self, step, policy, batch, loss_of):
        self.batches.append(batch)
        self.sampled.append([])
        return {}


def test_the_trainer_follows_the_balanced_rule_on_the_toy_policy(tmp_path):
    """Every sampled response recorded and recounted per prompt: a prompt is resampled exactly while
    its pool is not balanced and rounds remain; the group holds floor(G/2) correct where the pool has
    them; the deltas are R - the pool's mean, both with DAPO's length penalty (-1 on every toy response,
    which the pool's mean must carry too)."""
    cfg = toy(tmp_path, "run", **{"train.group_size": 4, "algo.adaptive_round_multiplier": 2,
                                  "algo.adaptive_rounds": 3, "train.prompts_per_step": 3,
                                  "algo.overlong_buffer": 0.2})
    trainer = Trainer(cfg, show_progress=False)
    recorder = Recorder(trainer)
    recorder.sampled.append([])
    trainer.hooks = [recorder]
    trainer.run()
    task = trainer.task
    draws = recorder.sampled[:-1]  # each step's draws (the last list: after the last step, empty)
    resampled = 0
    for step, (parts, batch) in enumerate(zip(draws, recorder.batches, strict=True), start=1):
        r = batch.rollouts
        pools = {b: [] for b in range(3)}
        for part in parts:
            assert part.group_size == 8                                   # M = 2 x G
            rows = [r.prompts.index(p) for p in part.prompts]
            shaped = part.rewards + trainer.response_shaping(part)
            assert torch.equal(shaped, part.rewards - 1)
            for j, b in enumerate(rows):
                pools[b] += [(part.response_ids[j * 8 + m].tolist(), float(shaped[j, m])) for m in range(8)]
        resampled += len(parts) - 1
        for b in range(3):
            pool = pools[b]
            right = [task.is_correct(r.prompts[b], ids) for ids, _ in pool]
            assert len(pool) == int(r.pool_size[b]) <= 3 * 8              # the budget: N x M
            # sampled again exactly while not balanced (2 correct and 2 incorrect) after each earlier round
            for k in range(len(pool) // 8 - 1):
                seen = right[:(k + 1) * 8]
                assert sum(seen) < 2 or len(seen) - sum(seen) < 2, (step, b, k)
            resolved = sum(right) >= 2 and len(right) - sum(right) >= 2
            assert resolved or len(pool) == 24
            group = r.response_ids[b * 4:(b + 1) * 4].tolist()
            kept = [task.is_correct(r.prompts[b], ids) for ids in group]
            assert sum(kept) == min(sum(right), max(2, 4 - (len(right) - sum(right))))
            assert all(ids in [ids for ids, _ in pool] for ids in group)
            mean = sum(reward for _, reward in pool) / len(pool)
            assert float(r.pool_mean[b]) == pytest.approx(mean)
            torch.testing.assert_close(batch.deltas[b], r.rewards[b] - 1 - mean)
    assert resampled > 0, "the run must exercise at least one later round"


def test_one_round_of_g_is_the_plain_run(tmp_path):
    """N = 1, M = G: the pool is the group, the same responses from the same streams, and the pool's
    mean is the group's: the run is the plain run's, update for update."""
    plain = Trainer(toy(tmp_path, "plain", **{"algo.adaptive_sampling": "none"}), show_progress=False)
    plain.run()
    one = Trainer(toy(tmp_path, "one", **{"algo.adaptive_rounds": 1, "algo.adaptive_round_multiplier": 1}),
                  show_progress=False)
    one.run()
    for a, b in zip(plain.policy.state_dict().values(), one.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for row_a, row_b in zip(plain.history[1:], one.history[1:], strict=True):
        for key in ("train/reward_mean", "train/zero_std_frac", "train/delta_abs_mean", "eval/reward_mean"):
            if key in row_a:
                assert row_a[key] == pytest.approx(row_b[key], rel=1e-6), key
        assert row_b["sampling/samples_per_prompt"] == 10 and row_b["sampling/rounds"] == 1


@pytest.mark.parametrize("rule", ["balanced", "positive"])
def test_a_resumed_adaptive_run_equals_the_uninterrupted_one(tmp_path, rule):
    extra = {"train.outer_steps": 6, "checkpoint.every": 2, "algo.adaptive_sampling": rule,
             "train.group_size": 4, "algo.adaptive_rounds": 3, "task.reward": "inclusion-adjacency",
             "algo.adaptive_success": 4.0}
    whole = Trainer(toy(tmp_path, "whole", **extra), show_progress=False)
    whole.run()
    crash_during_step(Trainer(toy(tmp_path, "run", **extra), show_progress=False), 5)
    resumed = Trainer(toy(tmp_path, "run", **extra), show_progress=False)
    resumed.run(resume=True)
    assert snapshot(resumed) == snapshot(whole)
    assert comparable(resumed.history) == comparable(whole.history)
    assert any(row.get("sampling/rounds", 0) > 1 for row in whole.history)


def test_a_reward_threshold_counts_as_correct(tmp_path):
    """algo.adaptive_success: reward >= threshold instead of the ground truth (inclusion-adjacency: 0..5)."""
    cfg = toy(tmp_path, "run", **{"task.reward": "inclusion-adjacency", "algo.adaptive_success": 4.0})
    trainer = Trainer(cfg, show_progress=False)
    rollouts = trainer.rollout_backend.rollouts(3)
    torch.testing.assert_close(trainer.correct_responses(rollouts), rollouts.rewards >= 4.0)
    exact = load_config(SORT_TOY, {"task.reward": "inclusion-adjacency", "algo.adaptive_sampling": "positive"})
    truth = Trainer(exact, show_progress=False).correct_responses(rollouts)
    solved = [[tuple(rollouts.response_ids[b * 10 + g].tolist()) == tuple(sorted(rollouts.prompts[b]))
               for g in range(10)] for b in range(3)]
    assert truth.tolist() == solved


def test_three_steps_from_the_command_line(tmp_path):
    run = tmp_path / "run"
    out = rlvr("train", "--config", "sort-toy", "--algo", "reinforce-ada", "--algo.adaptive_sampling", "positive",
               "--train.outer_steps", "3", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "adaptive_sampling: positive" in (run / "config.yaml").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1:]
    assert len(rows) == 3
    for row in rows:
        assert 20 <= row["sampling/samples_per_prompt"] <= 80 and 1 <= row["sampling/rounds"] <= 4
        assert 0 <= row["sampling/flat_groups"] <= 1 and math.isfinite(row["loss/total"])


@pytest.mark.parametrize("overrides, field", [
    ({"algo.adaptive_sampling": "balance"}, "algo.adaptive_sampling"),
    ({"algo.adaptive_sampling": "balanced", "algo.dynamic_sampling": True}, "algo.dynamic_sampling"),
    ({"algo.adaptive_sampling": "balanced", "algo.deltas": "rloo"}, "algo.deltas"),
    ({"algo.adaptive_sampling": "balanced", "algo.credit": "process"}, "algo.credit"),
    ({"algo.adaptive_sampling": "balanced", "algo.kl_coef": 0.1, "algo.kl_in": "reward"}, "algo.kl_in"),
    ({"algo.adaptive_sampling": "balanced", "algo.adaptive_rounds": 0}, "algo.adaptive_rounds"),
    ({"algo.adaptive_sampling": "positive", "algo.adaptive_round_multiplier": 0}, "algo.adaptive_round_multiplier"),
    ({"algo.adaptive_sampling": "positive", "algo.adaptive_success": ".nan"}, "algo.adaptive_success"),
    ({"algo.adaptive_rounds": 3}, "algo.adaptive_rounds"),        # a setting of a rule not chosen
])
def test_bad_settings_are_one_line_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config(SORT_TOY, overrides)
    message = str(info.value)
    assert message.startswith(field + ":") and "\n" not in message
