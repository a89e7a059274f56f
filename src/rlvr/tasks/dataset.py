"""``task.name: dataset``: train on your own file of prompts and reference answers.

    task:
      name: dataset
      path: data/train.jsonl      # .jsonl, .json (a list of objects), .csv, .parquet, or a folder
                                  # written by datasets' save_to_disk
      prompt_field: prompt        # the column shown to the model
      answer_field: answer        # the reference answer the verifier compares with
      verifier: last-number       # a spec of rlvr.rewards.verifiers (tag:answer, boxed, exact, ...)
      prompt_template: "{prompt} Put the final number in <answer></answer>."   # optional, any column

Prompts are the rows' prompt strings (through ``prompt_template`` when given: a Python format string
over the row's columns, the prompt column included); a repeated prompt keeps its first row (the others are counted
and reported). The held-out split is ``eval_path``'s rows when given (a training row with one of its
prompts is dropped), else the base Task's stable hash split of the prompt (``eval_fraction``).

Reward: ``verifier.score(text, answer)`` in {0, 1}, where ``text`` is the response up to its first
special token, provided the response ended (its last token is <eos>): a chat model's
``"47 + 38 = 85<|im_end|>"`` reads ``"47 + 38 = 85"``. A truncated response (no <eos> within
``max_new_tokens``) scores 0, as in every rlvr text task.

Every other column of a prompt's row is kept (``task.columns(prompt)``), for reward functions
(``rewards.functions``, rlvr.rewards.functions) that read them as TRL's do.

Bad rows (a missing or empty field, a line that is not UTF-8 or not JSON, a value of the wrong
type): ``bad_rows: skip`` reports each as ``file:line: reason`` on stderr (the first
``SHOWN_BAD_ROWS``, then their count) and trains on the rest; ``bad_rows: refuse`` stops with one
line naming the first. Line numbers are the file's (1-based); Parquet and datasets folders have
rows, named ``file:row N``.
"""

from __future__ import annotations

import csv
import io
import json
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.rewards.verifiers import Verifier, parse_verifier
from rlvr.tasks.base import TASKS, Task, TaskConfig
from rlvr.tasks.text import TextTask

FORMATS = ".jsonl, .ndjson, .json, .csv, .parquet, or a datasets save_to_disk folder"
SHOWN_BAD_ROWS = 20

# (where, row or None, reason): where is "file:line"; a bad row has row None and a reason
Record = tuple[str, dict[str, Any] | None, str]


