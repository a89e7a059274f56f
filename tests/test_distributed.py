"""Scale-out on this machine: Ray rollout actors on a local Ray (num_cpus=2, loopback only) and a
2-rank gloo DDP learner. Run with `make test-distributed` (excluded from the default suite)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from golden_runs import hf_model
from rlvr.algorithms import policy_loss
from rlvr.config import load_config
from rlvr.policies import build_policy
from rlvr.rollout import PromptSource
from rlvr.tasks import build_task
from rlvr.trainer import Trainer

ray = pytest.importorskip("ray")
from rlvr.distributed.local import LocalRollouts  # noqa: E402
from rlvr.distributed.ray_rollouts import RayRollouts, RolloutWorker  # noqa: E402

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parents[1]
RATIO_METRICS = ("policy/approx_kl", "policy/ratio_mean", "policy/clip_frac")  # rank-averaged under DDP


def config(tmp_path, name, **overrides):
    """sort-toy: 3 prompts per step, so 2 shards hold 2 + 1 prompts (an uneven split)."""
    values = {"train.outer_steps": 4, "train.inner_steps": 3, "algo.loss": "clipped", "algo.kl_coef": 0.1,
              "distributed.rollout_shards": 2, "eval.every": 2, "run_dir": str(tmp_path / name)}
    return load_config(ROOT / "configs" / "sort-toy.yaml", {**values, **overrides})


def rows_without_times(run_dir, drop=()):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/")) and k not in drop} for r in rows]


def assert_same_metrics(local, other, *, exact=True, drop=()):
    local, other = rows_without_times(local, drop), rows_without_times(other, drop)
    assert len(local) == len(other)
    for a, b in zip(local, other, strict=True):
        common = set(a) & set(b)
        assert len(common) >= len(a) - len(drop)
        for key in common:
            exact_key = exact or a[key] is None or b[key] is None  # null: a diagnostic with nothing resolved
            # not exact: DDP's all-reduce sums the gradient in another order, and three Adam steps grow that
            # last bit to ~2e-5 relative in a KL (a difference of nearly equal log-probs; AVX512 kernels)
            assert a[key] == (b[key] if exact_key else pytest.approx(b[key], rel=1e-4, abs=1e-6)), (a["step"], key)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# ----------------------------------------------------------------------------- Ray rollout actors


@pytest.mark.parametrize("workers", [1, 2])
def test_synchronous_ray_gives_the_local_backends_metrics(local_ray, tmp_path, workers):
    Trainer(config(tmp_path, "local"), show_progress=False).run()
    Trainer(config(tmp_path, "ray", **{"distributed.backend": "ray", "distributed.rollout_workers": workers}),
            show_progress=False).run()
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")  # bit for bit, any number of workers
    assert (tmp_path / "local" / "samples.jsonl").read_text() == (tmp_path / "ray" / "samples.jsonl").read_text()


def test_adaptive_sampling_under_ray_gives_the_local_backends_metrics(local_ray, tmp_path):
    """Reinforce-Ada's later rounds (backend.resample) sample the same shard streams on the actors."""
    adaptive = {"algo.adaptive_sampling": "balanced", "algo.deltas": "dr-grpo", "algo.adaptive_rounds": 3,
                "train.group_size": 4, "task.reward": "binary"}
    Trainer(config(tmp_path, "local", **adaptive), show_progress=False).run()
    Trainer(config(tmp_path, "ray", **adaptive, **{"distributed.backend": "ray", "distributed.rollout_workers": 2}),
            show_progress=False).run()
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")
    rows = rows_without_times(tmp_path / "ray")
    assert any(row.get("sampling/rounds", 0) > 1 for row in rows)


TINY_LM = {"task.name": "sort-text", "task.length": 3, "policy.kind": "transformer",
           "policy.hidden_size": 16, "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2,
           "train.group_size": 4, "task.num_eval_prompts": 4}


