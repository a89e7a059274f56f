"""Loading a Hugging Face model folder: only local files, no shipped code, a tokenizer that fits."""

import json

import pytest

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.policies import build_policy
from rlvr.policies.export import save_final
from rlvr.tasks import build_task
from rlvr.tokenizer import CharTokenizer

pytest.importorskip("transformers")
TINY = {"task.name": "sort-text", "task.length": 3, "policy.kind": "transformer", "policy.hidden_size": 16,
        "policy.intermediate_size": 32, "policy.num_layers": 1, "policy.num_heads": 2}


@pytest.fixture
def model_folder(tmp_path):
    cfg = load_config(None, TINY)
    folder = tmp_path / "model"
    save_final(build_policy(cfg.policy, build_task(cfg.task)), folder)
    return folder


def train_hf(folder, tmp_path, *extra):
    return main(["train", "--config", "sort5", "--policy", "hf", "--model", str(folder), "--task.length", "3",
                 "--train.outer_steps", "1", "--run-dir", str(tmp_path / "run"), "--quiet", *extra])


def error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlvr: error: policy.model"), lines
    return lines[0]


def test_the_exported_folder_trains(model_folder, tmp_path):
    assert train_hf(model_folder, tmp_path) == 0


def test_a_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    assert train_hf(tmp_path / "nowhere", tmp_path) == 2
    assert "no such model folder" in error_line(capsys)


def test_a_folder_that_ships_code_is_refused_without_trust_remote_code(model_folder, tmp_path, capsys):
    config = json.loads((model_folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (model_folder / "config.json").write_text(json.dumps(config))
    (model_folder / "modeling_evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    assert train_hf(model_folder, tmp_path) == 2
    assert "ships its own model code" in error_line(capsys)
    assert not (tmp_path / "ran").exists()


def test_a_tokenizer_larger_than_the_embedding_is_refused(model_folder, tmp_path, capsys):
    CharTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz0123456789 >"]).save(model_folder)  # another model's
    assert train_hf(model_folder, tmp_path) == 2
    assert "is it the tokenizer of another model" in error_line(capsys)
