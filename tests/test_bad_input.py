"""Bad input stops the run before any work with one line naming the field: exit code 2, no traceback.

Checked in process through ``rlvr.cli.main`` (the code path of the command line, without paying for a
new interpreter per case); tests/test_cli.py checks the same in real subprocesses."""

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from rlvr.cli import main

BASE = ["--config", "lecture-sort-centered", "--quiet", "--train.outer_steps", "2"]

# (extra flags, YAML file content or None, the field the one-line message must start with)
CASES = [
    (["--algo.deltas", "centred"], None, "algo.deltas"),
    (["--algo.detlas", "rloo"], None, "algo.detlas"),
    (["--train.group_size", "0"], None, "train.group_size"),
    (["--train.group_size", "1"], None, "train.group_size"),
    (["--train.group_size", "1", "--algo.deltas", "rloo"], None, "train.group_size"),
    (["--optim.lr", "-1"], None, "optim.lr"),
    (["--optim.lr", "fast"], None, "optim.lr"),
    (["--optim.lr", ".nan"], None, "optim.lr"),
    (["--optim.lr", ".inf"], None, "optim.lr"),
    (["--task.prompts", "[[1,9,2]]"], None, "task.prompts"),
    (["--task.prompts", "[]"], None, "task.prompts"),
    (["--algo.loss", "ppo"], None, "algo.loss"),
    (["--seed", "-1"], None, "seed"),
    (["--seed", str(2**40)], None, "seed"),
    (["--task.split_seed", "-3"], None, "task.split_seed"),
    (["--train.outer_steps", "0"], None, "train.outer_steps"),
    (["--train.outer_steps", "2.5"], None, "train.outer_steps"),
    (["--train.inner_steps", "many"], None, "train.inner_steps"),
    (["--algo.clip_eps_low", "1.5"], None, "algo.clip_eps_low"),
    (["--optim.beta2", "1.5"], None, "optim.beta2"),
    (["--optim.name", "sgdd"], None, "optim.name"),
    (["--optim.reset_every", "-1"], None, "optim.reset_every"),
    (["--optim.reset_every", "2.5"], None, "optim.reset_every"),
    (["--algo.adaptive_sampling", "balance"], None, "algo.adaptive_sampling"),
    (["--algo.adaptive_sampling", "balanced", "--algo.deltas", "rloo"], None, "algo.deltas"),
    (["--algo.adaptive_sampling", "positive", "--algo.adaptive_rounds", "0"], None, "algo.adaptive_rounds"),
    (["--algo.adaptive_rounds", "3"], None, "algo.adaptive_rounds"),
    (["--algo.adaptive_sampling", "balanced", "--algo.dynamic_sampling", "true"], None, "algo.dynamic_sampling"),
    (["--eval.pass_k", "20"], None, "eval.pass_samples"),
    (["--train.temperature", "0"], None, "train.temperature"),
    (["--algo.unbiased_std", "maybe"], None, "algo.unbiased_std"),
    (["--algo.top_entropy_quantile", "0"], None, "algo.top_entropy_quantile"),
    (["--algo.top_entropy_quantile", "1.2"], None, "algo.top_entropy_quantile"),
    (["--algo.deltas", "w-reinforce", "--algo.positive_weight", "-0.1"], None, "algo.positive_weight"),
    (["--algo.positive_weight", "0.5"], None, "algo.positive_weight"),
    (["--policy.kind", "gpt5"], None, "policy.kind"),
    (["--eval.every", "0"], None, "eval.every"),
    (["--task.vocab_size", "1"], None, "task.vocab_size"),
    (["--task.eval_fraction", "0"], None, "task.eval_fraction"),
    (["--checkpoint.keep", "0"], None, "checkpoint.keep"),
    (["--checkpoint.every", "-1"], None, "checkpoint.every"),
    (["--checkpoint.best_metric", "eval/accuracy"], None, "checkpoint.best_metric"),
    (["--checkpoint.best_mode", "maximum"], None, "checkpoint.best_mode"),
    (["--rewards.timeout", "0"], None, "rewards.timeout"),
    (["--rewards.fallback", ".nan"], None, "rewards.fallback"),
    (["--rewards.max_failure_rate", "1.5"], None, "rewards.max_failure_rate"),
    (["--rewards.workers", "-1"], None, "rewards.workers"),
    (["--train.nonfinite_patience", "0"], None, "train.nonfinite_patience"),
    (["--task.name", "no_such_module_xyz:factory"], None, "task.name"),
    (["--task.name", "custom_tasks:missing"], None, "task.name"),
    (["--task.name", "custom_tasks:NOT_CALLABLE"], None, "task.name"),
    (["--task.name", "custom_tasks:not_a_task"], None, "task.name"),
    (["--task.name", "custom_tasks:empty_prompts", "--task.prompts", "null"], None, "task.name"),
    (["--task.name", "custom_tasks:raises"], None, "task.name"),
    (["--task.reward", "reward_faults:nope"], None, "task.reward"),
    (["--task.reward", "a b:c"], None, "task.reward"),
    ([], "name: a/b\n", "name"),
    ([], "task: 3\n", "task"),
    ([], "foo:\n  bar: 1\n", "foo"),
    ([], "train: {outer_step: 3}\n", "train.outer_step"),
    ([], "train: [1, 2\n", "--config"),
    (["--train.skip_flat_groups", "true", "--algo.kl_coef", "0.1", "--algo.kl_in", "loss"], None,
     "train.skip_flat_groups"),
    (["--train.skip_flat_groups", "true", "--algo.entropy_coef", "0.01"], None, "train.skip_flat_groups"),
    (["--algo.rollout_correction", "tis"], None, "algo.rollout_correction"),
    (["--algo.rollout_correction", "tis-token", "--algo.correction_cap", "0.5"], None, "algo.correction_cap"),
    (["--algo.correction_cap", "3"], None, "algo.correction_cap"),
    (["--algo.rollout_correction", "seq-mask", "--algo.correction_delta", "-1"], None, "algo.correction_delta"),
    (["--algo.deltas", "gdpo"], None, "rewards.sources"),
    (["--algo", "gdpo", "--rewards.sources", "[{kind: verifier}, {kind: exact}]", "--algo.kl_coef", "0.1",
      "--algo.kl_in", "reward"], None, "algo.kl_in"),
    (["--algo.credit", "optimal-token-baseline"], None, "algo.deltas"),
    (["--algo.deltas", "raw", "--algo.credit", "optimal-token-baseline", "--train.group_size", "1"], None,
     "train.group_size"),
    (["--algo.otb_leave_one_out", "false"], None, "algo.otb_leave_one_out"),
    (["--resume", "/nonexistent/run"], None, "--resume"),
    (["--config", "no-such-preset"], None, "--config"),
]


