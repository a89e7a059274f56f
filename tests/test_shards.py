"""Rollout shards and the data-parallel loss split, in one process (the default suite)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from rlvr.algorithms import AGGREGATIONS, aggregate
from rlvr.config import load_config
from rlvr.distributed.ddp import aggregation_weights
from rlvr.distributed.local import LocalRollouts
from rlvr.distributed.shards import (
    sample_shard,
    shard_prompt_rows,
    shard_sizes,
    split_prompts,
)
from rlvr.errors import ConfigError
from rlvr.policies import build_policy
from rlvr.rollout import PromptSource, Rollouts, concat_rollouts, generate, select_prompts
from rlvr.runs import RunDir
from rlvr.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("count", range(1, 12))
@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_shards_cover_the_prompts_in_order_with_sizes_within_one(count, shards):
    if shards > count:
        return
    sizes = shard_sizes(count, shards)
    assert sum(sizes) == count and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    prompts = [(i,) for i in range(count)]
    assert [p for piece in split_prompts(prompts, shards) for p in piece] == prompts
    rows = shard_prompt_rows(count, shards, list(range(shards)))
    assert rows.tolist() == list(range(count))


def backend(shards, prompts_per_step=5, seed=3):
    cfg = load_config(None, {"train.prompts_per_step": prompts_per_step, "train.group_size": 4,
                             "distributed.rollout_shards": shards, "seed": seed})
    task = build_task(cfg.task)
    torch.manual_seed(0)
    policy = build_policy(cfg.policy, task)
    return cfg, task, policy, LocalRollouts(cfg, task, policy, PromptSource(task, seed))


def test_one_shard_samples_exactly_what_a_plain_run_samples():
    cfg, task, policy, local = backend(shards=1)
    prompts, generator = PromptSource(task, cfg.seed), torch.Generator().manual_seed(cfg.seed)
    for count in (5, 5, 2):  # the stream continues across steps, like the single generator did
        plain = generate(policy, task, prompts.next_batch(count), group_size=4, generator=generator, temperature=1.0)
        sharded = local.rollouts(count)
        assert torch.equal(plain.response_ids, sharded.response_ids) and plain.prompts == sharded.prompts


def test_each_shard_is_sampled_from_its_own_stream():
    """Shard s of an S-shard batch does not depend on the other shards: sampling it alone gives it."""
    _, _, _, three = backend(shards=3)
    batch = three.rollouts(5)
    for s, shard in enumerate(three.streams.cut(batch.prompts)):
        shard.rng_state = None  # from the stream's seed, as at step 1
        alone, _ = sample_shard(three.policy, three.task, shard, three.cfg.seed, group_size=4, temperature=1.0)
        rows = shard_prompt_rows(5, 3, [s])
        assert torch.equal(select_prompts(batch, rows).response_ids, alone.response_ids)


def test_a_draw_of_fewer_prompts_than_shards_uses_one_shard_per_prompt():
    _, _, _, three = backend(shards=3)
    batch = three.rollouts(2)
    assert len(batch.prompts) == 2 and batch.rewards.shape == (2, 4)
    assert three.streams.states[2] is None and all(s is not None for s in three.streams.states[:2])


def rollouts(prompts, prompt_width, response_width, group=2):
    batch = len(prompts)
    return Rollouts(prompts=prompts, prompt_ids=torch.full((batch, prompt_width), 7),
                    response_ids=torch.full((batch * group, response_width), 5),
                    mask=torch.ones(batch * group, response_width), logprobs=-torch.ones(batch * group, response_width),
                    rewards=torch.arange(batch * group, dtype=torch.float).reshape(batch, group), group_size=group)


def test_concat_pads_prompts_left_and_responses_right_and_select_inverts_it():
    a, b = rollouts([(1,), (2,)], prompt_width=3, response_width=4), rollouts([(3,)], prompt_width=2, response_width=6)
    merged = concat_rollouts([a, b])
    assert merged.prompts == [(1,), (2,), (3,)]
    assert merged.prompt_ids[2].tolist() == [0, 7, 7]                  # left-padded prompt
    assert merged.mask[4].tolist() == [1, 1, 1, 1, 1, 1] and merged.mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    back = select_prompts(merged, torch.tensor([0, 1]))
    assert torch.equal(back.rewards, a.rewards) and torch.equal(back.response_ids[:, :4], a.response_ids)


def test_concat_pads_prompts_with_the_policys_pad_id_and_cuts_every_per_row_list():
    """An LM's <pad> need not be 0: a prompt padded with a real token id would be read as text."""
    a = dataclasses.replace(rollouts([(1,), (2,)], prompt_width=3, response_width=4), prompt_pad_id=9,
                            decoded=["a0", "a1", "b0", "b1"])
    b = dataclasses.replace(rollouts([(3,)], prompt_width=2, response_width=4), prompt_pad_id=9,
                            decoded=["c0", "c1"])
    merged = concat_rollouts([a, b])
    assert merged.prompt_ids[2].tolist() == [9, 7, 7] and merged.decoded == ["a0", "a1", "b0", "b1", "c0", "c1"]
    back = select_prompts(merged, [2, 0])
    assert back.prompts == [(3,), (1,)] and back.decoded == ["c0", "c1", "a0", "a1"]


@pytest.mark.parametrize("mode", AGGREGATIONS.names())
def test_rank_shares_of_the_aggregate_add_up_to_the_whole_batch(mode):
    """sum_r sum_{rows of r} w l = aggregate(l) for any split of the rows, with w from the whole mask."""
    torch.manual_seed(1)
    mask = (torch.rand(7, 5) < 0.7).float()
    mask[:, 0] = 1
    loss = torch.randn(7, 5)
    weights = aggregation_weights(mask, mode, constant=5.0)
    whole = aggregate(loss, mask, mode, constant=5.0)
    torch.testing.assert_close((weights * loss).sum(), whole)
    shares = [(weights[rows] * loss[rows]).sum() for rows in (slice(0, 4), slice(4, 7))]
    torch.testing.assert_close(sum(shares), whole)
    assert float(weights[mask == 0].abs().sum()) == 0.0  # padding never weighs


def test_too_many_shards_is_a_config_error():
    with pytest.raises(ConfigError, match="distributed.rollout_shards: 4 must be <= train.prompts_per_step"):
        load_config(None, {"distributed.rollout_shards": 4, "train.prompts_per_step": 3})
    with pytest.raises(ConfigError, match="distributed.backend: 'rya' is not one of local, ray"):
        load_config(None, {"distributed.backend": "rya"})
    with pytest.raises(ConfigError, match="distributed.off_policy: needs distributed.backend ray"):
        load_config(None, {"distributed.off_policy": True})


def test_a_non_writer_run_dir_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "run", writer=False)
    run.write_config({"a": 1})
    run.append_jsonl("metrics.jsonl", {"step": 1})
    run.write_json("summary.json", {})
    run.write_plot([{"step": 1, "train/reward_mean": 1.0}], title="x")
    assert not (tmp_path / "run").exists()
