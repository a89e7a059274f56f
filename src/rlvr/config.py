"""Configuration: nested dataclasses, the one source of truth for every hyper-parameter.

A run's config is built in layers, later ones winning:
    dataclass defaults  <  YAML file (``--config``)  <  a named recipe (``--algo NAME``)
                        <  command-line flags (``--section.key VALUE``)
then validated once, before any work starts. Every field carries its help text and its allowed
values in ``metadata``; ``rlvr train --help`` prints them, and a bad value fails with one line
naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import ConfigError
from rlvr.plugins import import_object, is_import_spec


def opt(default: Any, help: str, *, choices: Any = None, ge: float | None = None,
        gt: float | None = None, le: float | None = None, imports: bool = False) -> Any:
    """A config field with help text and bounds. ``choices`` is a list or a zero-argument callable
    (so registries are read after every entry has been registered). ``imports``: the value may also
    name user code as ``module.path:factory`` (see ``rlvr.plugins``), imported while validating."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "imports": imports}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


class _TaskNames(list):
    """Registered task names; any ``rg:NAME`` (a reasoning-gym dataset) is also accepted."""

    def __contains__(self, value: object) -> bool:
        from rlvr.tasks import is_reasoning_gym
        return list.__contains__(self, value) or (isinstance(value, str) and is_reasoning_gym(value))


def _tasks() -> list[str]:
    from rlvr.tasks import TASKS
    return _TaskNames(TASKS.names() + ["rg:NAME"])


def _rewards() -> list[str]:
    from rlvr.tasks.sorting import SORT_REWARDS
    return SORT_REWARDS.names()


def _policies() -> list[str]:
    from rlvr.policies import POLICIES
    return POLICIES.names()


def _backends() -> list[str]:
    from rlvr.distributed import BACKENDS
    return BACKENDS.names()


def _registry_names(attr: str) -> Any:
    def names() -> list[str]:
        from rlvr import algorithms
        return getattr(algorithms, attr).names()
    return names


def _param_baselines() -> list[str]:
    from rlvr.analysis.param_baseline import PARAM_BASELINES
    return PARAM_BASELINES.names()


@dataclass
class TaskConfig:
    name: str = opt("sort", "verifiable task, or module.path:factory for your own (factory(task_config) -> Task)",
                    choices=_tasks, imports=True)
    length: int = opt(3, "numbers per prompt (and per response)", ge=1)
    vocab_size: int = opt(5, "numbers are drawn from 0 .. vocab_size-1", ge=2)
    reward: str = opt("inclusion-adjacency", "sorting reward, or module.path:function for your own "
                      "(function(prompt, response) -> float)", choices=_rewards, imports=True)
    prompts: list | None = opt(None, "fixed prompt list, e.g. [[1,0,2],[3,2,4],[1,2,3]]; "
                               "training and evaluation then both use exactly this list")
    eval_fraction: float = opt(0.2, "share of the prompt space held out for evaluation", gt=0.0, le=0.9)
    num_eval_prompts: int = opt(32, "held-out prompts evaluated (fewer if the held-out split is smaller)", ge=1)
    split_seed: int = opt(0, "seed of the train/held-out split and of the held-out prompts", ge=0, le=2**32 - 1)
    digits: int = opt(2, "arith: digits per operand; countdown: largest number has this many digits", ge=1)
    operations: str = opt("+*", "arith: operations drawn from (any of + - *)")
    count: int = opt(4, "countdown: how many numbers are given", ge=2)
    copy_weight: float = opt(0.0, "sort-text: share of the reward for answer digits taken from the prompt's "
                             "digits (shaping towards copying; 0: W1's position reward)", ge=0.0, le=1.0)


