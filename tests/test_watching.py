"""Watching a run: metric sinks (metrics.jsonl, TensorBoard, optional trackers), the live view,
completions, and the HTML report."""

import base64
import importlib.util
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlvr.cli import main
from rlvr.config import load_config
from rlvr.runs.progress import distinct_responses, samples_table
from rlvr.runs.trackers import display_name
from rlvr.trainer import train
from test_cli import ROOT, rlvr

SHORT = {"train.outer_steps": 12, "eval.every": 5, "eval.samples_every": 5}


def short_run(run_dir: Path, preset: str = "sort-toy", **overrides) -> Path:
    cfg = load_config(ROOT / "configs" / f"{preset}.yaml", {**SHORT, "run_dir": str(run_dir), **overrides})
    train(cfg, show_progress=False)
    return run_dir


def read_rows(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    return short_run(tmp_path_factory.mktemp("runs") / "toy-a")


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    return short_run(tmp_path_factory.mktemp("runs") / "clipped-b", "lecture-sort-clipped", **{"algo.kl_coef": 0.05})


# ----------------------------------------------------------------------------- sinks


def test_display_names_namespace_our_keys():
    assert display_name("train/reward_mean") == "reward/reward_mean"
    assert display_name("eval/pass@5") == "heldout/pass@5"
    assert display_name("time/rollout") == "perf/rollout"
    for unchanged in ("loss/policy", "policy/kl", "perf/tokens_per_s"):
        assert display_name(unchanged) == unchanged


def test_tensorboard_holds_every_metric_of_metrics_jsonl(run_a):
    rows = read_rows(run_a)
    assert not any(k.startswith(("reward/", "heldout/")) for r in rows for k in r)  # jsonl keys unchanged
    events = EventAccumulator(str(run_a / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for prefix in ("reward/", "heldout/", "loss/", "policy/", "perf/"):
        assert any(t.startswith(prefix) for t in tags), prefix
    for key in {k for r in rows for k in r} - {"step"}:
        logged = {e.step: e.value for e in events.Scalars(display_name(key))}
        expected = {r["step"]: r[key] for r in rows if r.get(key) is not None}  # null: nothing to plot
        assert logged.keys() == expected.keys(), key
        assert all(logged[s] == pytest.approx(v, rel=1e-6, abs=1e-6) for s, v in expected.items()), key


def test_tokens_per_second_counts_the_sampled_response_tokens(run_a):
    # sort-toy: 3 prompts x 10 responses x 3 tokens per outer step, all real tokens
    for row in read_rows(run_a)[1:]:
        assert row["perf/tokens_per_s"] * row["time/rollout"] == pytest.approx(90, rel=1e-6)


@pytest.mark.parametrize("extra", ["wandb", "trackio"])
def test_a_missing_tracker_extra_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, extra):
    if importlib.util.find_spec(extra) is not None:
        pytest.skip(f"{extra} is installed here")
    code = main(["train", "--config", "sort-toy", "--run-dir", str(tmp_path / "r"), "--tracker", extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("rlvr: error: --tracker") and f"pip install -e '.[{extra}]'" in lines[0]
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_an_unknown_tracker_names_the_valid_ones(tmp_path, capsys):
    code = main(["train", "--config", "sort-toy", "--run-dir", str(tmp_path / "r"), "--tracker", "mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "mlflow" in err and "wandb" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="the wandb extra is not installed")
def test_wandb_offline_receives_the_namespaced_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(ROOT / "configs" / "sort-toy.yaml", {**SHORT, "run_dir": str(tmp_path / "r")})
    train(cfg, show_progress=False, trackers=["wandb"])
    history = list((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(history) == 1
    data = history[0].read_bytes()  # protobuf records: the metric names are stored as plain strings
    for name in (b"reward/reward_mean", b"heldout/exact_match", b"loss/policy", b"perf/tokens_per_s"):
        assert name in data, name
    assert b"train/reward_mean" not in data


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None, reason="the trackio extra is not installed")
def test_trackio_local_database_receives_the_namespaced_metrics(tmp_path, monkeypatch):
    import sqlite3

    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    cfg = load_config(ROOT / "configs" / "sort-toy.yaml", {**SHORT, "run_dir": str(tmp_path / "r")})
    train(cfg, show_progress=False, trackers=["trackio"])
    rows = sqlite3.connect(tmp_path / "trackio" / "rlvr.db").execute("select step, metrics from metrics").fetchall()
    assert sorted(step for step, _ in rows) == list(range(13))
    assert all("reward/reward_mean" in json.loads(m) for step, m in rows if step > 0)


# ----------------------------------------------------------------------------- live view, completions


def test_not_a_terminal_prints_a_line_per_evaluation_and_tables_on_request(tmp_path):
    out = rlvr("train", "--config", "sort-toy", "--run-dir", str(tmp_path / "r"), "--show-samples",
               *[f"--{k}={v}" for k, v in SHORT.items()])
    assert out.returncode == 0, out.stderr
    steps = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("step ")]
    assert steps == ["0/12", "5/12", "10/12", "12/12"]  # the starting point, each evaluation, the end
    assert "\x1b[" not in out.stdout  # no cursor movement or colour in a log
    for line in out.stdout.splitlines():
        if line.startswith("step "):
            assert all(label in line for label in ("heldout", "exact"))
            assert line.startswith("step 0/") or all(label in line for label in ("reward", "tok/s"))
    tables = [line.strip() for line in out.stdout.splitlines() if line.startswith("completions at step")]
    assert tables == [f"completions at step {s}" for s in (1, 5, 10)]


def test_quiet_prints_nothing_but_the_result(tmp_path, capsys):
    assert main(["train", "--config", "sort-toy", "--run-dir", str(tmp_path / "q"), "--quiet", "--show-samples",
                 "--train.outer_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "completions" not in out and "step " not in out and out.startswith("done in")


def test_distinct_responses_merge_equal_responses_and_keep_their_group(run_a):
    for record in read_rows(run_a, "samples.jsonl"):
        merged = distinct_responses(record)
        assert sum(count for _, count, _, _ in merged) == len(record["responses"])
        assert len({tuple(r) for r, *_ in merged}) == len(merged)
        by_response = {tuple(r): (reward, delta) for r, reward, delta in
                       zip(record["responses"], record["rewards"], record["deltas"], strict=True)}
        assert all(by_response[tuple(r)] == (reward, delta) for r, _, reward, delta in merged)
        assert [m[2] for m in merged] == sorted((m[2] for m in merged), reverse=True)


def test_text_completions_are_shown_verbatim_not_as_markup():
    record = {"step": 3, "prompt": "What is [b]2+2[/b]?", "solution": "4", "responses": ["4", "[red]5", "4"],
              "rewards": [1.0, 0.0, 1.0], "deltas": [0.5, -1.0, 0.5]}
    console = Console(width=100, file=io.StringIO())
    console.print(samples_table(3, [record]))
    text = console.file.getvalue()
    assert "[b]2+2[/b]" in text and "[red]5" in text and "x2" in text
    assert [r[:2] for r in distinct_responses(record)] == [("4", 2), ("[red]5", 1)]


# ----------------------------------------------------------------------------- report


class Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids, self.images, self.tables, self.chips, self.data = [], [], 0, 0, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        self.tables += tag == "table"
        self.chips += "chip" in (attrs.get("class") or "").split()

    def handle_data(self, data):
        self.data.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.data)


def pngs(page: Page) -> list[tuple[int, int]]:
    shapes = []
    for src in page.images:
        assert src.startswith("data:image/png;base64,")  # self-contained
        shapes.append(matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png").shape)
    return shapes


def test_report_of_one_run_shows_every_section(run_a):
    assert main(["report", str(run_a)]) == 0
    page = Page((run_a / "report.html").read_text())
    assert page.ids == ["overview", "curves", "heldout", "completions", "timings", "config"]
    assert len(pngs(page)) == 2  # learning curves, timings
    assert "inclusion-adjacency" in page.text and "init_scale: 0.03" in page.text  # the config as written
    evaluations = [r for r in read_rows(run_a) if "eval/exact_match" in r]
    assert len(evaluations) == 4  # steps 0, 5, 10, 12
    samples = read_rows(run_a, "samples.jsonl")
    steps = sorted({s["step"] for s in samples})
    first_last = [s for s in samples if s["step"] in (steps[0], steps[-1])]
    assert page.chips == sum(len(distinct_responses(s)) for s in first_last)
    final = evaluations[-1]["eval/reward_mean"]
    assert f"{final:.4g}" in page.text


def test_report_overlays_several_runs_and_lists_differing_fields(run_a, run_b, tmp_path):
    out = tmp_path / "compare.html"
    assert main(["report", str(run_a), str(run_b), "--out", str(out)]) == 0
    page = Page(out.read_text())
    assert "toy-a" in page.text and "clipped-b" in page.text
    assert "algo.loss" in page.text and "policy.init_scale" in page.text  # differing fields listed
    assert "train.outer_steps" not in page.text.split("fields that differ")[1].split("config.yaml of")[0]
    assert len(pngs(page)) == 2


def test_report_shows_the_last_attempt_of_a_reused_run_dir(tmp_path):
    run = short_run(tmp_path / "again", **{"train.outer_steps": 4, "eval.every": 2})
    short_run(run, **{"train.outer_steps": 6, "eval.every": 3})
    assert main(["report", str(run)]) == 0
    page = Page((run / "report.html").read_text())
    assert "1 earlier attempt" in page.text and "6 / 6 (finished)" in page.text


def test_report_of_a_run_in_progress_with_text_completions(run_a, tmp_path):
    run = tmp_path / "text-run"
    shutil.copytree(run_a, run)
    (run / "summary.json").unlink()  # still running
    record = {"step": 1, "prompt": "<b>2+2</b>?", "solution": "4", "responses": ["4", "<script>x</script>"],
              "rewards": [1.0, 0.0], "deltas": [0.5, -0.5]}
    (run / "samples.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text and "&lt;b&gt;2+2" in text
    page = Page(text)
    assert "in progress" in page.text and page.chips == 2


@pytest.mark.parametrize("argv,named", [
    (["report", "{tmp}/missing"], "missing"),
    (["report", "{tmp}"], "no metrics.jsonl"),
    (["report", "{a}", "{a}"], "--out"),
    (["report"], "RUN_DIR"),
])
def test_report_mistakes_are_one_line_exit_2(run_a, tmp_path, capsys, argv, named):
    code = main([a.format(tmp=tmp_path, a=run_a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rlvr: error:") and named in err[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(run_a, run_b, tmp_path):
    report = tmp_path / "compare.html"
    assert main(["report", str(run_a), str(run_b), "--out", str(report)]) == 0
    shot = tmp_path / "compare.png"
    subprocess.run([str(ROOT / "scripts" / "render_report.sh"), str(report), str(shot), "1600"],
                   check=True, capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280)
    rows_with_ink = (pixels[:, :, :3].min(axis=2) < 0.5).any(axis=1)
    assert rows_with_ink.mean() > 0.3  # text and plots down the page, not a blank or error page
