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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlvr.algorithms import (
    AGGREGATIONS,
    CREDIT,
    DELTAS,
    EXIT_RULES,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    ROLLOUT_CORRECTIONS,
    SCHEDULES,
)
from rlvr.algorithms.adaptive import AdaptiveParams
from rlvr.algorithms.aggregation import ConstantParams
from rlvr.algorithms.correction import CapParams, SeqMaskParams
from rlvr.algorithms.credit import OTBParams
from rlvr.algorithms.deltas import NormParams, WReinforceParams, pooled_modes
from rlvr.algorithms.losses import (
    ClipCovParams,
    DualClipParams,
    GMPOParams,
    KLCovParams,
    SAPOParams,
)
from rlvr.algorithms.selection import SelectionParams
from rlvr.analysis.param_baseline import PARAM_BASELINES
from rlvr.envs.config import EnvConfig
from rlvr.errors import ConfigError
from rlvr.evaluation import evaluation_metrics
from rlvr.options import check_fields, check_owned, fields_help, from_dict, opt, params_of, section
from rlvr.policies import PolicyConfig, ToyConfig, policy_config_class
from rlvr.rewards.config import RewardsConfig
from rlvr.tasks import SortConfig, TaskConfig, task_config_class

# the rollout backends registered in rlvr.distributed.backend (not imported here: the backends read
# the whole Config; tests/test_cli.py checks this list against the registry)
ROLLOUT_BACKENDS = ["local", "ray"]


@dataclass
class AlgoConfig(DualClipParams, ClipCovParams, SAPOParams, GMPOParams, KLCovParams, NormParams, WReinforceParams,
                 ConstantParams, CapParams, SeqMaskParams, SelectionParams, OTBParams,
                 AdaptiveParams):
    """The algorithm: one choice from each registry of ``rlvr.algorithms``, and the settings of the
    whole method. Settings that belong to one registry entry (a loss's clip range, the deltas' std
    eps, seq-sum-constant's divisor) are declared by that entry (``params=`` where it registers) and
    inherited here; setting one whose entry is not chosen is refused (``check_owned``)."""

    deltas: str = opt("centered", "how rewards become deltas", choices=DELTAS.names, registry=DELTAS)
    loss: str = opt("naive", "policy-gradient loss", choices=POLICY_LOSSES.names, registry=POLICY_LOSSES)
    aggregation: str = opt("token-mean", "how per-token losses become one scalar",
                           choices=AGGREGATIONS.names, registry=AGGREGATIONS)
    rollout_correction: str = opt("none", "off-policy correction for a sampler that is not the learner "
                                  "(distributed.off_policy, another inference engine): none (the ratio is "
                                  "against the sampler's log-probs), or pi_old = the learner's own log-probs "
                                  "(one more forward per batch) and each token's loss weighted by the "
                                  "sampler/learner gap w: truncated IS (tis-*), masked IS (mis-*), or "
                                  "DeepSeek-V3.2's masking of negative responses (seq-mask)",
                                  choices=ROLLOUT_CORRECTIONS.names, registry=ROLLOUT_CORRECTIONS)
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
    credit: str = opt("outcome", "credit assignment: broadcast the outcome delta, per-token process rewards "
                      "of the task, or the outcome reward minus a per-token baseline weighted by the score's "
                      "size (optimal-token-baseline; needs deltas raw)", choices=CREDIT.names, registry=CREDIT)
    dynamic_sampling: bool = opt(False, "drop groups whose rewards are all equal and draw more (DAPO)")
    max_refills: int = opt(3, "dynamic sampling: at most this many extra draws per outer step", ge=0)
    adaptive_sampling: str = opt("none", "adaptive sampling (Reinforce-Ada): sample the same prompts again, "
                                 "M responses a round, until the exit rule retires them (balanced: G/2 "
                                 "correct and G/2 incorrect collected; positive: one correct) or N rounds "
                                 "are used; train on G of each pool, balanced, with deltas from the whole "
                                 "pool's statistics (none: one draw of G)", choices=EXIT_RULES.names,
                                 registry=EXIT_RULES)
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
        if self.clip_cov_lower >= self.clip_cov_upper:
            raise ConfigError(f"algo.clip_cov_lower: {self.clip_cov_lower} must be below algo.clip_cov_upper "
                              f"({self.clip_cov_upper})")


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
    reset_every: int = opt(0, "clear the optimizer's state (Adam's moments and step count) at the start of "
                           "outer steps 1 + kN, k >= 1, N = this (0: never); the learning-rate schedule "
                           "goes on from the global step. With algo.ref_refresh_every N as well: ProRL's "
                           "hard reset (--algo prorl)", ge=0)


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
    skip_flat_groups: bool = opt(False, "leave the groups whose advantages are all 0 out of the training "
                                 "forward and backward: their gradient is 0, so the update is the same "
                                 "and the step faster (needs no KL in the loss, no entropy bonus, one "
                                 "learner); policy/entropy and the ratio metrics are then the trained "
                                 "groups'")


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
                           "trains on batch k (one step stale; the ratio uses the sampler's log-probs "
                           "unless algo.rollout_correction says otherwise)")
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
    env: EnvConfig = section(EnvConfig, "multi-turn episodes: the env, its limits and guard")


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
    for dotted in [*CHOICE_FIELDS, *(f"algo.{name}" for name in REGISTRY_FIELDS)]:
        section, key = dotted.split(".")
        node = data.get(section)
        if not isinstance(node, dict):
            continue
        mine = settings_of(dotted, node.get(key, default_choice(dotted)))
        if mine is None:  # an unknown name: validation names it
            continue
        if dotted in CHOICE_FIELDS:  # the section is the kind's class: only its fields stay
            data[section] = {k: v for k, v in node.items() if k in mine}
        else:  # algo: the settings other entries of this registry declare go
            registry = REGISTRY_FIELDS[key]
            for stale in {p for entry in registry.names() for p in params_of(registry, entry)} - mine:
                node.pop(stale, None)
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
        if isinstance(node, dict):
            old, new = settings_of(dotted, node.get(key, default_choice(dotted))), settings_of(dotted, value)
            for stale in (old - new) if old is not None and new is not None else ():
                node.pop(stale, None)
        set_dotted(data, dotted, value)
    for dotted, value in layer.items():
        if dotted not in choices:
            set_dotted(data, dotted, value)


