"""The variance tools end to end: the optimal-baseline estimator in the trainer, live diagnostics in
metrics.jsonl, and the ``rlvr variance`` commands as users run them."""

import json

import pytest
import torch

from rlvr.analysis.diagnostics import ess_fraction, gradient_agreement
from rlvr.analysis.enumerate import policy_problem
from rlvr.analysis.exact import optimal_baseline_vector
from rlvr.config import load_config
from rlvr.trainer import Trainer
from test_cli import rlvr

RUN = {"algo.deltas": "raw", "train.outer_steps": 3, "train.inner_steps": 1, "train.group_size": 6,
       "train.prompts_per_step": 2, "eval.every": 3}
TINY = {"task.length": 2, "task.vocab_size": 3, "task.prompts": "[[2,0],[1,1]]", "policy.embedding_dim": 4, **RUN}


def trainer(tmp_path, base=TINY, **overrides):
    cfg = load_config(None, {**base, "run_dir": str(tmp_path / "run"), **overrides})
    return Trainer(cfg, show_progress=False)


@pytest.mark.parametrize("per_prompt", [False, True])
def test_optimal_exact_hook_gives_the_per_parameter_baselined_gradient(tmp_path, per_prompt):
    """After backward + hook, the gradient is -1/N sum_n (R_n - b*_k) d_k log pi(y_n), with b* from
    the exact enumeration (pooled, or b*_{s,k} of the response's prompt), component by component."""
    name = "optimal-exact-per-prompt" if per_prompt else "optimal-exact"
    t = trainer(tmp_path, **{"algo.param_baseline": name, "algo.aggregation": "seq-mean-token-sum"})
    rollouts = t.prompts.next_batch(2)
    from rlvr.rollout import generate
    rollouts = generate(t.policy, t.task, rollouts, group_size=6, generator=torch.Generator().manual_seed(0),
                        temperature=1.0)
    batch = t.make_batch(rollouts)
    problem = policy_problem(t.policy, t.task, rollouts.prompts)
    b_star = optimal_baseline_vector(problem, per_state=per_prompt).reshape(-1, problem.scores.shape[-1])
    responses = [tuple(r) for r in rollouts.responses()]
    index = {tuple(r): i for i, r in enumerate(__import__("itertools").product(range(3), repeat=2))}
    expected = torch.zeros_like(b_star[0])
    for n, response in enumerate(responses):
        s = n // 6
        reward = float(rollouts.rewards[s, n % 6])
        b = b_star[s if per_prompt else 0]
        expected -= (reward - b) * problem.scores[s, index[response]] / len(responses)
    t.optimizer.zero_grad()
    loss = t.pg_loss(batch)
    loss.backward()
    metrics = t.hooks[0].after_backward(t.policy, batch, t.pg_loss)   # the param-baseline hook
    got = torch.cat([p.grad.reshape(-1) for p in t.policy.parameters()])
    assert torch.allclose(got.double(), expected.double(), atol=1e-5)
    assert metrics["algo/param_baseline_mean"] > 0


def test_training_logs_the_diagnostics_and_they_mean_what_they_say(tmp_path):
    t = trainer(tmp_path, **{"train.outer_steps": 4, "algo.deltas": "centered", "train.inner_steps": 3})
    summary = t.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][1:]
    for row in rows:
        assert {"diag/grad_cos_halves", "diag/grad_noise_scale", "diag/ratio_ess_frac", "train/zero_std_frac"} <= set(row)
        assert 0 < row["diag/ratio_ess_frac"] <= 1 + 1e-6
    assert summary["steps"] == 4
    quiet = trainer(tmp_path / "q", **{"train.diagnostics_every": 0}).outer_step(1)
    assert not any(k.startswith("diag/") for k in quiet)


def test_diagnostics_are_on_by_default_for_the_toy_and_off_for_language_models(tmp_path):
    from rlvr.analysis.hooks import VarianceDiagnostics
    toy = trainer(tmp_path / "toy")
    assert [type(h) for h in toy.hooks] == [VarianceDiagnostics]
    lm = trainer(tmp_path / "lm", RUN, **{"task.name": "sort-text", "policy.kind": "transformer", "task.length": 3,
                                     "policy.hidden_size": 16, "policy.intermediate_size": 32,
                                     "policy.num_layers": 1, "policy.num_heads": 2})
    assert lm.hooks == [] and not any(k.startswith("diag/") for k in lm.outer_step(1))
    asked = trainer(tmp_path / "lm2", RUN, **{"task.name": "sort-text", "policy.kind": "transformer", "task.length": 3,
                                         "policy.hidden_size": 16, "policy.intermediate_size": 32,
                                         "policy.num_layers": 1, "policy.num_heads": 2, "train.diagnostics_every": 2})
    assert [type(h) for h in asked.hooks] == [VarianceDiagnostics]
    assert not any(k.startswith("diag/") for k in asked.outer_step(1))
    assert "diag/grad_cos_halves" in asked.outer_step(2)