def test_ray_and_torchrun_train_our_transformer_like_the_local_backend(local_ray, tmp_path):
    """Every policy kind goes through the same backends: a text task with a KV-cache LM policy."""
    Trainer(config(tmp_path, "local", **TINY_LM), show_progress=False).run()
    Trainer(config(tmp_path, "ray", **TINY_LM, **{"distributed.backend": "ray"}), show_progress=False).run()
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")
    flags = ["--config", "sort-toy", "--quiet", *[f"--{k}={'null' if v is None else v}" for k, v in {
        **TINY_LM, "train.outer_steps": 3, "eval.every": 3, "algo.kl_coef": 0.05, "distributed.rollout_shards": 2}.items()]]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlvr")
    local, ddp = run_cli(tmp_path, "local-cli", flags), run_cli(tmp_path, "ddp", flags, launcher=torchrun)
    assert local.returncode == 0 and ddp.returncode == 0, (local.stderr + ddp.stderr)[-3000:]
    assert_same_metrics(tmp_path / "local-cli", tmp_path / "ddp", exact=False, drop=RATIO_METRICS)


def crashing_worker(marker: Path) -> type:
    """A rollout actor whose process is SIGKILLed mid-rollout (after sampling, before returning)
    the first time any actor samples shard 1."""

    class CrashOnce(RolloutWorker):
        def generate(self, weights, version, shard):
            result = super().generate(weights, version, shard)
            if shard.index == 1 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return result

    return CrashOnce


def backend_parts(cfg, backend_cls, **kwargs):
    task = build_task(cfg.task)
    torch.manual_seed(cfg.seed)
    policy = build_policy(cfg.policy, task)
    return task, policy, backend_cls(cfg, task, policy, PromptSource(task, cfg.seed), **kwargs)


def test_a_worker_killed_mid_rollout_is_restarted_and_no_group_is_lost_or_duplicated(local_ray, tmp_path):
    cfg = config(tmp_path, "run", **{"train.prompts_per_step": 5, "distributed.rollout_shards": 3,
                                     "task.prompts": None})
    marker = tmp_path / "killed"
    *_, ray_backend = backend_parts(cfg, RayRollouts, worker_cls=crashing_worker(marker))
    *_, local_backend = backend_parts(cfg, LocalRollouts)
    pids = ray.get([w.pid.remote() for w in ray_backend.workers])
    try:
        for _ in range(2):
            got, want = ray_backend.rollouts(5), local_backend.rollouts(5)
            assert got.prompts == want.prompts and len(got.prompts) == 5  # each group once, in order
            for name in ("prompt_ids", "response_ids", "mask", "logprobs", "rewards"):
                assert torch.equal(getattr(got, name), getattr(want, name)), name
        killed = int(marker.read_text())
        assert killed in pids
        assert killed not in ray.get([w.pid.remote() for w in ray_backend.workers])  # restarted
    finally:
        ray_backend.close()


def test_off_policy_ratio_is_against_the_behaviour_policys_logprobs(local_ray, tmp_path):
    cfg = config(tmp_path, "run", **{"distributed.backend": "ray", "distributed.rollout_workers": 1,
                                     "distributed.off_policy": True})
    _, policy, backend = backend_parts(cfg, RayRollouts)
    try:
        behaviour = policy.frozen_reference()                  # the weights batch 2 is sampled with
        backend.rollouts(3)                              # batch 1; batch 2 is now in flight with them
        with torch.no_grad():
            for p in policy.parameters():                # the learner trains on batch 1 ...
                p.add_(0.3 * torch.randn_like(p))
        backend.sync(policy)                             # ... and broadcasts the new weights
        batch = backend.rollouts(3)
        assert backend.metrics()["rollout/policy_lag"] == 1.0
        args = (batch.prompt_ids, batch.response_ids, batch.mask)
        kwargs = {"group_size": batch.group_size, "temperature": cfg.train.temperature}
        behaviour_logp, _ = behaviour.logprobs(*args, **kwargs)
        current_logp, _ = policy.logprobs(*args, **kwargs)
        # the loss's old log-probs (compute_loss passes rollouts.logprobs) are the behaviour policy's
        torch.testing.assert_close(batch.logprobs, behaviour_logp.detach())
        assert not torch.allclose(batch.logprobs, current_logp.detach(), atol=1e-3)
        _, metrics = policy_loss("ratio", current_logp, batch.logprobs, torch.ones_like(batch.mask), batch.mask)
        expected = (((current_logp - behaviour_logp).exp() * batch.mask).sum() / batch.mask.sum()).detach()
        torch.testing.assert_close(metrics["policy/ratio_mean"], expected)
        assert abs(float(expected) - 1.0) > 1e-3         # a real correction, not a ratio of 1
    finally:
        backend.close()