def settings_of(dotted: str, choice: Any) -> set[str] | None:
    """The settings that come with value ``choice`` of the choice field ``dotted``: the fields of a
    task's or policy kind's class, a registry entry's ``params``; None for an unknown name."""
    try:
        if dotted in CHOICE_FIELDS:
            return {f.name for f in dataclasses.fields(CHOICE_FIELDS[dotted](str(choice)))}
        return set(params_of(REGISTRY_FIELDS[dotted.split(".", 1)[1]], str(choice)))
    except ConfigError:
        return None


def default_choice(dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(Config(), section), key)


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


# ----------------------------------------------------------------------------- validation


def validate(cfg: Config) -> None:
    """Check every field against its metadata, each section's own rules (``check()``), then the
    rules that tie sections together."""
    check_fields(cfg, prefix="")
    train, algo = cfg.train, cfg.algo
    for field, name, registry in (("deltas", algo.deltas, DELTAS), ("credit", algo.credit, CREDIT)):
        if train.group_size < 2 and registry.meta(name).get("needs_group"):
            raise ConfigError(
                f"train.group_size: {train.group_size} leaves nothing to compare with; "
                f"algo.{field} {name!r} needs group_size >= 2")
    wanted = CREDIT.meta(algo.credit).get("needs_deltas")
    if wanted is not None and algo.deltas != wanted:
        raise ConfigError(f"algo.deltas: algo.credit {algo.credit!r} subtracts its own baseline from the rewards; "
                          f"it needs algo.deltas {wanted!r}, not {algo.deltas!r}")
    if DELTAS.meta(algo.deltas).get("needs_sources"):
        check_per_source_deltas(cfg)
    if train.micro_batch_size and POLICY_LOSSES.meta(algo.loss).get("whole_batch"):
        raise ConfigError(f"train.micro_batch_size: algo.loss {algo.loss!r} selects tokens by statistics of the "
                          "whole batch; micro-batches would each select their own (not the batch's gradient)")
    if algo.dynamic_sampling and train.group_size < 2:
        raise ConfigError(f"train.group_size: {train.group_size} makes every group zero-variance; "
                          "algo.dynamic_sampling needs group_size >= 2")
    if train.skip_flat_groups:
        check_skip_flat_groups(cfg)
    if EXIT_RULES.get(algo.adaptive_sampling) is not None:
        check_adaptive_sampling(cfg)
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


