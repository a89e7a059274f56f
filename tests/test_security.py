"""Loading never runs code from a checkpoint or a model folder; user code comes only from a module
path the user names."""

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch

from rlvr.cli import main
from rlvr.errors import ConfigError, UserError
from rlvr.plugins import import_object
from rlvr.runs.checkpoint import MANIFEST, STATE, TENSORS, file_digest
from rlvr.safe_load import check_model_folder, load_torch_file, pretrained_kwargs

SRC = Path(__file__).resolve().parents[1] / "src" / "rlvr"


class Payload:
    """Unpickling this creates ``marker``: a stand-in for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def malicious_pickle(marker):
    return pickle.dumps({"weights": Payload(marker)})


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    pickle.loads(malicious_pickle(tmp_path / "marker"))  # noqa: S301 -- proves the test's premise
    assert (tmp_path / "marker").exists()


def test_a_malicious_pickle_in_a_checkpoint_folder_is_never_loaded(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "marker"
    args = ["train", "--config", "lecture-sort-centered", "--quiet", "--train.outer_steps", "4",
            "--checkpoint.every", "2", "--eval.every", "4", "--run-dir", str(run)]
    assert main(args) == 0
    (run / "summary.json").unlink()  # pretend it was killed after its last checkpoint
    good = run / "checkpoints" / "step-000004"
    for name in ("model.pt", "optimizer.pt", "pytorch_model.bin", "rng_state.pkl", "trainer_state.pkl"):
        (good / name).write_bytes(malicious_pickle(marker))
    # a newer "checkpoint" whose tensors file is a pickle, with a manifest whose checksums match it
    evil = run / "checkpoints" / "step-000009"
    evil.mkdir()
    (evil / TENSORS).write_bytes(malicious_pickle(marker))
    (evil / STATE).write_bytes(malicious_pickle(marker))
    manifest = {"format": 1, "step": 9, "metrics": {},
                "files": {name: file_digest(evil / name) for name in (TENSORS, STATE)}}
    (evil / MANIFEST).write_text(json.dumps(manifest))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "step-000009 is unusable" in captured.err and "resuming" in captured.out and "from step 4" in captured.out
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch notes the pickle protocol
def test_a_malicious_torch_file_is_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(load_torch_file(path)["w"], torch.ones(2))  # plain tensors load
    path.write_bytes(malicious_pickle(tmp_path / "marker"))
    with pytest.raises(UserError, match="refusing to load"):
        load_torch_file(path)
    assert not (tmp_path / "marker").exists()


def test_a_model_folder_with_its_own_code_needs_trust_remote_code(tmp_path):
    folder = tmp_path / "model"
    with pytest.raises(UserError, match="policy.path: no such model folder"):
        check_model_folder(folder)
    folder.mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        check_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "modeling_x.X"}}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="ships its own model code.*--policy.trust_remote_code true"):
        check_model_folder(folder)
    assert check_model_folder(folder, trust_remote_code=True) == folder
    assert pretrained_kwargs(folder) == {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True}


@pytest.mark.parametrize("spec", ["/tmp/evil.py:f", "evil.py:f", "os.path", "a:b:c", "../x:f", "x:"])
def test_user_code_only_from_a_module_path(spec):
    with pytest.raises(ConfigError, match="task.name"):
        import_object(spec, field="task.name")


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else ast.unparse(func)
            yield name, node


def test_no_module_loads_pickles_evals_code_or_trusts_remote_code():
    """torch.load only with weights_only=True; no pickle, eval, exec, or trust_remote_code=True."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for name, node in calls(tree):
            where = f"{path.relative_to(SRC)}:{node.lineno} {name}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(where)
            if name in ("eval", "exec", "pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.loads"):
                problems.append(where)
            flag = keywords.get("trust_remote_code")
            if isinstance(flag, ast.Constant) and flag.value is True:
                problems.append(where)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n in ("pickle", "dill", "cloudpickle", "marshal") for n in names):
                    problems.append(f"{path.relative_to(SRC)}:{node.lineno} imports {names}")
    assert problems == []
