"""Our transformer (policies/decoder.py) in the Hugging Face Llama format: ``config.json`` +
``model.safetensors`` + the character tokenizer's files, a folder ``AutoModelForCausalLM`` loads
and reproduces our logits from exactly (tests/test_transformer.py). The parameter names already are
Llama's, so the export is a renaming-free copy of the state dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from rlvr.policies.decoder import Transformer, TransformerConfig
from rlvr.runs.rundir import atomic_write_text
from rlvr.tokenizer import CharTokenizer


def hf_config(net: Transformer, tokenizer: CharTokenizer | None = None) -> dict[str, Any]:
    """The folder's config.json: Llama's fields, and ours under "rlvr" (what ``load_llama`` reads)."""
    c = net.config
    tok = tokenizer or CharTokenizer("")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_heads, "head_dim": c.hidden_size // c.num_heads,
        "max_position_embeddings": c.max_positions, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": c.tie_embeddings, "initializer_range": c.init_std,
        "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id,
        "torch_dtype": "float32", "use_cache": True, "rlvr": asdict(c),
    }


def save_llama(net: Transformer, path: Path, tokenizer: CharTokenizer) -> None:
    """config.json + model.safetensors (+ the tokenizer's files): a LlamaForCausalLM folder."""
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if net.config.tie_embeddings:
        state.pop("lm_head.weight")
    tmp = path / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(path / "model.safetensors")
    atomic_write_text(path / "config.json", json.dumps(hf_config(net, tokenizer), indent=1))
    atomic_write_text(path / "generation_config.json", json.dumps(
        {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}))
    tokenizer.save(path)


def load_llama(path: Path) -> Transformer:
    """The model a ``save_llama`` folder holds."""
    cfg = TransformerConfig(**json.loads((path / "config.json").read_text())["rlvr"])
    model = Transformer(cfg)
    state = load_file(str(path / "model.safetensors"))
    model.load_state_dict(state, strict=not cfg.tie_embeddings)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model
