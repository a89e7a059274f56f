"""Reward sources beside the verifier: a format check and learned reward models, combined by weights.

Configured by ``rewards.sources`` (None: the task's verifier alone, exactly as before)::

    rewards:
      sources:
        - {kind: verifier, weight: 1.0}              # task.reward, guarded by rlvr.rewards
        - {kind: exact, weight: 1.0}                 # binary: 1 where task.reward reaches task.max_reward
        - {kind: format, weight: 0.1}                # 1 if the response is well formed (Completion.body)
        - {kind: think-format, weight: 0.2}          # 1 for <think>...</think><answer>...</answer>
        - {kind: answer-format, weight: 0.5}         # 1 where the task's verifier reads an answer
        - {kind: model, path: runs/rm, weight: 0.5}  # a local HF sequence-classification model

The reward of one response is sum_k weight_k * r_k(prompt, response), over the sources and the
TRL-style functions of ``rewards.functions`` (rlvr.rewards.functions; a None from a function adds
nothing). Each component's mean over a
step's training responses is logged as ``reward/<name>`` (name: the source's ``name``, else its
kind). ``scored`` also gives each source's own value per response, which the rollouts carry
(``Rollouts.source_rewards``) for a deltas mode that normalises each source (``gdpo``). A model source scores ``prompt + answer`` text in batches under ``torch.no_grad``: any local
Hugging Face ``AutoModelForSequenceClassification`` folder with one label (``num_labels=1``), for
example the one ``rlvr rm train`` writes. Loading goes through ``rlvr.safe_load`` (no pickle, no
remote code unless ``trust_remote_code: true`` in the source).

Under the Ray backend each rollout actor builds the same sources (``build_rewards``), so a model
source is loaded once per actor and scores that actor's shards next to the policy copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.registry import Registry
from rlvr.rewards.functions import RewardFunction, build_functions
from rlvr.rewards.runner import RewardRunner
from rlvr.rewards.verifiers import format_reward as think_answer_format
from rlvr.safe_load import check_model_folder, pretrained_kwargs

EXACT = "exact"  # marker scorer: 1 where the guarded verifier's reward reaches task.max_reward
BatchScorer = Callable[[Sequence[Any], Sequence[Any]], list[float]]


def response_text(response: Any) -> str:
    """The answer a reward model reads: the strict body, else the response's non-special text."""
    if isinstance(response, str):
        return response
    if hasattr(response, "body"):
        body = response.body()
        return body if body is not None else response.text
    return " ".join(str(int(t)) for t in response)


def prompt_text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else " ".join(str(int(t)) for t in prompt)


def format_reward(prompt: Any, response: Any) -> float:
    """1 for a well-formed response (exactly one final <eos>, no other special token), else 0."""
    return float(not hasattr(response, "body") or response.body() is not None)


class SequenceScorer:
    """A sequence-classification model (one logit) and its tokenizer: texts -> scores, batched."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts),) the model's single logit for each text (with gradient: used by rm training)."""
        enc = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.logits[:, 0].float()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Any], responses: Sequence[Any]) -> list[float]:
        texts = [prompt_text(p) + response_text(r) for p, r in zip(prompts, responses, strict=True)]
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            scores += self.logits(texts[start:start + self.batch_size]).tolist()
        return scores


def load_scorer(path: str | Path, *, field: str, trust_remote_code: bool = False,
                batch_size: int = 256) -> SequenceScorer:
    from rlvr.policies.hf import import_transformers

    transformers = import_transformers()  # a one-line error without the hf extra
    AutoModelForSequenceClassification, AutoTokenizer = (transformers.AutoModelForSequenceClassification,
                                                         transformers.AutoTokenizer)

    folder = check_model_folder(path, field=field, trust_remote_code=trust_remote_code)
    kwargs = pretrained_kwargs(folder, trust_remote_code=trust_remote_code)
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), **kwargs)
    if model.config.num_labels != 1:
        raise ConfigError(f"{field}: {str(path)!r} has num_labels {model.config.num_labels}; a reward model has 1")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return SequenceScorer(model, tokenizer, batch_size=batch_size)


# ----------------------------------------------------------------------------- config


