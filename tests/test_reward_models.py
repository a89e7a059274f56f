"""Learned reward models beside the verifier: Bradley-Terry, ``rlvr rm``, combined reward sources."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.rewards import sources as reward_sources
from rlvr.rewards.model import bradley_terry_loss, hf_tokenizer_args, preference_pairs
from rlvr.rewards.sources import SequenceScorer, load_scorer, response_text
from rlvr.tasks import SortTextTask, build_task
from rlvr.tokenizer import CharTokenizer
from rlvr.trainer import Trainer

pytest.importorskip("transformers")


def test_bradley_terry_loss_and_gradient_by_hand():
    chosen = torch.tensor([1.0, 0.0, 0.5], requires_grad=True)
    rejected = torch.tensor([0.0, 2.0, 0.5], requires_grad=True)
    loss, metrics = bradley_terry_loss(chosen, rejected)
    loss.backward()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    margins = [1.0, -2.0, 0.0]
    assert float(loss.detach()) == pytest.approx(-sum(math.log(sig(m)) for m in margins) / 3, rel=1e-6)
    # dL/dr_c = -(1 - sigmoid(m)) / n, dL/dr_r = +(1 - sigmoid(m)) / n
    assert chosen.grad.tolist() == pytest.approx([-(1 - sig(m)) / 3 for m in margins], rel=1e-6)
    assert rejected.grad.tolist() == pytest.approx([(1 - sig(m)) / 3 for m in margins], rel=1e-6)
    assert float(metrics["accuracy"]) == pytest.approx(1 / 3)


def test_synthetic_pairs_prefer_the_more_sorted_answer():
    task = build_task(load_config(None, {"task.name": "sort-text", "task.length": 4}).task)
    pairs = preference_pairs(task, 200, seed=0)
    assert len(pairs) == 200
    for p in pairs:
        assert task.score_text(p["prompt"], p["chosen"]) > task.score_text(p["prompt"], p["rejected"])
        assert not task.is_heldout(p["prompt"])


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    """A reward model trained by the real CLI on synthetic sort-text preferences."""
    out = tmp_path_factory.mktemp("rm") / "rm"
    code = main(["rm", "train", "--task", "sort-text", "--task.length", "3", "--pairs", "1000",
                 "--steps", "120", "--hidden-size", "32", "--out", str(out)])
    assert code == 0
    return out


def test_reward_model_learns_the_preference(rm_dir):
    summary = json.loads((rm_dir / "summary.json").read_text())
    assert summary["heldout/pairwise_accuracy"] >= 0.75  # chance: 0.5
    # the folder is an ordinary HF sequence-classification model with one label
    from transformers import AutoModelForSequenceClassification
    assert AutoModelForSequenceClassification.from_pretrained(str(rm_dir)).config.num_labels == 1
    scorer = load_scorer(rm_dir, field="path", batch_size=3)
    prompts, good, bad = ["3 1 2>"] * 4, ["1 2 3"] * 4, ["3 2 1"] * 4
    batched = scorer(prompts + prompts, good + bad)
    one_by_one = [scorer([p], [r])[0] for p, r in zip(prompts + prompts, good + bad, strict=True)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)  # padding and chunking change nothing
    assert batched[0] > batched[-1]


def small_run(tmp_path, name, sources, *, task="sort-text", steps=3):
    return load_config(None, {
        "task.name": task, "task.length": 3, "task.num_eval_prompts": 8, "run_dir": str(tmp_path / name),
        "policy.kind": "transformer", "policy.hidden_size": 32, "policy.intermediate_size": 64,
        "policy.num_layers": 1, "policy.num_heads": 2, "train.outer_steps": steps, "train.inner_steps": 2,
        "train.prompts_per_step": 4, "train.group_size": 4, "algo.deltas": "normalized",
        "train.diagnostics_every": 0, "eval.every": 2, "eval.pass_samples": 5, "checkpoint.every": 0,
        "rewards.sources": sources})


def run_history(cfg):
    trainer = Trainer(cfg, show_progress=False)
    try:
        trainer.run()
        return trainer.history, trainer.policy.state_dict()
    finally:
        trainer.close()


def test_combined_rewards_log_each_component(tmp_path, rm_dir):
    sources = [{"kind": "verifier", "weight": 1.0}, {"kind": "format", "weight": 0.1},
               {"kind": "model", "path": str(rm_dir), "weight": 0.5}, {"kind": "exact", "weight": 0.0}]
    history, _ = run_history(small_run(tmp_path, "combined", sources))
    for row in history[1:]:
        parts = {k: row[f"reward/{k}"] for k in ("verifier", "format", "model", "exact")}
        assert row["train/reward_mean"] == pytest.approx(
            parts["verifier"] + 0.1 * parts["format"] + 0.5 * parts["model"], abs=1e-5)
        assert 0 <= parts["exact"] <= parts["verifier"] <= 1 and 0 <= parts["format"] <= 1


# -- a model that reproduces the verifier ---------------------------------------------------------

def lenient_sort_text(cfg):
    """sort-text whose verifier reads the same text a reward model reads (``response_text``), so a
    model can reproduce it exactly, malformed responses included."""
    class Lenient(SortTextTask):
        def reward(self, prompt, response):
            return float(self.score_text(prompt, response_text(response)))
    return Lenient(length=cfg.length, eval_fraction=cfg.eval_fraction, num_eval_prompts=cfg.num_eval_prompts,
                   split_seed=cfg.split_seed)


class VerifierNet(torch.nn.Module):
    """A 'sequence classifier' whose one logit is the verifier's score of the text its ids spell."""

    def __init__(self, task, tokenizer):
        super().__init__()
        self.task, self.tokens = task, tokenizer.tokens
        self.special = tokenizer.special_ids

    def forward(self, input_ids, attention_mask):
        scores = []
        for ids, keep in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            text = "".join(self.tokens[i] for i, k in zip(ids, keep, strict=True) if k and i not in self.special)
            prompt, answer = text.split(">", 1)
            scores.append(self.task.score_text(prompt + ">", answer))
        return SimpleNamespace(logits=torch.tensor(scores).unsqueeze(-1))


