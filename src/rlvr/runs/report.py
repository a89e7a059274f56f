"""A one-page, self-contained HTML report of one or more run directories: ``load_run`` reads a run,
``build_report`` writes the page (the ``rlvr report`` command is ``rlvr/cli/report.py``).

Sections: the runs at a glance (final held-out results), learning curves (PNG, several runs
overlaid), held-out results at every evaluation, sample completions (first and last batch written),
timings, and the config (for several runs, the fields that differ first). PNGs are embedded as
base64, so the one file can be mailed or archived. A run still in progress is reported as far as
it got.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import UserError
from rlvr.runs.plots import plot_runs, plot_timings
from rlvr.runs.progress import distinct_responses, is_solution, tokens
from rlvr.runs.rundir import RunDir

PHASES = ["time/rollout", "time/train", "time/eval"]


@dataclass
class Run:
    path: Path
    label: str
    config_text: str
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    summary: dict[str, Any] | None
    earlier_attempts: int = 0

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        return [r for r in self.metrics if any(k.startswith("eval/") for k in r)]

    @property
    def planned_steps(self) -> int | None:
        return self.config.get("train", {}).get("outer_steps")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line of a crashed or running run
                break
    return rows


def load_run(path: Path, label: str) -> Run:
    if not path.is_dir():
        raise UserError(f"report: {str(path)!r} is not a directory")
    if not (path / "metrics.jsonl").exists():
        raise UserError(f"report: {str(path)!r} is not a run directory (no metrics.jsonl)")
    config_path, summary_path = path / "config.yaml", path / "summary.json"
    config_text = config_path.read_text() if config_path.exists() else ""
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    metrics, attempts = last_attempt(RunDir(path).read_metrics(), first_step=0)
    samples, _ = last_attempt(read_jsonl(path / "samples.jsonl"), first_step=1)
    return Run(path=path, label=label, config_text=config_text, config=yaml.safe_load(config_text) or {},
               metrics=latest_per_step(metrics), samples=samples, summary=summary, earlier_attempts=attempts - 1)


def last_attempt(rows: list[dict[str, Any]], *, first_step: int) -> tuple[list[dict[str, Any]], int]:
    """A run directory trained into again holds several attempts one after the other, each opening
    with ``first_step``: keep the last one (and say how many there were)."""
    starts = [i for i, r in enumerate(rows) if r.get("step") == first_step and (i == 0 or rows[i - 1].get("step") != first_step)]
    return (rows[starts[-1]:], len(starts)) if starts else (rows, 1)


def latest_per_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per step, the last written (a resumed run may log a step again), in step order."""
    return sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, or the paths themselves when two runs share a name."""
    names = [p.resolve().name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


# ----------------------------------------------------------------------------- html pieces


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return esc(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def eval_keys(runs: Sequence[Run]) -> list[str]:
    """Held-out metric keys: reward and exact match first, then the rest (pass@k) sorted."""
    keys = {k for run in runs for r in run.metrics for k in r if k.startswith("eval/") and k != "eval/time"}
    first = [k for k in ("eval/reward_mean", "eval/exact_match") if k in keys]
    return first + sorted(keys - set(first))


# ----------------------------------------------------------------------------- sections


def overview(runs: Sequence[Run]) -> str:
    keys = eval_keys(runs)
    rows = []
    for run in runs:
        last = run.evaluations[-1] if run.evaluations else {}
        done = run.metrics[-1]["step"] if run.metrics else 0
        state = "finished" if run.summary else "in progress / stopped"
        best = max(run.evaluations, key=lambda r: r.get("eval/exact_match", 0.0), default={})
        wall = run.summary["wall_seconds"] if run.summary else sum(r.get("time/step", 0.0) for r in run.metrics)
        rows.append([esc(run.label), f"{done} / {run.planned_steps or '?'} ({state})", fmt(float(wall)),
                     evaluation_set(run.config),
                     fmt(run.metrics[-1].get("train/reward_mean", "")) if run.metrics else "",
                     *[fmt(last.get(k, "")) for k in keys],
                     f"{fmt(best.get('eval/exact_match', ''))} @ step {best.get('step', '')}"])
    header = ["run", "steps", "wall s", "evaluated on", "train reward (last)", *[f"held-out {k[5:]} (last)" for k in keys],
              "best held-out exact match"]
    paths = "".join(f"<li><b>{esc(r.label)}</b>: <code>{esc(r.path.resolve())}</code></li>" for r in runs)
    notes = [f"<p>{esc(run.label)}: metrics.jsonl holds {run.earlier_attempts} earlier attempt(s) in the same "
             "directory; the report shows the last.</p>" for run in runs if run.earlier_attempts]
    return table(header, rows, cls="overview") + f"<ul class='paths'>{paths}</ul>" + "".join(notes)


def evaluation_set(config: dict[str, Any]) -> str:
    task = config.get("task", {})
    if task.get("prompts"):
        return f"the fixed list of {len(task['prompts'])} prompts (also trained on)"
    return f"up to {task.get('num_eval_prompts', '?')} held-out prompts (never trained on)"


def curves(runs: Sequence[Run]) -> str:
    png = plot_runs({run.label: run.metrics for run in runs})
    note = ("<p>Held-out metrics (greedy reward, exact match, pass@k) are measured every <code>eval.every</code> "
            "steps on the evaluation set named above; the training reward is the mean over each step's rollouts.</p>")
    return note + image(png, "learning curves")


def heldout(runs: Sequence[Run]) -> str:
    keys = eval_keys(runs)
    parts = []
    for run in runs:
        rows = [[str(r["step"]), *[fmt(r.get(k, "")) for k in keys]] for r in run.evaluations]
        title = f"<h3>{esc(run.label)}</h3>" if len(runs) > 1 else ""
        parts.append('<div class="col">' + title + table(["step", *[k[5:] for k in keys]], rows, cls="numbers") + "</div>")
    return "".join(parts)


def shown(response: Any) -> str:
    """A response as HTML; an episode turn by turn, the policy's and the env's turns in their own styles."""
    if isinstance(response, dict) and "turns" in response:
        return " ".join(f'<span class="turn {esc(t["role"])}">{esc(t["text"])}</span>' for t in response["turns"][1:])
    return esc(tokens(response))


def completion_rows(record: dict[str, Any]) -> list[list[str]]:
    chips = []
    for response, count, reward, delta in distinct_responses(record):
        ok = is_solution(response, record["solution"])
        times = f" &times;{count}" if count > 1 else ""
        chips.append(f'<span class="chip{" ok" if ok else ""}">{shown(response)}{times}'
                     f"<small>{reward:.2f} / {delta:+.2f}</small></span>")
    return [[esc(tokens(record["prompt"])), esc(tokens(record["solution"])), "".join(chips)]]


def completions(runs: Sequence[Run]) -> str:
    parts = ["<p>Each chip is a distinct sampled response of the prompt's group (&times;n: sampled n times) "
             "with its reward / delta; green: exactly the solution.</p>"]
    for run in runs:
        steps = sorted({s["step"] for s in run.samples})
        shown = steps[:1] + steps[-1:] if len(steps) > 1 else steps
        for step in shown:
            rows = [row for s in run.samples if s["step"] == step for row in completion_rows(s)]
            label = f"{esc(run.label)}, " if len(runs) > 1 else ""
            parts.append(f"<h3>{label}step {step}</h3>"
                         + table(["prompt", "solution", "responses (reward / delta)"], rows, cls="samples"))
        if not steps:
            parts.append(f"<p>{esc(run.label)}: no samples.jsonl yet.</p>")
    return "".join(parts)


def timings(runs: Sequence[Run]) -> str:
    totals, rows = {}, []
    for run in runs:
        steps = [r for r in run.metrics if r.get("step", 0) > 0]
        totals[run.label] = {p[5:]: sum(r.get(p, 0.0) for r in run.metrics) for p in PHASES}
        if run.summary:  # start-up, plots and logging: the wall time the phases do not cover
            totals[run.label]["other (start-up, plots, logging)"] = max(run.summary["wall_seconds"] - sum(totals[run.label].values()), 0.0)
        per_step = sum(r.get("time/step", 0.0) for r in steps) / max(len(steps), 1)
        tokens = [r["perf/tokens_per_s"] for r in steps if "perf/tokens_per_s" in r]
        other = totals[run.label].get("other (start-up, plots, logging)")
        rows.append([esc(run.label), *[fmt(totals[run.label][p[5:]]) for p in PHASES],
                     fmt(other) if other is not None else "", fmt(per_step),
                     fmt(sum(tokens) / len(tokens)) if tokens else "not logged",
                     fmt(run.summary["wall_seconds"]) if run.summary else "unfinished"])
    header = ["run", "rollout s", "train s", "eval s", "other s", "s / outer step (rollout + train)",
              "rollout tokens/s (mean)", "wall s"]
    return table(header, rows, cls="numbers") + image(plot_timings(totals), "time per phase")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def configs(runs: Sequence[Run]) -> str:
    parts = []
    if len(runs) > 1:
        flat = [flatten(run.config) for run in runs]
        differing = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k)) for f in flat}) > 1)
        rows = [[f"<code>{esc(k)}</code>", *[esc(f.get(k, "—")) for f in flat]] for k in differing]
        parts.append("<h3>fields that differ</h3>" + (table(["field", *[r.label for r in runs]], rows)
                                                        if rows else "<p>none: the configs are identical.</p>"))
    for run in runs:
        text = run.config_text or "(no config.yaml)"
        opened = " open" if len(runs) == 1 else ""
        parts.append(f"<details{opened}><summary>config.yaml of {esc(run.label)}</summary><pre>{esc(text)}</pre></details>")
    return "".join(parts)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #d8dce3;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:14px 0 6px}nav a{margin-right:14px}.meta{color:#5b6475}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #d8dce3;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f2f4f7}table.numbers td:not(:first-child){text-align:right;
font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #e4e7ec}
.chip{display:inline-block;font-family:ui-monospace,Menlo,monospace;background:#f2f4f7;border:1px solid #d8dce3;
border-radius:4px;padding:1px 5px;margin:2px}.chip small{color:#5b6475;margin-left:5px}
.chip.ok{background:#e3f6e6;border-color:#7cc48a}
.turn{border-radius:3px;padding:0 3px}.turn.policy{background:#dbe8ff}.turn.env{background:#fff1cc;font-style:italic}pre{background:#f7f8fa;padding:8px;overflow:auto;font-size:12px}
code{font-family:ui-monospace,Menlo,monospace;font-size:12px}.paths{color:#5b6475;font-size:12px}
.col{display:inline-block;vertical-align:top;margin-right:24px}
"""

SECTIONS = [("overview", "Runs at a glance", overview), ("curves", "Learning curves", curves),
            ("heldout", "Held-out results at each evaluation", heldout),
            ("completions", "Sample completions", completions), ("timings", "Timings", timings),
            ("config", "Config", configs)]


def build_report(runs: Sequence[Run]) -> str:
    title = "rlvr report: " + ", ".join(run.label for run in runs)
    nav = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name, _ in SECTIONS)
    body = "".join(section(name, make(runs), anchor) for anchor, name, make in SECTIONS)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
            f'<p class="meta">generated {stamp} by <code>rlvr report</code></p><nav>{nav}</nav>{body}</body></html>\n')