def check_per_source_deltas(cfg: Config) -> None:
    """A deltas mode that normalises each reward source on its own (``needs_sources``) reads the
    sources' rewards, per response: it needs them, and shaping added to their sum would be lost."""
    algo, name = cfg.algo, repr(cfg.algo.deltas)
    if cfg.rewards.sources is None and not cfg.rewards.functions:
        raise ConfigError(f"rewards.sources: algo.deltas {name} normalises each reward source on its own and "
                          "there is one reward (the verifier); list the sources, e.g. --rewards.sources "
                          "'[{kind: verifier}, {kind: exact, weight: 0.5}]', or use algo.deltas grpo")
    if algo.kl_coef > 0 and algo.kl_in == "reward":
        raise ConfigError(f"algo.kl_in: 'reward' adds the KL to the weighted sum of the rewards, which algo.deltas "
                          f"{name} does not read (it normalises each source); use kl_in loss")
    if algo.overlong_buffer > 0:
        raise ConfigError(f"algo.overlong_buffer: the overlong penalty is added to the weighted sum of the rewards, "
                          f"which algo.deltas {name} does not read (it normalises each source); use 0")
    if CREDIT.meta(algo.credit).get("per_position"):
        raise ConfigError(f"algo.credit: {algo.credit!r} applies the deltas to each token position's rewards-to-go; "
                          f"algo.deltas {name} needs each source's reward per response (use outcome)")


def check_skip_flat_groups(cfg: Config) -> None:
    """train.skip_flat_groups is exact only where a group with zero advantages has zero gradient."""
    algo = cfg.algo
    if POLICY_LOSSES.meta(algo.loss).get("whole_batch"):
        raise ConfigError(f"train.skip_flat_groups: algo.loss {algo.loss!r} selects tokens by statistics of the "
                          "whole batch, flat groups included; leaving them out would change its gradient")
    if algo.kl_coef > 0 and algo.kl_in == "loss":
        raise ConfigError(f"train.skip_flat_groups: the KL term in the loss (algo.kl_coef {algo.kl_coef}) "
                          "gives every group a gradient; use algo.kl_in reward or kl_coef 0")
    if algo.entropy_coef > 0:
        raise ConfigError(f"train.skip_flat_groups: the entropy bonus (algo.entropy_coef {algo.entropy_coef}) "
                          "gives every group a gradient")


def check_adaptive_sampling(cfg: Config) -> None:
    """Adaptive sampling trains on groups cut from larger pools, with the pools' statistics."""
    algo, rule = cfg.algo, repr(cfg.algo.adaptive_sampling)
    if algo.dynamic_sampling:
        raise ConfigError(f"algo.dynamic_sampling: adaptive sampling ({rule}) resamples the prompts whose groups "
                          "are flat; DAPO's dynamic sampling replaces them by new prompts: choose one")
    if DELTAS.meta(algo.deltas).get("pooled") is None:
        raise ConfigError(f"algo.deltas: {algo.deltas!r} has no form with a pool's statistics; adaptive sampling "
                          f"({rule}) needs one of {', '.join(pooled_modes())}")
    if CREDIT.meta(algo.credit).get("per_position"):
        raise ConfigError(f"algo.credit: {algo.credit!r} computes its deltas per position within the group, not "
                          f"from the pool; adaptive sampling ({rule}) needs 'outcome'")
    if algo.kl_coef > 0 and algo.kl_in == "reward":
        raise ConfigError(f"algo.kl_in: the KL in the reward is not computed for the pooled responses that the "
                          f"baseline of adaptive sampling ({rule}) averages; use algo.kl_in loss")
    if cfg.distributed.off_policy:
        raise ConfigError(f"distributed.off_policy: a prefetched batch would share its sampling streams with "
                          f"adaptive sampling's ({rule}) later rounds; turn one of them off")


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


# ----------------------------------------------------------------------------- help


def field_help() -> list[tuple[str, str]]:
    """(flag, description) for every leaf field of the run's config, for ``rlvr train --help``."""
    return fields_help(Config)


# the fields whose value picks a config class or a registry entry's settings (``apply_layer``)
CHOICE_FIELDS = {"task.name": task_config_class, "policy.kind": policy_config_class}
REGISTRY_FIELDS = {f.name: f.metadata["registry"] for f in dataclasses.fields(AlgoConfig)
                   if f.metadata.get("registry") is not None}
