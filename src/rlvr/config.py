"""Configuration: nested dataclasses, the one source of truth for every hyper-parameter.

A run's config is built in layers, later ones winning:
    dataclass defaults  <  YAML file (``--config``)  <  a named recipe (``--algo NAME``)
                        <  command-line flags (``--section.key VALUE``)
then validated once, before any work starts. Every field carries its help text and its allowed
values in ``metadata`` (``rlvr.options.opt``); ``rlvr train --help`` prints them, and a bad value
fails with one line naming the field.

Each component owns its settings, next to its code (``rlvr.options``): the task's section is the
config class its task registered (``task.name: arith`` -> ``tasks/arithmetic.py: ArithConfig``),
the policy's the one its kind registered, each reward source's its kind's; in ``algo`` a loss, a
deltas mode or an aggregation declares the parameter block it reads. This module only composes
them (it imports the components; no component imports it) and holds the run-wide sections below.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlvr.algorithms import AGGREGATIONS, CREDIT, DELTAS, KL_ESTIMATORS, POLICY_LOSSES, SCHEDULES
from rlvr.algorithms.aggregation import ConstantParams
from rlvr.algorithms.deltas import NormParams
from rlvr.algorithms.losses import DualClipParams
from rlvr.analysis.param_baseline import PARAM_BASELINES
from rlvr.errors import ConfigError
from rlvr.evaluation import evaluation_metrics
from rlvr.options import opt, section
from rlvr.plugins import import_object, is_import_spec
from rlvr.policies import PolicyConfig, ToyConfig, policy_config_class
from rlvr.rewards.config import RewardsConfig
from rlvr.tasks import SortConfig, TaskConfig, task_config_class

# the rollout backends registered in rlvr.distributed.backend (not imported here: the backends read
# the whole Config; tests/test_cli.py checks this list against the registry)
ROLLOUT_BACKENDS = ["local", "ray"]


@dataclass
class AlgoConfig(DualClipParams, NormParams, ConstantParams):
    """The algorithm: one choice from each registry of ``rlvr.algorithms``, and the settings of the
    whole method. Settings that belong to one registry entry (a loss's clip range, the deltas' std
    eps, seq-sum-constant's divisor) are declared by that entry (``params=`` where it registers) and
    inherited here; setting one whose entry is not chosen is refused (``check_owned``)."""

    deltas: str = opt("centered", "how rewards become deltas", choices=DELTAS.names, registry=DELTAS)
    loss: str = opt("naive", "policy-gradient loss", choices=POLICY_LOSSES.names, registry=POLICY_LOSSES)
    aggregation: str = opt("token-mean", "how per-token losses become one scalar",
                           choices=AGGREGATIONS.names, registry=AGGREGATIONS)
    kl_coef: float = opt(0.0, "beta: weight of the KL penalty towards the reference policy", ge=0.0)
    kl_estimator: str = opt("k3", "per-token KL estimator", choices=KL_ESTIMATORS.names)
    ref_refresh_every: int = opt(10, "copy the policy into the frozen reference every R outer steps "
                                 "(0: keep the initial policy)", ge=0)
    entropy_coef: float = opt(0.0, "weight of the entropy bonus (subtracted from the loss) at the start", ge=0.0)
    entropy_schedule: str = opt("constant", "how the entropy weight changes over training", choices=SCHEDULES.names)
    entropy_until: float = opt(1.0, "fraction of training at which a decaying entropy weight reaches 0",
                               gt=0.0, le=1.0)
    kl_in: str = opt("loss", "where the KL penalty acts: a loss term, or subtracted from the reward "
                     "before the deltas", choices=["loss", "reward"])
    kl_grad_estimator: str | None = opt(None, "KL in the loss: take the gradient from this estimator, "
                                        "the value from kl_estimator (k3 + k2: unbiased KL gradient)",
                                        choices=KL_ESTIMATORS.names)
    kl_ratio_weight: bool = opt(False, "KL in the loss: weigh each token's KL by the importance ratio "
                                "pi_theta/pi_old (value 1 on-policy; with k3 its gradient is then "
                                "log(pi/pi_ref) grad log pi, the unbiased one; DeepSeek-V3.2, TRL's "
                                "use_bias_correction_kl default)")
    kl_target: float | None = opt(None, "adaptive KL coefficient: target sequence KL (none: fixed "
                                  "kl_coef)", gt=0.0)
    kl_horizon: int = opt(10000, "adaptive KL coefficient: horizon in samples", ge=1)
    credit: str = opt("outcome", "credit assignment: broadcast the outcome delta, or per-token "
                      "process rewards of the task", choices=CREDIT.names)
    dynamic_sampling: bool = opt(False, "drop groups whose rewards are all equal and draw more (DAPO)")
    max_refills: int = opt(3, "dynamic sampling: at most this many extra draws per outer step", ge=0)
    overlong_buffer: float = opt(0.0, "soft overlong penalty: buffer at the end of the length limit, "
                                 "as a fraction of it (0: off)", ge=0.0, le=1.0)
    overlong_penalty: float = opt(1.0, "soft overlong penalty: its largest magnitude", ge=0.0)
    mask_truncated: bool = opt(False, "leave truncated responses out of the loss (overlong filtering)")
    param_baseline: str = opt("none", "per-parameter baseline subtracted from the gradient (optimal-exact: "
                              "the notes' variance-optimal b*_k, exact by enumeration; optimal-exact-per-prompt: "
                              "b*_{s,k} within each prompt; both need the toy policy and deltas raw)",
                              choices=PARAM_BASELINES.names)

    def check(self) -> None:
        if self.kl_target is not None and self.kl_coef == 0:
            raise ConfigError("algo.kl_target: an adaptive coefficient starts from algo.kl_coef, which is 0")


@dataclass
class OptimConfig:
    name: str = opt("adam", "optimizer", choices=["adam", "adamw", "sgd"])
    lr: float = opt(1e-3, "learning rate", gt=0.0)
    beta1: float = opt(0.9, "Adam beta1", ge=0.0, le=1.0)
    beta2: float = opt(0.999, "Adam beta2", ge=0.0, le=1.0)
    weight_decay: float = opt(0.0, "weight decay", ge=0.0)
    grad_clip: float | None = opt(None, "clip the gradient norm to this value (none: no clipping)", gt=0.0)
    warmup_steps: int = opt(0, "learning rate: linear warmup over the first W optimizer steps (inner "
                            "steps; 0: none)", ge=0)
    lr_schedule: str = opt("constant", "learning rate after the warmup: constant, or a linear or cosine "
                           "decay to min_lr_ratio * lr by the end of training (rlvr/optim.py)",
                           choices=["constant", "linear", "cosine"])
    min_lr_ratio: float = opt(0.0, "learning rate: where a decaying lr_schedule ends, as a fraction of lr",
                              ge=0.0, le=1.0)


@dataclass
class TrainConfig:
    outer_steps: int = opt(100, "outer steps: each samples a fresh batch of rollouts", ge=1)
    inner_steps: int = opt(10, "gradient steps on each batch of rollouts", ge=1)
    prompts_per_step: int = opt(3, "B: prompts per outer step", ge=1)
    group_size: int = opt(10, "G: responses sampled per prompt", ge=1)
    temperature: float = opt(1.0, "sampling temperature (training log-probs use the same)", gt=0.0)
    threads: int = opt(1, "torch CPU threads", ge=1)
    bf16: bool = opt(False, "bfloat16 autocast in the training forward and the reference forward "
                     "(sampling stays float32); pays at real-model widths, not at W1's tiny one "
                     "(docs/performance.md)")
    diagnostics_every: int | None = opt(None, "log variance diagnostics (half-batch gradient agreement, noise "
                                        "scale, importance-ratio ESS) every D outer steps (0: never; default: "
                                        "every step for the toy policy, never for a language model, where "
                                        "they triple a step)", ge=0)
    nonfinite_patience: int = opt(3, "a non-finite loss or gradient skips its update; stop the run after "
                                  "this many in a row (the last good checkpoint stays intact)", ge=1)
    micro_batch_size: int | None = opt(None, "gradient accumulation: the inner step's backward pass in "
                                       "micro-batches of this many responses, rounded down to whole groups "
                                       "of G (at least one); same gradient, less memory (none or 0: the "
                                       "whole batch at once)", ge=0)


@dataclass
class EvalConfig:
    every: int = opt(10, "evaluate every E outer steps (and always at the end)", ge=1)
    pass_k: int = opt(5, "k of pass@k", ge=1)
    pass_samples: int = opt(10, "n samples per evaluation prompt for the unbiased pass@k estimate", ge=1)
    samples_every: int = opt(10, "write example prompts/responses to samples.jsonl every S outer steps", ge=1)
    samples_prompts: int = opt(3, "prompts per samples.jsonl record", ge=1)


@dataclass
class DistributedConfig:
    backend: str = opt("local", "where rollouts are generated: local (this process; each rank under "
                       "torchrun) or ray (Ray actors that own copies of the policy)", choices=ROLLOUT_BACKENDS)
    rollout_workers: int = opt(2, "ray: rollout actors", ge=1)
    rollout_shards: int | None = opt(None, "shards per rollout batch, each with its own sampling stream; "
                                     "a seed's metrics depend on this, never on the backend "
                                     "(none: one per rollout worker, learner rank or 1 locally)", ge=1)
    off_policy: bool = opt(False, "ray: generate batch k+1 with the previous weights while the learner "
                           "trains on batch k (one step stale; the ratio uses the sampler's log-probs)")
    ray_address: str | None = opt(None, "ray: address of a running Ray cluster (none: start a local one)")
    worker_gpus: float = opt(0.0, "ray: GPUs reserved per rollout actor", ge=0.0)
    max_restarts: int = opt(3, "ray: restarts of a dead rollout actor (its shard is retried)", ge=0)


@dataclass
class CheckpointConfig:
    every: int = opt(10, "write a checkpoint every C outer steps, and always at the end (0: only at the end)", ge=0)
    keep: int = opt(2, "keep the newest N checkpoints (plus the best, see best_metric)", ge=1)
    best_metric: str | None = opt("eval/reward_mean", "also keep the checkpoint with the best value of this "
                                  "held-out metric, among checkpoints at evaluation steps (none: don't)")
    best_mode: str = opt("max", "whether a larger or a smaller best_metric is better", choices=["max", "min"])


@dataclass
class SFTConfig:
    steps: int = opt(0, "supervised warm-start steps run before RL (0: no SFT stage)", ge=0)
    batch_size: int = opt(32, "demonstrations per SFT step", ge=1)
    lr: float = opt(1e-3, "SFT learning rate (AdamW)", gt=0.0)
    flawed_fraction: float = opt(0.0, "share of demonstrations replaced by the task's flawed answer "
                                 "(sort-text: one adjacent pair swapped)", ge=0.0, le=1.0)
    eval_every: int = opt(50, "evaluate every E SFT steps (and at the end)", ge=1)


@dataclass
class Config:
    seed: int = opt(0, "seed of everything random in the run", ge=0, le=2**32 - 1)
    run_dir: str | None = opt(None, "run directory (default: runs/<name>-<time>)")
    name: str = opt("run", "run name, used for the default run directory")
    task: TaskConfig = section(SortConfig, "the task: its own fields by task.name", kind="name",
                               resolve=task_config_class)
    policy: PolicyConfig = section(ToyConfig, "the policy: its own fields by policy.kind", kind="kind",
                                   resolve=policy_config_class)
    algo: AlgoConfig = section(AlgoConfig, "the algorithm")
    optim: OptimConfig = section(OptimConfig, "the optimizer")
    train: TrainConfig = section(TrainConfig, "the loop's budget and batch")
    eval: EvalConfig = section(EvalConfig, "held-out evaluation")
    distributed: DistributedConfig = section(DistributedConfig, "rollout backends")
    checkpoint: CheckpointConfig = section(CheckpointConfig, "checkpoints")
    rewards: RewardsConfig = section(RewardsConfig, "how rewards are computed")
    sft: SFTConfig = section(SFTConfig, "a supervised warm start")


# ----------------------------------------------------------------------------- building


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
                recipe: str | None = None, saved: bool = False) -> Config:
    """Defaults < YAML at ``path`` < named ``recipe`` (rlvr.recipes) < ``overrides``
    ({"algo.deltas": "rloo", ...}); validated. ``saved``: ``path`` is a run directory's config.yaml,
    possibly written before each component had its own fields: a setting there that belongs to
    another task, policy kind or algorithm entry than the chosen one is dropped, not refused."""
    from rlvr.recipes import recipe_values

    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(Path(path))
    for layer in (recipe_values(recipe) if recipe is not None else {}, overrides or {}):
        apply_layer(data, layer)
    if saved:
        data = prune_saved(data)
    cfg = from_dict(Config, data, prefix="")
    validate(cfg)
    check_owned(cfg.algo, data.get("algo") or {}, prefix="algo.")
    return cfg


def prune_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config.yaml (possibly written when every task field sat in one class) without the
    settings of the kinds and registry entries it did not choose; nothing else changes."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    defaults = Config()
    for dotted, resolve in CHOICE_FIELDS.items():
        section, key = dotted.split(".")
        node = data.get(section)
        if isinstance(node, dict):
            chosen = str(node.get(key, getattr(getattr(defaults, section), key)))
            try:
                keep = {f.name for f in dataclasses.fields(resolve(chosen))}
            except ConfigError:
                continue
            data[section] = {k: v for k, v in node.items() if k in keep}
    algo = data.get("algo")
    if isinstance(algo, dict):
        for name, registry in REGISTRY_FIELDS.items():
            chosen = str(algo.get(name, getattr(defaults.algo, name)))
            if chosen in registry:
                owned = {p for entry in registry.names() for p in params_of(registry, entry)}
                for stale in owned - set(params_of(registry, chosen)):
                    algo.pop(stale, None)
    return data


def apply_layer(data: dict[str, Any], layer: dict[str, Any]) -> None:
    """Set a layer's dotted values on ``data``. A value that changes a choice (``task.name``,
    ``policy.kind``, an ``algo`` registry field) is set first, and the settings lower layers gave
    for the replaced choice go with it: ``--config arith --task rg:chain_sum`` drops the YAML's
    ``task.digits``, ``--algo grpo --algo.loss naive`` the recipe's clip range."""
    choices = {k: v for k, v in layer.items() if k in CHOICE_FIELDS or k.split(".")[0] == "algo"
               and k.split(".", 1)[-1] in REGISTRY_FIELDS}
    for dotted, value in choices.items():
        section, key = dotted.split(".", 1)
        node = data.get(section)
        old = node.get(key, getattr(getattr(Config(), section), key)) if isinstance(node, dict) else None
        if isinstance(node, dict) and old != value:
            for stale in replaced_settings(dotted, old, value):
                node.pop(stale, None)
        set_dotted(data, dotted, value)
    for dotted, value in layer.items():
        if dotted not in choices:
            set_dotted(data, dotted, value)