def test_off_policy_with_a_rollout_correction_sees_the_stale_sampler(local_ray, tmp_path):
    """algo.rollout_correction one step off-policy: batch 1 was sampled by the learner's own weights
    (no gap); every later batch by the weights of one step before, which the correction measures."""
    cfg = config(tmp_path, "run", **{"distributed.backend": "ray", "distributed.rollout_workers": 1,
                                     "distributed.off_policy": True, "algo.rollout_correction": "tis-token",
                                     "train.outer_steps": 3, "eval.every": 3})
    Trainer(cfg, show_progress=False).run()
    first, *later = rows_without_times(tmp_path / "run")[1:]
    assert first["rollout/policy_lag"] == 0.0 and first["policy/sampler_kl"] == pytest.approx(0.0, abs=1e-7)
    assert first["policy/correction_weight_mean"] == pytest.approx(1.0, abs=1e-6)
    for row in later:
        assert row["rollout/policy_lag"] == 1.0 and row["policy/sampler_kl"] > 1e-6, row["step"]
        assert row["policy/correction_weight_mean"] != pytest.approx(1.0, abs=1e-6)


def test_cli_ray_backend_flags(tmp_path):
    """`rlvr train --backend ray --rollout-workers 2` in a subprocess (its own local Ray)."""
    args = ["--config", "sort-toy", "--train.outer_steps", "3", "--quiet"]
    local = run_cli(tmp_path, "local", [*args, "--distributed.rollout_shards", "2"])
    remote = run_cli(tmp_path, "ray", [*args, "--backend", "ray", "--rollout-workers", "2"])
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr[-2000:]
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")


