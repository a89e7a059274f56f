"""The live view of ``rlvr train``.

On a terminal: a rich progress bar with the step, elapsed time and ETA, and the latest training
reward, held-out exact match, KL, clip fraction and rollout tokens/s. Not on a terminal (CI logs,
pipes): a plain line per evaluation and at the end, nothing else. With ``--show-samples``, every
time the trainer writes completions to samples.jsonl they are also printed as a table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

# (metrics key, label, format) in display order; held-out values carry over between evaluations
SHOWN = [("train/reward_mean", "reward", ".3f"), ("eval/reward_mean", "heldout", ".3f"),
         ("eval/exact_match", "exact", ".2f"), ("policy/kl", "kl", ".4f"),
         ("policy/clip_frac", "clip", ".3f"), ("perf/tokens_per_s", "tok/s", ".0f")]


def describe(row: dict[str, Any], last_eval: dict[str, Any]) -> str:
    merged = {**last_eval, **row}
    return "  ".join(f"{label} {merged[key]:{fmt}}" for key, label, fmt in SHOWN if key in merged)


def tokens(value: Any) -> str:
    """A prompt or response as shown: text as it is, token ids separated by spaces, an episode
    (rlvr.multiturn.Episode.to_json) turn by turn after its opening observation: ``> policy < env``."""
    if isinstance(value, dict) and "turns" in value:
        return " ".join(f"{'>' if t['role'] == 'policy' else '<'} {t['text']}" for t in value["turns"][1:])
    return value if isinstance(value, str) else " ".join(str(v) for v in value)


def is_solution(response: Any, solution: Any) -> bool:
    if isinstance(response, dict) and "turns" in response:  # an episode: the env's verdict
        return bool(response.get("success", response.get("fault") is None and response.get("return", 0) >= 1))
    return tokens(response) == tokens(solution)


def distinct_responses(record: dict[str, Any]) -> list[tuple[Any, int, float, float]]:
    """A samples.jsonl record's group as (response, count, reward, delta), best reward first.
    Equal responses have equal rewards and so equal deltas: they are shown once, with a count."""
    seen: dict[str, list[Any]] = {}
    for response, reward, delta in zip(record["responses"], record["rewards"], record["deltas"], strict=True):
        seen.setdefault(tokens(response), [response, 0, reward, delta])[1] += 1
    return sorted((tuple(v) for v in seen.values()), key=lambda v: (-v[2], -v[1]))  # type: ignore[misc]


def samples_table(step: int, records: Sequence[dict[str, Any]]) -> Table:
    """One row per distinct response, grouped by prompt; correct responses in green."""
    table = Table(title=f"completions at step {step}", title_justify="left")
    for name in ("prompt", "solution", "response", "count", "reward", "delta"):
        table.add_column(name, justify="left" if name in ("prompt", "solution", "response") else "right")
    for record in records:
        group = distinct_responses(record)
        for j, (response, count, reward, delta) in enumerate(group):
            correct = is_solution(response, record["solution"])
            table.add_row(Text(tokens(record["prompt"]) if j == 0 else ""),  # Text: no markup parsing
                          Text(tokens(record["solution"]) if j == 0 else ""),
                          Text(tokens(response), style="green" if correct else ""),
                          f"x{count}", f"{reward:.2f}", f"{delta:+.2f}", end_section=j == len(group) - 1)
    return table


class BarWithMetrics(RichProgress):
    """The bar on one line, the latest metrics on the next (so narrow terminals show both)."""

    metrics = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.metrics, overflow="fold")


class Progress:
    def __init__(self, total: int, *, enabled: bool = True, show_samples: bool = False) -> None:
        self.total = total
        self.enabled = enabled
        self.show_samples = show_samples
        self.interactive = enabled and sys.stdout.isatty()
        self.last_eval: dict[str, Any] = {}
        self._bar: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.interactive:
            self._bar = BarWithMetrics(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                                       TextColumn("eta"), TimeRemainingColumn())
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, row: dict[str, Any]) -> None:
        evaluated = any(k.startswith("eval/") for k in row)
        if evaluated:
            self.last_eval = {k: v for k, v in row.items() if k.startswith("eval/")}
        if self._bar is not None:
            self._bar.metrics = describe(row, self.last_eval)
            self._bar.update(self._task, completed=step)
        elif self.enabled and (evaluated or step == self.total):
            print(f"step {step}/{self.total}  {describe(row, self.last_eval)}", flush=True)

    def samples(self, step: int, records: Sequence[dict[str, Any]]) -> None:
        """Print the completions just written to samples.jsonl (with ``--show-samples``)."""
        if not (self.enabled and self.show_samples and records):
            return
        console = self._bar.console if self._bar is not None else Console(highlight=False)
        console.print(samples_table(step, records))