def replaced_settings(dotted: str, old: Any, new: Any) -> set[str]:
    """The settings that belong to the choice ``old`` of field ``dotted`` and not to ``new``."""
    try:
        if dotted in CHOICE_FIELDS:
            resolve = CHOICE_FIELDS[dotted]
            return ({f.name for f in dataclasses.fields(resolve(str(old)))}
                    - {f.name for f in dataclasses.fields(resolve(str(new)))})
        registry = REGISTRY_FIELDS[dotted.split(".", 1)[1]]
        return set(params_of(registry, str(old))) - set(params_of(registry, str(new)))
    except ConfigError:  # an unknown name: validation names it
        return set()


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--config: no such file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"--config: {str(path)!r} is not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {str(path)!r} must hold a mapping of sections, not {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- parsing


def from_dict(cls: type, data: Any, *, prefix: str, kind_note: str = "") -> Any:
    """``data`` (a mapping) -> an instance of ``cls``, each value checked against its field's type.
    A nested section whose class depends on one of its fields (``section(kind=..., resolve=...)``)
    is parsed as the class that field's value picks."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key_message(prefix + str(key), names, prefix, kind_note))
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.metadata.get("kind"):
            sub = data.get(f.name, {})
            sub_cls, note = kind_class(f, hints[f.name], sub, path)
            kwargs[f.name] = from_dict(sub_cls, sub, prefix=path + ".", kind_note=note)
        elif f.name not in data:
            continue
        elif dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = from_dict(hints[f.name], data[f.name], prefix=path + ".")
        elif item_class(hints[f.name]) is not None:
            kwargs[f.name] = items_from_list(item_class(hints[f.name]), data[f.name], path)
        else:
            kwargs[f.name] = coerce(data[f.name], hints[f.name], path)
    return cls(**kwargs)


def kind_class(f: dataclasses.Field, base: type, data: Any, path: str) -> tuple[type, str]:
    """The class of a kinded section: its discriminator's value (checked like any field) -> class."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {data!r}")
    key = f.metadata["kind"]
    key_field = next(x for x in dataclasses.fields(base) if x.name == key)
    value = coerce(data.get(key, key_field.default), str, f"{path}.{key}")
    check_value(f"{path}.{key}", value, key_field.metadata)
    return f.metadata["resolve"](value), f"{path}.{key} {value!r}"