def test_model_source_reproducing_the_verifier_trains_identically(tmp_path, rm_dir, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    task_name = "test_reward_models:lenient_sort_text"
    task = build_task(load_config(None, {"task.name": task_name, "task.length": 3}).task)
    chars = CharTokenizer.from_texts(task.alphabet_texts())
    scorer = SequenceScorer(VerifierNet(task, chars), PreTrainedTokenizerFast(**hf_tokenizer_args(chars)), batch_size=5)
    calls = []

    def fake_load(path, **kwargs):
        calls.append(path)
        return scorer
    monkeypatch.setattr(reward_sources, "load_scorer", fake_load)
    verifier, _ = run_history(small_run(tmp_path, "verifier", [{"kind": "verifier"}], task=task_name))
    model, model_weights = run_history(small_run(tmp_path, "model", [{"kind": "model", "path": str(rm_dir)}], task=task_name))
    plain, plain_weights = run_history(small_run(tmp_path, "plain", None, task=task_name))
    assert calls  # the model source was built, and scored the rollouts below
    skip = ("time/", "perf/", "reward/")
    for a, b, c in zip(verifier, model, plain, strict=True):
        assert {k: v for k, v in a.items() if not k.startswith(skip)} == {k: v for k, v in b.items() if not k.startswith(skip)}
        assert {k: v for k, v in a.items() if not k.startswith(skip)} == {k: v for k, v in c.items() if not k.startswith(skip)}
        if "reward/verifier" in a:
            assert a["reward/verifier"] == pytest.approx(b["reward/model"])
    # rewards that vary: the test can tell sources apart
    assert any(0 < row["train/reward_mean"] < 1 for row in verifier if "train/reward_mean" in row)
    for key in model_weights:
        assert torch.equal(model_weights[key], plain_weights[key])


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    bad = [("[{kind: judge}]", "rewards.sources[0].kind"), ("[{kind: model}]", "rewards.sources[0].path"),
           ("[{kind: model, path: /nonexistent}]", "rewards.sources[0].path"),
           ("[{kind: verifier, weight: x}]", "rewards.sources[0].weight"),
           ("[{kind: verifier}, {kind: verifier}]", "rewards.sources[1].name"), ("[]", "rewards.sources")]
    for value, field in bad:
        code = main(["train", "--config", "sort-toy", "--run-dir", str(tmp_path / "r"), "--quiet",
                     "--rewards.sources", value])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"rlvr: error: {field}") and "\n" not in err, (value, err)
    assert main(["rm", "train", "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "bad.jsonl").write_text('{"prompt": "1>", "chosen": 3}\n')
    assert main(["rm", "train", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "line 1" in capsys.readouterr().err