@dataclass
class PolicyConfig:
    kind: str = opt("toy", "policy architecture", choices=_policies)
    embedding_dim: int = opt(10, "toy policy: embedding dimension", ge=1)
    init_scale: float = opt(1.0, "toy policy: multiplier on the initial decode matrices "
                            "(1: the notes' init; small: a near-uniform initial policy)", ge=0.0)
    hidden_size: int = opt(128, "transformer: hidden size D", ge=1)
    intermediate_size: int = opt(512, "transformer: SwiGLU inner size", ge=1)
    num_layers: int = opt(4, "transformer: decoder blocks", ge=1)
    num_heads: int = opt(4, "transformer: attention heads (must divide hidden_size)", ge=1)
    tie_embeddings: bool = opt(True, "transformer: share the input embedding and the output head")
    init_std: float = opt(0.02, "transformer: std of the initial weights", gt=0.0)
    shared_prefix: bool = opt(True, "transformer: training log-probs prefill each prompt once per group")
    max_new_tokens: int = opt(0, "LM policies: response length limit (0: the task's)", ge=0)
    top_p: float = opt(1.0, "LM policies: nucleus sampling mass (1: plain sampling)", gt=0.0, le=1.0)
    model: str | None = opt(None, "hf: a local Hugging Face model folder (transformer: start from "
                            "this exported folder instead of a random init)")
    trust_remote_code: bool = opt(False, "hf: allow the model folder's own Python code to run")
    chat_template: bool = opt(True, "hf: wrap prompts in the tokenizer's chat template when it has one")
    prompt_template: str = opt("{prompt}", "LM policies: how a task prompt is shown to the model, e.g. "
                               "'Compute {prompt} Reply with the number only.'")


@dataclass
class AlgoConfig:
    deltas: str = opt("centered", "how rewards become deltas", choices=_registry_names("DELTAS"))
    loss: str = opt("naive", "policy-gradient loss", choices=_registry_names("POLICY_LOSSES"))
    clip_eps_low: float = opt(0.2, "clipped loss: lower bound 1 - eps_low on the ratio", ge=0.0, le=1.0)
    clip_eps_high: float | None = opt(None, "clipped loss: upper bound 1 + eps_high (default: eps_low)", ge=0.0)
    aggregation: str = opt("token-mean", "how per-token losses become one scalar",
                           choices=_registry_names("AGGREGATIONS"))
    aggregation_constant: float | None = opt(None, "seq-sum-constant divisor (default: response length)", gt=0.0)
    kl_coef: float = opt(0.0, "beta: weight of the KL penalty towards the reference policy", ge=0.0)
    kl_estimator: str = opt("k3", "per-token KL estimator", choices=_registry_names("KL_ESTIMATORS"))
    ref_refresh_every: int = opt(10, "copy the policy into the frozen reference every R outer steps "
                                 "(0: keep the initial policy)", ge=0)
    entropy_coef: float = opt(0.0, "weight of the entropy bonus (subtracted from the loss) at the start", ge=0.0)
    entropy_schedule: str = opt("constant", "how the entropy weight changes over training",
                                choices=_registry_names("SCHEDULES"))
    entropy_until: float = opt(1.0, "fraction of training at which a decaying entropy weight reaches 0",
                               gt=0.0, le=1.0)
    norm_eps: float = opt(1e-5, "normalized deltas: eps in (R - mean) / (std + eps)", gt=0.0)
    unbiased_std: bool = opt(True, "normalized deltas: std with N-1 (true) or N (false)")
    dual_clip_c: float = opt(3.0, "dual-clip loss: bound c |A| on the loss of negative-advantage tokens", gt=1.0)
    kl_in: str = opt("loss", "where the KL penalty acts: a loss term, or subtracted from the reward "
                     "before the deltas", choices=["loss", "reward"])
    kl_grad_estimator: str | None = opt(None, "KL in the loss: take the gradient from this estimator, "
                                        "the value from kl_estimator (k3 + k2: unbiased KL gradient)",
                                        choices=_registry_names("KL_ESTIMATORS"))
    kl_ratio_weight: bool = opt(False, "KL in the loss: weigh each token's KL by the importance ratio "
                                "pi_theta/pi_old (value 1 on-policy; with k3 its gradient is then "
                                "log(pi/pi_ref) grad log pi, the unbiased one; DeepSeek-V3.2, TRL's "
                                "use_bias_correction_kl default)")
    kl_target: float | None = opt(None, "adaptive KL coefficient: target sequence KL (none: fixed "
                                  "kl_coef)", gt=0.0)
    kl_horizon: int = opt(10000, "adaptive KL coefficient: horizon in samples", ge=1)
    credit: str = opt("outcome", "credit assignment: broadcast the outcome delta, or per-token "
                      "process rewards of the task", choices=_registry_names("CREDIT"))
    dynamic_sampling: bool = opt(False, "drop groups whose rewards are all equal and draw more (DAPO)")
    max_refills: int = opt(3, "dynamic sampling: at most this many extra draws per outer step", ge=0)
    overlong_buffer: float = opt(0.0, "soft overlong penalty: buffer at the end of the length limit, "
                                 "as a fraction of it (0: off)", ge=0.0, le=1.0)
    overlong_penalty: float = opt(1.0, "soft overlong penalty: its largest magnitude", ge=0.0)
    mask_truncated: bool = opt(False, "leave truncated responses out of the loss (overlong filtering)")
    param_baseline: str = opt("none", "per-parameter baseline subtracted from the gradient (optimal-exact: "
                              "the notes' variance-optimal b*_k, exact by enumeration; optimal-exact-per-prompt: "
                              "b*_{s,k} within each prompt; both need the toy policy and deltas raw)",
                              choices=_param_baselines)