@dataclass
class SourceConfig:
    """One entry of ``rewards.sources``; a kind with settings of its own subclasses it
    (``ModelSourceConfig``) and registers with it in ``SOURCES``."""

    kind: str = opt("verifier", "verifier (the task's reward, guarded), exact (1 where the verifier "
                    "reaches the task's max_reward), format (1 if well formed), think-format (1 for "
                    "<think>...</think><answer>...</answer>), answer-format (1 where the task's verifier "
                    "reads an answer, right or wrong; dataset tasks), model (a reward model)",
                    choices=lambda: SOURCES.names())
    weight: float = opt(1.0, "the source's weight in the sum")
    name: str | None = opt(None, "logged as reward/<name> (default: the kind)")

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.kind

    @classmethod
    def kind_class(cls, kind: str) -> type[SourceConfig]:
        config = SOURCES.meta(kind).get("config", SourceConfig)
        assert isinstance(config, type) and issubclass(config, SourceConfig)
        return config

    @classmethod
    def kinds(cls) -> list[str]:
        return SOURCES.names()


@dataclass
class ModelSourceConfig(SourceConfig):
    path: str | None = opt(None, "a local HF sequence-classification model folder with one label")
    batch_size: int = opt(256, "texts scored per forward pass", ge=1)
    trust_remote_code: bool = opt(False, "allow the model folder's own Python code to run")


# kind -> scorer(config): None for the guarded verifier itself, EXACT for its binary form, else a
# function (prompts, responses) -> scores
SOURCES: Registry[Callable[[Any], Any]] = Registry("reward source")
SOURCES.register("verifier")(lambda spec, task: None)
SOURCES.register("exact")(lambda spec, task: EXACT)
SOURCES.register("format")(lambda spec, task: lambda ps, rs: [format_reward(p, r) for p, r in zip(ps, rs, strict=True)])
SOURCES.register("think-format")(lambda spec, task: lambda ps, rs: [think_answer_format(response_text(r)) for r in rs])


@SOURCES.register("answer-format")
def answer_format_source(spec: SourceConfig, task: Any) -> Callable[[Sequence[Any], Sequence[Any]], list[float]]:
    """1 where the task's verifier reads an answer from the response, right or wrong (``Task.answer_found``):
    with ``task.verifier tag:answer``, the reward for answering inside <answer></answer>."""
    if not getattr(task, "reads_answers", False):
        raise ConfigError(f"rewards.sources: kind 'answer-format' needs a task that reads its answer out of "
                          f"free text (task.name dataset), not {getattr(task, 'name', type(task).__name__)!r}")
    return lambda ps, rs: [float(bool(task.answer_found(p, r))) for p, r in zip(ps, rs, strict=True)]


@SOURCES.register("model", config=ModelSourceConfig)
def model_source(spec: ModelSourceConfig, task: Any) -> SequenceScorer:
    assert spec.path is not None  # check_sources refused a model source without one
    return load_scorer(spec.path, field=f"rewards.sources[{spec.label}].path",
                       trust_remote_code=spec.trust_remote_code, batch_size=spec.batch_size)


def check_sources(sources: list[SourceConfig]) -> None:
    """Config validation: names unique; a model source's folder exists and is safe to load."""
    names: set[str] = set()
    for i, spec in enumerate(sources):
        where = f"rewards.sources[{i}]"
        if spec.label in names:
            raise ConfigError(f"{where}.name: {spec.label!r} is used twice; give each source its own name")
        names.add(spec.label)
        if isinstance(spec, ModelSourceConfig):
            if spec.path is None:
                raise ConfigError(f"{where}.path: a model source needs the path of a model folder")
            check_model_folder(spec.path, field=f"{where}.path", trust_remote_code=spec.trust_remote_code)


# ----------------------------------------------------------------------------- combining