def warn(message: str) -> None:
    print(f"rlvr: warning: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- reading files


def read_records(path: str, *, field: str) -> Iterator[Record]:
    """Each row of the file at ``path`` as (where, mapping, ""), or (where, None, reason) when it
    cannot be read; a file that cannot be read at all is a ConfigError naming ``field``."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{field}: {path!r} does not exist (paths are relative to {Path.cwd()})")
    if file.is_dir():
        return read_saved_dataset(file, field=field)
    suffix = file.suffix.lower()
    readers = {".jsonl": read_jsonl, ".ndjson": read_jsonl, ".json": read_json, ".csv": read_csv,
               ".parquet": read_parquet}
    if suffix not in readers:
        raise ConfigError(f"{field}: {path!r} has an unknown format {suffix or '(no suffix)'!r}; use {FORMATS}")
    return readers[suffix](file, field=field)


def read_jsonl(file: Path, *, field: str) -> Iterator[Record]:
    for number, raw in enumerate(file.read_bytes().split(b"\n"), start=1):
        where = f"{file}:{number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield where, None, f"not UTF-8 (byte {exc.start + 1} of the line)"
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, None, f"malformed JSON ({exc.msg} at column {exc.colno})"
            continue
        yield (where, row, "") if isinstance(row, dict) else (where, None, f"a JSON {type(row).__name__}, not an object")


def decode_file(file: Path, *, field: str) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{field}: {file}:{line}: not UTF-8; the whole file must be") from None


def read_json(file: Path, *, field: str) -> Iterator[Record]:
    """A JSON list of objects; each element's line is where it starts."""
    text = decode_file(file, field=field)
    decoder = json.JSONDecoder()

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def malformed(exc: json.JSONDecodeError) -> ConfigError:
        return ConfigError(f"{field}: {file}:{exc.lineno}: malformed JSON ({exc.msg}); the whole file must parse")

    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise ConfigError(f"{field}: {file}:{line_at(pos)}: a .json dataset must be a list of objects "
                          "(one object per line: use .jsonl)")
    pos += 1
    while True:
        pos += len(text[pos:]) - len(text[pos:].lstrip())
        if text.startswith("]", pos):
            return
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise malformed(exc) from None
        where = f"{file}:{line_at(pos)}"
        yield (where, row, "") if isinstance(row, dict) else (where, None, f"a JSON {type(row).__name__}, not an object")
        pos = end + len(text[end:]) - len(text[end:].lstrip())
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            raise ConfigError(f"{field}: {file}:{line_at(pos)}: malformed JSON (expected ',' or ']')")


def read_csv(file: Path, *, field: str) -> Iterator[Record]:
    """A header row, then one row per record; a row is bad if it holds bytes that are not UTF-8."""
    text = file.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ConfigError(f"{field}: {file}:1: malformed CSV header ({exc})") from None
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ConfigError(f"{field}: {file}:{start}: malformed CSV ({exc})") from None
        line = reader.line_num
        where = f"{file}:{start}"
        if not values:
            continue
        if any(_has_surrogates(v) for v in values):
            yield where, None, "not UTF-8"
        elif len(values) > len(header):
            yield where, None, f"{len(values)} values for {len(header)} columns"
        else:
            yield where, dict(zip(header, values + [None] * (len(header) - len(values)), strict=True)), ""


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def read_parquet(file: Path, *, field: str) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{field}: reading {str(file)!r} needs pyarrow: pip install 'rlvr[data]'") from None
    try:
        rows = pq.read_table(file).to_pylist()
    except Exception as exc:  # pyarrow's errors for a damaged file vary by version
        raise ConfigError(f"{field}: {str(file)!r} is not a readable Parquet file ({exc})") from None
    for number, row in enumerate(rows, start=1):
        yield f"{file}:row {number}", row, ""


def read_saved_dataset(folder: Path, *, field: str) -> Iterator[Record]:
    """A folder written by ``datasets.Dataset.save_to_disk`` (a DatasetDict: its ``train`` split)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{field}: {str(folder)!r} is a folder; reading a saved Hugging Face dataset "
                          "needs the datasets package (pip install datasets), else name a file") from None
    try:
        data = datasets.load_from_disk(str(folder))
    except Exception as exc:  # not a save_to_disk folder
        raise ConfigError(f"{field}: {str(folder)!r} is not a dataset folder written by save_to_disk ({exc})") from None
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise ConfigError(f"{field}: {str(folder)!r} holds the splits {', '.join(data)}, none named 'train'")
        data = data["train"]
    return ((f"{folder}:row {number}", row, "") for number, row in enumerate(data, start=1))


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Rows:
    """One file's usable rows: prompt -> answer and prompt -> the row's other columns, in file order."""

    answers: dict[str, str]
    columns: dict[str, dict[str, Any]]


def text_value(row: dict[str, Any], name: str) -> tuple[str | None, str]:
    """A row's prompt or answer as a string (numbers become their text), or (None, why not)."""
    if name not in row or row[name] is None:
        return None, f"missing field {name!r}"
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"field {name!r} is a {type(value).__name__}, not a string or number"
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None, f"empty field {name!r}"
    return text, ""


def templated(template: str, row: dict[str, Any], prompt_field: str, prompt: str) -> tuple[str | None, str]:
    """``task.prompt_template`` filled from the row (its prompt as text), or (None, the column it lacks)."""
    try:
        return template.format_map({**row, prompt_field: prompt}), ""
    except KeyError as exc:
        return None, f"no column {exc.args[0]!r} for task.prompt_template"


def load_rows(path: str, cfg: DatasetConfig, *, field: str) -> Rows:
    """The usable rows of one file; bad rows reported (skip) or refused, repeated prompts dropped."""
    answers: dict[str, str] = {}
    columns: dict[str, dict[str, Any]] = {}
    bad, repeated = 0, 0
    for where, row, reason in read_records(path, field=field):
        prompt = answer = None
        if row is not None:
            prompt, reason = text_value(row, cfg.prompt_field)
            if prompt is not None:
                answer, reason = text_value(row, cfg.answer_field)
            if prompt is not None and answer is not None and cfg.prompt_template is not None:
                prompt, reason = templated(cfg.prompt_template, row, cfg.prompt_field, prompt)
        if row is None or prompt is None or answer is None:
            if cfg.bad_rows == "refuse":
                raise ConfigError(f"{field}: {where}: {reason} (task.bad_rows refuse; skip to train on the other rows)")
            bad += 1
            if bad <= SHOWN_BAD_ROWS:
                warn(f"{where}: {reason}; row skipped")
            continue
        assert row is not None
        if prompt in answers:
            repeated += 1
            continue
        answers[prompt] = answer
        columns[prompt] = {k: v for k, v in row.items() if k != cfg.prompt_field}
    if bad:
        shown = "" if bad <= SHOWN_BAD_ROWS else f" (the first {SHOWN_BAD_ROWS} shown above)"
        warn(f"{field}: skipped {bad} bad row{'s' * (bad != 1)} of {path}{shown}")
    if repeated:
        warn(f"{field}: {path} repeats a prompt in {repeated} row{'s' * (repeated != 1)}; kept the first of each")
    if not answers:
        raise ConfigError(f"{field}: {path!r} holds no usable row (with fields {cfg.prompt_field!r} and "
                          f"{cfg.answer_field!r})")
    return Rows(answers, columns)


# ----------------------------------------------------------------------------- the task


def answer_text(response: Any) -> str | None:
    """The text a verifier reads: the response up to its first special token, if it ended with
    <eos>; None for a truncated response. A plain string is read as it is."""
    if isinstance(response, str):
        return response
    ids = response.token_ids
    if not ids or ids[-1] != response.eos_id:
        return None
    end = next(i for i, t in enumerate(ids) if t in response.special_ids or t == response.eos_id)
    return response.decode(ids[:end])


class DatasetTask(TextTask):
    """Prompts and answers from a file; reward by an answer-extraction verifier."""

    name = "dataset"
    reads_answers = True

    def __init__(self, cfg: DatasetConfig) -> None:
        super().__init__(max_new_tokens=cfg.max_new_tokens, **cfg.split_args())
        self.cfg = cfg
        self.verifier: Verifier = parse_verifier(cfg.verifier)
        self.system_prompt = cfg.system_prompt  # build_policy puts it in a chat model's first turn
        self._loaded: tuple[Rows, list[str], list[str]] | None = None  # rows, train prompts, held-out prompts
        self._heldout_set: set[str] | None = None

    # -- the files, read once on first use ----------------------------------------------------
    def _data(self) -> tuple[Rows, list[str], list[str]]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self) -> tuple[Rows, list[str], list[str]]:
        cfg = self.cfg
        assert cfg.path is not None  # DatasetConfig.check
        rows = load_rows(cfg.path, cfg, field="task.path")
        if cfg.eval_path is None:
            heldout = [p for p in rows.answers if Task.is_heldout(self, p)]  # type: ignore[arg-type]
            train = [p for p in rows.answers if not Task.is_heldout(self, p)]  # type: ignore[arg-type]
            if not heldout:
                raise ConfigError(f"task.eval_fraction: {self.eval_fraction} holds out none of the "
                                  f"{len(train)} prompts of {cfg.path}; raise it or give task.eval_path")
        else:
            held = load_rows(cfg.eval_path, cfg, field="task.eval_path")
            heldout = list(held.answers)
            train = [p for p in rows.answers if p not in held.answers]
            if len(train) < len(rows.answers):
                warn(f"task.path: dropped {len(rows.answers) - len(train)} training prompts that are also "
                     f"in task.eval_path {cfg.eval_path}")
            rows = Rows({**rows.answers, **held.answers}, {**rows.columns, **held.columns})
        if not train:
            raise ConfigError(f"task.eval_fraction: {self.eval_fraction} leaves no training prompts of {cfg.path}")
        return rows, train, heldout

    @property
    def train_prompts(self) -> list[str]:
        return self._data()[1]

    @property
    def heldout_prompts(self) -> list[str]:
        return self._data()[2]

    def columns(self, prompt: str) -> dict[str, Any]:
        """Every column of the prompt's row but the prompt itself (the answer included)."""
        return self._data()[0].columns[prompt]

    # -- the Task interface ---------------------------------------------------------------------
    def random_prompt(self, rng: np.random.Generator) -> str:  # type: ignore[override]
        prompts = self.train_prompts + self.heldout_prompts
        return prompts[int(rng.integers(len(prompts)))]

    def train_prompt(self, rng: np.random.Generator) -> str:  # type: ignore[override]
        prompts = self.train_prompts
        return prompts[int(rng.integers(len(prompts)))]

    def is_heldout(self, prompt: str) -> bool:  # type: ignore[override]
        """A held-out row's prompt; a prompt not in the files: the base hash split."""
        rows, _, heldout = self._data()
        if self._heldout_set is None:
            self._heldout_set = set(heldout)
        return prompt in self._heldout_set or (prompt not in rows.answers and super().is_heldout(prompt))

    def eval_prompts(self) -> list[str]:  # type: ignore[override]
        """``num_eval_prompts`` held-out prompts (a seeded choice, in file order), or all of them."""
        heldout = self.heldout_prompts
        if len(heldout) <= self.num_eval_prompts:
            return list(heldout)
        rng = np.random.default_rng([self.split_seed, 1])
        return [heldout[i] for i in sorted(rng.choice(len(heldout), self.num_eval_prompts, replace=False))]

    def solution(self, prompt: str) -> str:  # type: ignore[override]
        return self._data()[0].answers[prompt]

    def score_text(self, prompt: str, answer: str) -> float:
        return self.verifier.score(answer, self.solution(prompt))

    def reward(self, prompt: str, response: Any) -> float:  # type: ignore[override]
        text = answer_text(response)
        return 0.0 if text is None else self.score_text(prompt, text)

    def answer_found(self, prompt: str, response: Any) -> bool:  # type: ignore[override]
        """The response ended (not truncated) and the verifier reads a candidate answer from it."""
        text = answer_text(response)
        return text is not None and self.verifier.extract(text) is not None

    def alphabet_texts(self) -> list[str]:
        rows = self._data()[0]
        return [text for prompt, answer in rows.answers.items() for text in (prompt, answer)]