@dataclass
class OptimConfig:
    name: str = opt("adam", "optimizer", choices=["adam", "adamw", "sgd"])
    lr: float = opt(1e-3, "learning rate", gt=0.0)
    beta1: float = opt(0.9, "Adam beta1", ge=0.0, le=1.0)
    beta2: float = opt(0.999, "Adam beta2", ge=0.0, le=1.0)
    weight_decay: float = opt(0.0, "weight decay", ge=0.0)
    grad_clip: float | None = opt(None, "clip the gradient norm to this value (none: no clipping)", gt=0.0)


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
                       "torchrun) or ray (Ray actors that own copies of the policy)", choices=_backends)
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
class RewardsConfig:
    timeout: float | None = opt(10.0, "seconds one reward call may run before it gets the fallback (none: no limit)",
                                gt=0.0)
    fallback: float = opt(0.0, "reward of a response whose reward function raised, hung, or returned a "
                          "non-number or a non-finite number")
    max_failure_rate: float = opt(0.1, "stop the run (with a checkpoint) once more than this share of all "
                                  "reward calls so far has failed", ge=0.0, le=1.0)
    workers: int = opt(0, "reward worker processes (0: call rewards in the training process; >0: in "
                       "parallel, and a hung call's worker is killed)", ge=0)
    sources: list | None = opt(None, "weighted reward sources, e.g. [{kind: verifier, weight: 1}, {kind: model, "
                               "path: DIR, weight: 0.5}]; kinds: verifier, exact, format, model (none: the verifier "
                               "alone); see rlvr.rewards.sources")


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
    task: TaskConfig = field(default_factory=TaskConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)


# ----------------------------------------------------------------------------- building


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
                recipe: str | None = None) -> Config:
    """Defaults < YAML at ``path`` < named ``recipe`` (rlvr.recipes) < ``overrides``
    ({"algo.deltas": "rloo", ...}); validated."""
    from rlvr.recipes import recipe_values

    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(Path(path))
    layers = [recipe_values(recipe) if recipe is not None else {}, overrides or {}]
    for layer in layers:
        for dotted, value in layer.items():
            set_dotted(data, dotted, value)
    cfg = from_dict(Config, data, prefix="")
    validate(cfg)
    return cfg


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


