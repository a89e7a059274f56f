"""A run's final policy in the Hugging Face format (RUN_DIR/final/: model + tokenizer).

Language-model policies write a folder that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load; the
toy policy (not a language model) writes its state dict as ``policy.safetensors`` there instead.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from rlvr.policies.base import Policy


def save_final(policy: Policy, path: Path) -> None:
    save_hf = getattr(policy, "save_hf", None)
    if save_hf is not None:
        save_hf(path)
        return
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    tmp = path / ".policy.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(path / "policy.safetensors")