def run_cli(args, capsys):
    code = main(["train", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("args,yaml_text,field", CASES, ids=[f"{i}-{c[2]}" for i, c in enumerate(CASES)])
def test_bad_config_is_one_line_naming_the_field(tmp_path, capsys, args, yaml_text, field):
    base = list(BASE)
    if yaml_text is not None:
        (tmp_path / "bad.yaml").write_text(yaml_text)
        base = ["--config", str(tmp_path / "bad.yaml")]
    if "--config" in args or "--resume" in args:
        base = []
    code, err = run_cli([*base, "--run-dir", str(tmp_path / "run"), *args] if "--resume" not in args else args, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"rlvr: error: {field}:"), err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before any work


def test_there_are_at_least_25_cases_over_distinct_fields():
    assert len(CASES) >= 25 and len({c[2] for c in CASES}) >= 25


def test_did_you_mean_for_unknown_keys_and_values(tmp_path, capsys):
    _, err = run_cli([*BASE, "--run-dir", str(tmp_path / "r"), "--algo.detlas", "rloo"], capsys)
    assert "did you mean 'algo.deltas'" in err[0]
    _, err = run_cli([*BASE, "--run-dir", str(tmp_path / "r"), "--checkpoint.best_metric", "eval/exact"], capsys)
    assert "did you mean 'eval/exact_match'" in err[0]


def test_run_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, err = run_cli([*BASE, "--run-dir", str(tmp_path / "file")], capsys)
    assert code == 2 and err[0].startswith("rlvr: error: run_dir:")


def test_resume_needs_a_run_directory_and_keeps_its_config(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["--resume", str(tmp_path / "empty")], capsys)
    assert code == 2 and err == [f"rlvr: error: --resume: {str(tmp_path / 'empty')!r} is not a run directory (no config.yaml)"]
    code, err = run_cli(["--resume", str(tmp_path / "empty"), "--train.outer_steps", "3"], capsys)
    assert code == 2 and err[0].startswith("rlvr: error: --resume: a resumed run keeps its saved config.yaml")


def test_a_full_disk_mid_run_is_one_line_naming_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink("/dev/full", run / "metrics.jsonl")  # every write to it fails with ENOSPC, as on a full disk
    code, err = run_cli([*BASE, "--run-dir", str(run)], capsys)
    assert code == 2
    assert err == [f"rlvr: error: {run / 'metrics.jsonl'}: {os.strerror(errno.ENOSPC)}"]


@contextmanager
def tmpfs(path, options):
    """A small real file system at ``path`` (root only; skips elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written to: chmod for users, a read-only tmpfs for root."""
    if os.geteuid() != 0:
        path = tmp_path / "ro"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with tmpfs(tmp_path / "ro", "ro,size=64k") as path:
        yield path


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny file system needs root")
def test_a_full_disk_at_the_start_is_one_line(tmp_path, capsys):
    with tmpfs(tmp_path / "small", "size=16k") as path:
        code, err = run_cli([*BASE, "--run-dir", str(path / "run")], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("rlvr: error: --run-dir: cannot write to") and "No space left on device" in err[0]


def test_a_read_only_run_dir_is_one_line(read_only_dir, capsys):
    code, err = run_cli([*BASE, "--run-dir", str(read_only_dir / "run")], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("rlvr: error: --run-dir: cannot write to")
    assert "Read-only file system" in err[0] or "Permission denied" in err[0]


def test_a_custom_task_named_by_module_path_trains(tmp_path, capsys):
    code, _ = run_cli([*BASE, "--run-dir", str(tmp_path / "run"), "--task.name", "custom_tasks:reversed_sort"], capsys)
    assert code == 0 and (Path(tmp_path) / "run" / "summary.json").exists()


def test_a_tokenizer_that_does_not_fit_the_model_is_named():
    from rlvr.errors import UserError
    from rlvr.safe_load import check_tokenizer

    check_tokenizer(1000, 1024)  # padded embeddings are fine
    with pytest.raises(UserError, match=r"^policy.tokenizer: the tokenizer has 50257 tokens but the model's embedding has only 1000 rows"):
        check_tokenizer(50257, 1000)