def from_dict(cls: type, data: dict[str, Any], *, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key_message(prefix + str(key), names, prefix))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        path = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = from_dict(hints[f.name], data[f.name], prefix=path + ".")
        else:
            kwargs[f.name] = coerce(data[f.name], hints[f.name], path)
    return cls(**kwargs)


def unknown_key_message(path: str, names: list[str], prefix: str) -> str:
    msg = f"{path}: unknown key; valid keys here: {', '.join(prefix + n for n in names)}"
    close = difflib.get_close_matches(path.rsplit(".", 1)[-1], names, n=1)
    if close:
        msg = f"{path}: unknown key (did you mean {prefix + close[0]!r}?)"
    return msg


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
    """Check every field against its metadata, then the rules that tie fields together."""
    check_fields(cfg, prefix="")
    task, train, algo = cfg.task, cfg.train, cfg.algo
    if task.prompts is not None:
        check_prompt_list(task)
    from rlvr.algorithms import DELTAS
    if train.group_size < 2 and DELTAS.meta(algo.deltas).get("needs_group"):
        raise ConfigError(
            f"train.group_size: {train.group_size} leaves nothing to compare with; "
            f"algo.deltas {algo.deltas!r} needs group_size >= 2")
    if algo.dynamic_sampling and train.group_size < 2:
        raise ConfigError(f"train.group_size: {train.group_size} makes every group zero-variance; "
                          "algo.dynamic_sampling needs group_size >= 2")
    if algo.kl_target is not None and algo.kl_coef == 0:
        raise ConfigError("algo.kl_target: an adaptive coefficient starts from algo.kl_coef, which is 0")
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
    from rlvr.rewards.sources import check_sources
    check_sources(cfg)


def check_run_fields(cfg: Config) -> None:
    """Run name and directory, and the held-out metric that picks the best checkpoint."""
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"name: {cfg.name!r} must be a non-empty name without '/'")
    if cfg.run_dir is not None and Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir: {cfg.run_dir!r} is a file, not a directory")
    from rlvr.evaluation import evaluation_metrics
    metrics = evaluation_metrics(cfg.eval.pass_k)
    best = cfg.checkpoint.best_metric
    if best is not None and best not in metrics:
        close = difflib.get_close_matches(best, metrics, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"checkpoint.best_metric: {best!r} is not one of {', '.join(metrics)}, none{hint}")


def check_fields(obj: Any, *, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, prefix=path + ".")
            continue
        meta = f.metadata
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: {value!r} must be a finite number")
        choices = meta.get("choices")
        valid = (choices() if callable(choices) else choices) if choices is not None else None
        if valid is not None and value in valid:
            pass  # a name the field accepts (rg:NAME too) is never read as module:attribute
        elif meta.get("imports") and is_import_spec(value):
            import_object(value, field=path)
            continue
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


def check_prompt_list(task: TaskConfig) -> None:
    prompts = task.prompts or []
    if not prompts:
        raise ConfigError("task.prompts: the list is empty; give at least one prompt or null")
    for prompt in prompts:
        ok = (isinstance(prompt, list) and len(prompt) == task.length
              and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < task.vocab_size for x in prompt))
        if not ok:
            raise ConfigError(
                f"task.prompts: {prompt!r} must be a list of {task.length} integers in 0..{task.vocab_size - 1}")


# ----------------------------------------------------------------------------- help


def field_help(cls: type = Config, prefix: str = "") -> list[tuple[str, str]]:
    """(flag, description) for every leaf field, for ``--help``."""
    rows: list[tuple[str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_help(hints[f.name], prefix + f.name + ".")
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f"{meta.get('help', '')} [default: {default}]"
        choices = meta.get("choices")
        if choices is not None:
            text += f" {{{', '.join(choices() if callable(choices) else choices)}}}"
        rows.append((f"--{prefix}{f.name}", text))
    return rows