def item_class(hint: Any) -> type | None:
    """``list[SomeConfig] | None`` -> SomeConfig (a list of kinded sections); else None."""
    for arg in (typing.get_args(hint) or (hint,)):
        if typing.get_origin(arg) is list:
            (inner,) = typing.get_args(arg)
            if dataclasses.is_dataclass(inner):
                return inner
    return None


def items_from_list(base: type, raw: Any, path: str) -> list[Any] | None:
    """A list of kinded entries (e.g. ``rewards.sources``): each parsed as the class its ``kind``
    picks (``base.kind_class(kind)``)."""
    if isinstance(raw, str):
        raw = coerce(raw, list, path)
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
        return None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty list of entries, got {raw!r}")
    items = []
    for i, entry in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping like {{kind: ..., ...}}, got {entry!r}")
        kind = entry.get("kind")
        kind_field = next(x for x in dataclasses.fields(base) if x.name == "kind")
        check_value(f"{where}.kind", kind, kind_field.metadata)
        items.append(from_dict(base.kind_class(kind), entry, prefix=where + ".", kind_note=f"{where}.kind {kind!r}"))
    return items


def unknown_key_message(path: str, names: list[str], prefix: str, kind_note: str = "") -> str:
    where = f" for {kind_note}" if kind_note else ""
    msg = f"{path}: unknown key{where}; valid keys here: {', '.join(prefix + n for n in names)}"
    close = difflib.get_close_matches(path.rsplit(".", 1)[-1], names, n=1)
    if close:
        msg = f"{path}: unknown key{where} (did you mean {prefix + close[0]!r}?)"
    return msg