def run_cli(tmp_path, name, args, launcher=(sys.executable, "-m", "rlvr")):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo"}
    return subprocess.run([*launcher, "train", *args, "--run-dir", str(tmp_path / name)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


# ----------------------------------------------------------------------------- DDP learner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_rank(rank, world_size, port, overrides, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), GLOO_SOCKET_IFNAME="lo")
    import torch.distributed as dist

    from rlvr.distributed.ddp import DDPTrainer
    torch.set_num_threads(1)
    trainer = DDPTrainer(load_config(ROOT / "configs" / "sort-toy.yaml", overrides), show_progress=False)
    trainer.run()
    dist.destroy_process_group()
    torch.save(trainer.policy.state_dict(), Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_two_gloo_ranks_make_the_same_step_as_one_process_on_the_whole_batch(tmp_path, aggregation):
    overrides = {"train.outer_steps": 1, "train.inner_steps": 3, "algo.loss": "clipped", "algo.kl_coef": 0.1,
                 "algo.aggregation": aggregation, "distributed.rollout_shards": 2, "eval.every": 1}
    mp.spawn(ddp_rank, args=(2, free_port(), {**overrides, "run_dir": str(tmp_path / "ddp")}, str(tmp_path)),
             nprocs=2, join=True)
    single = Trainer(load_config(ROOT / "configs" / "sort-toy.yaml",
                                 {**overrides, "run_dir": str(tmp_path / "one")}), show_progress=False)
    before = {k: v.clone() for k, v in single.policy.state_dict().items()}
    single.run()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, value in single.policy.state_dict().items():
        assert not torch.allclose(value, before[name])  # the step moved the weights
        for rank in ranks:
            torch.testing.assert_close(rank[name], value, rtol=1e-5, atol=1e-6)


def test_torchrun_writes_one_run_directory_with_the_local_metrics(tmp_path):
    args = ["--config", "sort-toy", "--train.outer_steps", "6", "--eval.every", "3", "--quiet",
            "--algo.kl_coef", "0.05"]
    local = run_cli(tmp_path, "local", [*args, "--distributed.rollout_shards", "2"])
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlvr")
    ddp = run_cli(tmp_path, "ddp", args, launcher=torchrun)
    assert local.returncode == 0 and ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("run directory:") == 1  # rank 0 reports, once
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "curves.png", "summary.json"):
        assert (tmp_path / "ddp" / name).stat().st_size > 0, name
    steps = [r["step"] for r in rows_without_times(tmp_path / "ddp")]
    assert steps == list(range(7))  # written once: no duplicated lines from rank 1
    assert_same_metrics(tmp_path / "local", tmp_path / "ddp", exact=False, drop=RATIO_METRICS)


# ----------------------------------------------------------------------------- HF + LoRA


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    return hf_model(tmp_path_factory.mktemp("hf"), TINY_LM)


def test_ray_and_torchrun_train_an_hf_lora_policy_like_the_local_backend(local_ray, tmp_path, hf_folder):
    """An HF policy with LoRA through both backends; Ray's actors get only the adapters each step."""
    lora = {**TINY_LM, "policy.kind": "hf", "policy.model": str(hf_folder), "policy.lora.rank": 4,
            "optim.name": "adamw", "optim.lr": 0.01}
    for key in ("policy.hidden_size", "policy.intermediate_size", "policy.num_layers", "policy.num_heads"):
        lora.pop(key)
    Trainer(config(tmp_path, "local", **lora), show_progress=False).run()
    trainer = Trainer(config(tmp_path, "ray", **lora, **{"distributed.backend": "ray"}), show_progress=False)
    trainer.run()
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")
    adapters = trainer.policy.state_dict()
    assert adapters and all("lora_" in k for k in adapters)
    mb = sum(v.numel() * v.element_size() for v in adapters.values()) / 2**20
    full = sum(v.numel() * v.element_size() for v in torch.nn.Module.state_dict(trainer.policy).values()) / 2**20
    rows = [json.loads(line) for line in (tmp_path / "ray" / "metrics.jsonl").read_text().splitlines()]
    shipped = [r["rollout/weight_sync_mb"] for r in rows if "rollout/weight_sync_mb" in r]
    assert shipped and all(s == pytest.approx(mb) for s in shipped) and mb < full / 4
    flags = ["--config", "sort-toy", "--quiet", *[f"--{k}={v}" for k, v in {
        **lora, "train.outer_steps": 3, "eval.every": 3, "algo.kl_coef": 0.05, "distributed.rollout_shards": 2}.items()]]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlvr")
    local, ddp = run_cli(tmp_path, "local-cli", flags), run_cli(tmp_path, "ddp", flags, launcher=torchrun)
    assert local.returncode == 0 and ddp.returncode == 0, (local.stderr + ddp.stderr)[-3000:]
    assert_same_metrics(tmp_path / "local-cli", tmp_path / "ddp", exact=False, drop=RATIO_METRICS)


GUESS = {"policy.hidden_size": 16, "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2,
         "sft.steps": 20, "sft.batch_size": 16, "sft.eval_every": 20, "train.prompts_per_step": 4,
         "train.group_size": 4, "task.num_eval_prompts": 4, "train.outer_steps": 3, "eval.every": 3}


def test_multi_turn_episodes_on_ray_actors_give_the_local_backends_metrics(local_ray, tmp_path):
    """The guess preset's episodes (env per episode, in each actor) over 2 Ray workers and 2 shards train
    exactly like the local backend: same seed, same shards, same episodes, same metrics and samples."""
    def guess(name, **more):
        return load_config(ROOT / "configs" / "guess.yaml", {**GUESS, "distributed.rollout_shards": 2,
                                                             "run_dir": str(tmp_path / name), **more})
    Trainer(guess("local"), show_progress=False).run()
    Trainer(guess("ray", **{"distributed.backend": "ray", "distributed.rollout_workers": 2}), show_progress=False).run()
    assert_same_metrics(tmp_path / "local", tmp_path / "ray")
    rows = rows_without_times(tmp_path / "ray")
    assert all(row["env/turns_mean"] >= 1 for row in rows if row["step"] >= 1)
    assert (tmp_path / "local" / "samples.jsonl").read_text() == (tmp_path / "ray" / "samples.jsonl").read_text()
