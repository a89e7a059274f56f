"""The README's commands and the docs' examples run as written.

Every line of every ```bash block in README.md is run in order, from a temporary directory (so
``runs/...`` lands there), with ``.venv/bin/`` meaning this interpreter's environment and
``rlvr train`` and ``rlvr sft`` shortened (``shortened``: 20 outer steps, 10 SFT steps, 16 held-out prompts) (what the full quickstart run reaches is checked by
tests/test_cli.py::test_sort_toy_raises_evaluation_reward). Exempt, with
the reason: ``make demo`` and ``make test`` (they create the environment this test runs in, and CI
runs both); ``scripts/render_report.sh`` when Chromium is not installed; commands that need the
optional Ray extra (``--backend ray``) when it is not installed -- the distributed suite
(``make test-distributed``, run by CI with the extra) runs those lines itself
(``test_readme_ray_commands_run``). ``tensorboard`` serves until stopped: the test starts it, checks
it lists the runs, and stops it.
"""


import importlib.util
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXEMPT = {("make", "demo"): "creates .venv and trains; CI runs it", ("make", "test"): "runs this very suite"}


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def readme_commands() -> list[list[str]]:
    commands = []
    for block in code_blocks(ROOT / "README.md", "bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def resolve(words: list[str]) -> list[str]:
    program = words[0]
    if program.startswith(".venv/bin/"):
        program = str(BIN / program.removeprefix(".venv/bin/"))
    elif program.startswith("scripts/"):
        program = str(ROOT / program)
    return [program, *words[1:], *shortened(words)]


def shortened(words: list[str]) -> list[str]:
    """Flags that make a README training command quick: 20 RL steps, 10 SFT steps where the command
    or its preset has an SFT stage, 16 held-out prompts."""
    if words[1:2] not in (["train"], ["sft"]) or "--help" in words:
        return []
    flags = ["--train.outer_steps", "20"] if words[1] == "train" else []
    preset = words[words.index("--config") + 1] if "--config" in words else None
    sft = yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text()).get("sft", {}) if preset else {}
    if words[1] == "sft" or "--sft.steps" in words or (sft or {}).get("steps"):
        flags += ["--sft.steps", "10"]
    if preset and preset.startswith(("sort5", "arith", "countdown")):
        flags += ["--task.num_eval_prompts", "16"]
    return flags


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


def test_every_readme_command_runs(tmp_path):
    commands = readme_commands()
    assert [w for w in commands if w[0].endswith("rlvr")], "the README lost its quickstart"
    for words in commands:
        if tuple(words) in EXEMPT:
            continue
        if words[0].endswith("tensorboard"):
            check_tensorboard(words, tmp_path)
            continue
        if words[0].startswith("scripts/render_report") and shutil.which("chromium") is None:
            continue
        if needs_ray(words) and importlib.util.find_spec("ray") is None:
            continue
        run_command(words, tmp_path)
    assert (tmp_path / "runs" / "quick" / "report.html").stat().st_size > 0
    assert (tmp_path / "runs" / "compare.html").stat().st_size > 0


def needs_ray(words: list[str]) -> bool:
    return "--backend" in words and words[words.index("--backend") + 1:][:1] == ["ray"]


def run_command(words: list[str], cwd: Path) -> None:
    out = subprocess.run(resolve(words), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{shlex.join(words)}\n{out.stderr[-2000:]}"


@pytest.mark.distributed
def test_readme_ray_commands_run(tmp_path):
    pytest.importorskip("ray")
    commands = [w for w in readme_commands() if needs_ray(w)]
    assert commands, "the README lost its Ray example"
    for words in commands:
        run_command(words, tmp_path)


def test_the_readme_maps_every_doc():
    readme = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme, doc.name


@pytest.mark.timeout(300)
def test_the_task_guide_example_trains_its_task(tmp_path):
    script = tmp_path / "reverse_task.py"
    script.write_text(code_blocks(ROOT / "docs" / "tasks.md", "python")[0])
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the guide runs from the repository root
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "runs" / "reverse" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["eval/exact_match"] > rows[0]["eval/exact_match"]