def check_owned(section: Any, data: dict[str, Any], *, prefix: str) -> None:
    """In a section whose fields pick registry entries (``opt(registry=...)``), each entry's own
    settings (its ``params`` block) may be set only when that entry is chosen: a setting given that
    belongs only to entries not chosen is one line naming the chosen entry's settings."""
    for f in dataclasses.fields(section):
        registry = f.metadata.get("registry")
        if registry is None:
            continue
        chosen = getattr(section, f.name)
        owners: dict[str, list[str]] = {}  # setting -> the entries that declare it
        for name in registry.names():
            for p in params_of(registry, name):
                owners.setdefault(p, []).append(name)
        mine = params_of(registry, chosen)
        for key in sorted(k for k in data if k in owners and k not in mine):
            theirs = ", ".join(repr(n) for n in owners[key])
            has = ", ".join(prefix + n for n in mine) or "no settings of its own"
            raise ConfigError(f"{prefix}{key}: a setting of {prefix}{f.name} {theirs}, not of the chosen "
                              f"{chosen!r} (which has {has})")


def params_of(registry: Any, name: str) -> list[str]:
    """The settings the registry entry ``name`` declared (``register(name, params=Block)``)."""
    params = registry.meta(name).get("params")
    return [p.name for p in dataclasses.fields(params)] if params is not None else []


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Check/convert one value to the field's type. Strings from the command line are parsed as
    YAML scalars first (so ``--algo.kl_coef 0.04`` and ``--task.prompts [[1,0,2]]`` work)."""
    if isinstance(value, str) and hint is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pass
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    return value


# ----------------------------------------------------------------------------- validation


def validate(cfg: Config) -> None:
    """Check every field against its metadata, each section's own rules (``check()``), then the
    rules that tie sections together."""
    check_fields(cfg, prefix="")
    train, algo = cfg.train, cfg.algo
    if train.group_size < 2 and DELTAS.meta(algo.deltas).get("needs_group"):
        raise ConfigError(
            f"train.group_size: {train.group_size} leaves nothing to compare with; "
            f"algo.deltas {algo.deltas!r} needs group_size >= 2")
    if algo.dynamic_sampling and train.group_size < 2:
        raise ConfigError(f"train.group_size: {train.group_size} makes every group zero-variance; "
                          "algo.dynamic_sampling needs group_size >= 2")
    shards = cfg.distributed.rollout_shards
    if shards is not None and shards > train.prompts_per_step:
        raise ConfigError(f"distributed.rollout_shards: {shards} must be <= train.prompts_per_step "
                          f"({train.prompts_per_step}); every shard holds at least one prompt")
    if cfg.distributed.off_policy and cfg.distributed.backend != "ray":
        raise ConfigError("distributed.off_policy: needs distributed.backend ray (rollouts sampled "
                          f"while the learner trains), not {cfg.distributed.backend!r}")
    if cfg.eval.pass_samples < cfg.eval.pass_k:
        raise ConfigError(f"eval.pass_samples: {cfg.eval.pass_samples} must be >= eval.pass_k ({cfg.eval.pass_k})")
    check_run_fields(cfg)


def check_run_fields(cfg: Config) -> None:
    """Run name and directory, and the held-out metric that picks the best checkpoint."""
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"name: {cfg.name!r} must be a non-empty name without '/'")
    if cfg.run_dir is not None and Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir: {cfg.run_dir!r} is a file, not a directory")
    metrics = evaluation_metrics(cfg.eval.pass_k)
    best = cfg.checkpoint.best_metric
    if best is not None and best not in metrics:
        close = difflib.get_close_matches(best, metrics, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"checkpoint.best_metric: {best!r} is not one of {', '.join(metrics)}, none{hint}")


def check_fields(obj: Any, *, prefix: str) -> None:
    """Every field of ``obj`` (and of its sections) against its metadata; then ``obj.check()``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, prefix=path + ".")
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, item in enumerate(value):
                check_fields(item, prefix=f"{path}[{i}].")
        elif value is not None:
            check_value(path, value, f.metadata)
    if callable(getattr(obj, "check", None)):
        obj.check()