def test_ess_fraction_bounds():
    assert ess_fraction(torch.zeros(8)) == 1.0                          # equal weights: every sample counts
    assert abs(float(ess_fraction(torch.tensor([0.0, -50, -50, -50]))) - 0.25) < 1e-6   # one dominates: 1/N


def test_half_batch_agreement_is_one_when_the_halves_are_identical(tmp_path):
    """Each response duplicated next to itself: both halves see the same data, cosine 1, no noise."""
    t = trainer(tmp_path, **{"algo.deltas": "centered"})
    from rlvr.rollout import generate
    r = generate(t.policy, t.task, t.prompts.next_batch(2), group_size=6, generator=torch.Generator().manual_seed(0),
                 temperature=1.0)
    r.response_ids[1::2] = r.response_ids[0::2]
    r.rewards = torch.tensor([[float(t.task.reward(r.prompts[n // 6], r.response_ids[n].tolist()))
                               for n in range(s * 6, s * 6 + 6)] for s in range(2)])
    out = gradient_agreement(t.policy, t.make_batch(r), t.pg_loss, lambda *args: {})  # no gradient correction
    assert abs(out["diag/grad_cos_halves"] - 1) < 1e-5
    assert out["diag/grad_noise_scale"] < 1e-6


def test_variance_two_state_command(tmp_path):
    out = rlvr("variance", "two-state", "--out", str(tmp_path), "--seeds", "20", "--steps", "30")
    assert out.returncode == 0, out.stderr
    for text in ("11", "centered", "rloo", "optimal", "converged"):
        assert text in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    by_name = {r["baseline"]: r for r in results["variance"]}
    assert by_name["none"]["trace_cov"] > by_name["constant"]["trace_cov"] > by_name["rloo"]["trace_cov"]
    assert by_name["group-mean"]["mean_over_true"] == 0.5 and by_name["rloo"]["bias_norm"] < 1e-12
    assert (tmp_path / "two_state.png").read_bytes()[:4] == b"\x89PNG"


def test_variance_task_command_shows_bias_and_variance(tmp_path):
    out = rlvr("variance", "task", "--config", "sort-toy", "--repeats", "12", "--out", str(tmp_path),
               "--train.group_size", "4")
    assert out.returncode == 0, out.stderr
    rows = {r["mode"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert set(rows) >= {"raw", "centered", "rloo", "normalized", "optimal-exact"}
    assert rows["raw"]["trace_cov"] > rows["rloo"]["trace_cov"]
    assert rows["raw"]["trace_cov"] > rows["optimal-exact"]["trace_cov"]
    assert all(r["cos_mean_exact"] is not None for r in rows.values())
    assert (tmp_path / "task_variance.png").read_bytes()[:4] == b"\x89PNG"


def test_variance_command_user_errors(tmp_path, capsys):
    """One line naming the bad value, exit code 2 (in-process: the same main() as the console script)."""
    from rlvr.cli import main

    for args, needle in [(("variance", "nope"), "unknown variance command"),
                         (("variance", "task", "--config", "sort-toy", "--checkpoint", str(tmp_path / "x")), "--checkpoint"),
                         (("variance", "two-state", "--group-size", "1"), "--group-size"),
                         (("train", "--config", "sort-toy", "--algo.param_baseline", "optimal-exact",
                           "--run-dir", str(tmp_path / "r")), "algo.deltas raw")]:
        assert main(list(args)) == 2
        err = capsys.readouterr().err
        assert err.startswith("rlvr: error:") and needle in err and err.count("\n") == 1, (args, err)


def test_variance_task_reads_a_safetensors_checkpoint(tmp_path, capsys):
    """A real safetensors state dict is loaded into the policy; one that does not fit is a user error."""
    from safetensors.torch import save_file

    from rlvr.analysis.task_variance import load_checkpoint
    from rlvr.cli import main
    from rlvr.policies import build_policy
    from rlvr.tasks import build_task

    cfg = load_config(None, {"task.length": 2, "task.vocab_size": 3})
    task = build_task(cfg.task)
    trained = build_policy(cfg.policy, task)
    with torch.no_grad():
        trained.decode_weights.mul_(3.0)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "policy.safetensors"))
    fresh = build_policy(cfg.policy, task)
    load_checkpoint(fresh, str(tmp_path / "policy.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values(), strict=True))
    args = ["variance", "task", "--task.length", "2", "--task.vocab_size", "3", "--repeats", "4",
            "--checkpoint", str(tmp_path / "policy.safetensors"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "checkpoint" in capsys.readouterr().out and (tmp_path / "out" / "results.json").is_file()
    assert main(args[:-6] + ["--policy.embedding_dim", "3"] + args[-6:]) == 2
    assert "does not fit the policy" in capsys.readouterr().err