class CombinedRewards:
    """Weighted sum of reward sources, with the interface of ``RewardRunner`` (which guards the
    verifier; its fault metrics, stop reason and state are this object's)."""

    def __init__(self, guard: RewardRunner, components: list[tuple[str, float, Any]], *, max_reward: float,
                 functions: Sequence[tuple[float, RewardFunction]] = ()) -> None:
        self.guard = guard
        self.max_reward = max_reward
        self.components = components  # (name, weight, scorer)
        self.functions = list(functions)  # (weight, function): guarded batched user code, None allowed
        self.step_sums = {name: 0.0 for name, _, _ in components}
        self.step_sums.update({fn.name: 0.0 for _, fn in self.functions})
        self.step_counts = {fn.name: 0 for _, fn in self.functions}  # responses each function scored
        self.step_count = 0

    @property
    def source_weights(self) -> list[float]:
        """The weight of each source, in the order of ``scored``'s columns: the sources', then the functions'."""
        return [weight for _, weight, _ in self.components] + [weight for weight, _ in self.functions]

    def __call__(self, prompts: Sequence[Any], responses: Sequence[Any], *, counted: bool = True) -> list[float]:
        return self.scored(prompts, responses, counted=counted)[0]

    def scored(self, prompts: Sequence[Any], responses: Sequence[Any], *,
               counted: bool = True) -> tuple[list[float], list[list[float]]]:
        """The weighted sums, and each response's unweighted value per source (a row of S values,
        columns as ``source_weights``; a function's None is 0 there and adds nothing to the sum)."""
        total = [0.0] * len(responses)
        columns: list[list[float]] = []
        verified: list[float] | None = None  # the guarded verifier runs once, whatever reads it
        for name, weight, scorer in self.components:
            if scorer is None or scorer is EXACT:
                if verified is None:
                    verified = self.guard(prompts, responses, counted=counted)
                values = verified if scorer is None else [float(v >= self.max_reward) for v in verified]
            else:
                values = scorer(prompts, responses)
            total = [t + weight * v for t, v in zip(total, values, strict=True)]
            columns.append([float(v) for v in values])
            if counted:
                self.step_sums[name] += sum(values)
        for weight, fn in self.functions:
            scored = fn(prompts, responses, counted=counted)
            total = [t if v is None else t + weight * v for t, v in zip(total, scored, strict=True)]
            columns.append([0.0 if v is None else float(v) for v in scored])
            if counted:
                self.count_function(fn, scored, len(responses))
        if counted:
            self.step_count += len(responses)
        return total, [list(row) for row in zip(*columns, strict=True)]

    def count_function(self, fn: RewardFunction, scored: list[float | None], calls: int) -> None:
        """A function's values into its mean; its failures into the guard's (fault/*, the stop rule)."""
        values = [v for v in scored if v is not None]
        self.step_sums[fn.name] += sum(values)
        self.step_counts[fn.name] += len(values)
        failures = fn.pop_failures()
        self.guard.step_failures.update(failures)
        self.guard.step_calls += calls
        if failures:
            self.guard.last_error = fn.last_error

    def pop_metrics(self) -> dict[str, float]:
        """The guard's fault metrics and ``reward/<name>``: each source's (unweighted) mean this step."""
        metrics = self.guard.pop_metrics()
        for name in self.step_sums:
            count = self.step_counts.get(name, self.step_count)  # a function: the responses it scored
            if count:  # none under the Ray backend: its actors score the rollouts
                metrics[f"reward/{name}"] = self.step_sums[name] / count
            self.step_sums[name] = 0.0
        self.step_count = 0
        self.step_counts = dict.fromkeys(self.step_counts, 0)
        return metrics

    def stop_reason(self) -> str | None:
        return self.guard.stop_reason()

    def state_dict(self) -> dict[str, Any]:
        return self.guard.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.guard.load_state_dict(state)

    def close(self) -> None:
        self.guard.close()
        for _, fn in self.functions:
            fn.close()


def build_rewards(cfg: Any, task: Any, *, max_failure_rate: float | None = None,
                  workers: int | None = None) -> RewardRunner | CombinedRewards:
    """The run's reward: the guarded verifier alone (``rewards.sources`` None), or the weighted sum."""
    rw = cfg.rewards
    workers = rw.workers if workers is None else workers
    guard = RewardRunner(task.reward, fallback=rw.fallback, timeout=rw.timeout,
                         max_failure_rate=rw.max_failure_rate if max_failure_rate is None else max_failure_rate,
                         workers=workers)
    functions = build_functions(rw, task, workers=workers)
    if rw.sources is None and not functions:
        return guard
    sources = rw.sources if rw.sources is not None else [SourceConfig()]  # the verifier, weight 1
    components = [(spec.label, spec.weight, SOURCES.get(spec.kind)(spec, task)) for spec in sources]
    return CombinedRewards(guard, components, max_reward=task.max_reward, functions=functions)