def check_value(path: str, value: Any, meta: Any) -> None:
    """One value against its field's metadata: finite, one of its choices (or, where allowed, the
    user's ``module.path:attr``, imported here), within its bounds."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {value!r} must be a finite number")
    choices = meta.get("choices")
    valid = (choices() if callable(choices) else choices) if choices is not None else None
    if valid is not None and value in valid:
        pass  # a name the field accepts (rg:NAME too) is never read as module:attribute
    elif meta.get("imports") and is_import_spec(value):
        import_object(value, field=path)
        return
    elif valid is not None:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(valid)}{hint}")
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(f"{path}: {value!r} must be >= {meta['ge']}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(f"{path}: {value!r} must be > {meta['gt']}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(f"{path}: {value!r} must be <= {meta['le']}")


# ----------------------------------------------------------------------------- help


def field_help(cls: type = Config, prefix: str = "") -> list[tuple[str, str]]:
    """(flag, description) for every leaf field, for ``--help``. A kinded section lists its base
    fields once, then each kind's own fields marked with the kind (``[task.name arith]``)."""
    rows: list[tuple[str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.metadata.get("kind"):
            rows += field_help(hint, prefix + f.name + ".")
            key = f.metadata["kind"]
            base_names = {x.name for x in dataclasses.fields(hint)}
            kinds = next(x for x in dataclasses.fields(hint) if x.name == key).metadata["choices"]()
            owned: dict[tuple[str, str], list[str]] = {}  # (flag, text) -> the kinds that have it
            for kind in kinds:
                if ":" in kind:  # rg:NAME has the base fields only
                    continue
                for flag, text in field_help(f.metadata["resolve"](kind), prefix + f.name + "."):
                    if flag.rsplit(".", 1)[-1] not in base_names:
                        owned.setdefault((flag, text), []).append(kind)
            rows += [(flag, f"[{prefix}{f.name}.{key} {', '.join(kinds)}] {text}")
                     for (flag, text), kinds in owned.items()]
            continue
        if dataclasses.is_dataclass(hint):
            rows += field_help(hint, prefix + f.name + ".")
            continue
        meta = f.metadata
        owner = registry_owner(cls, f.name, prefix)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f"{owner}{meta.get('help', '')} [default: {default}]"
        choices = meta.get("choices")
        if choices is not None:
            text += f" {{{', '.join(choices() if callable(choices) else choices)}}}"
        item = item_class(hint)
        if item is not None:
            text += "; each entry: " + "; ".join(
                f"kind {kind}: {', '.join(x.name for x in dataclasses.fields(item.kind_class(kind)))}"
                for kind in item.kinds())
        rows.append((f"--{prefix}{f.name}", text))
    return rows


def registry_owner(cls: type, name: str, prefix: str) -> str:
    """'[algo.loss clipped, gspo] ' when ``name`` is a setting declared by registry entries."""
    for f in dataclasses.fields(cls):
        registry = f.metadata.get("registry")
        if registry is not None:
            owners = [entry for entry in registry.names() if name in params_of(registry, entry)]
            if owners:
                return f"[{prefix}{f.name} {', '.join(owners)}] "
    return ""


# the fields whose value picks a config class or a registry entry's settings (``apply_layer``)
CHOICE_FIELDS = {"task.name": task_config_class, "policy.kind": policy_config_class}
REGISTRY_FIELDS = {f.name: f.metadata["registry"] for f in dataclasses.fields(AlgoConfig)
                   if f.metadata.get("registry") is not None}