@dataclass
class DatasetConfig(TaskConfig):
    path: str | None = opt(None, f"the dataset file ({FORMATS}); relative to the current directory")
    eval_path: str | None = opt(None, "held-out file of the same layout (none: hold out task.eval_fraction "
                                "of the prompts by a stable hash)")
    prompt_field: str = opt("prompt", "the column holding the prompt")
    answer_field: str = opt("answer", "the column holding the reference answer")
    verifier: str = opt("last-number", "how the answer is read from a response and compared: a spec of "
                        "rlvr.rewards.verifiers (last-number, exact, gsm8k, boxed, tag:NAME, choice, "
                        "regex:PATTERN, math)")
    prompt_template: str | None = opt(None, "the prompt shown to the model, a Python format string over the "
                                      "row's columns, e.g. '{prompt} Answer in <answer></answer>.' (none: "
                                      "the prompt column as it is)")
    system_prompt: str | None = opt(None, "a system message: a chat model's first turn (hf policy)")
    bad_rows: str = opt("skip", "a row without the fields or not readable: skip it (each reported as "
                        "file:line on stderr) or refuse the file", choices=["skip", "refuse"])
    max_new_tokens: int = opt(64, "response length limit (policy.max_new_tokens overrides it)", ge=1)

    def check(self) -> None:
        if self.path is None:
            raise ConfigError("task.path: the dataset task needs a file of prompts and answers, e.g. "
                              "--task.path data.jsonl")
        for field, path in (("task.path", self.path), ("task.eval_path", self.eval_path)):
            if path is not None and not Path(path).exists():
                raise ConfigError(f"{field}: {path!r} does not exist (paths are relative to {Path.cwd()})")
        try:
            parse_verifier(self.verifier)
        except ConfigError as exc:
            raise ConfigError(f"task.verifier: {exc}") from None
        if self.prompt_template is not None:
            try:
                fields = [name for _, name, _, _ in string.Formatter().parse(self.prompt_template) if name is not None]
            except ValueError as exc:
                raise ConfigError(f"task.prompt_template: {self.prompt_template!r} is not a format string ({exc}); "
                                  "write a literal brace as {{ or }}") from None
            if any(not name.isidentifier() for name in fields):
                bad = next(name for name in fields if not name.isidentifier())
                raise ConfigError(f"task.prompt_template: {{{bad}}} is not a column name (write a literal brace "
                                  "as {{ or }})")


@TASKS.register("dataset", config=DatasetConfig)
def build_dataset(cfg: DatasetConfig) -> Task:
    return DatasetTask(cfg)
