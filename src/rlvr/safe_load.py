"""The one way rlvr reads weights and model folders: data formats only, never code.

- ``load_safetensors(path)``: tensors from a .safetensors file (a format that cannot hold code).
- ``load_torch_file(path)``: a legacy .pt/.bin file through ``torch.load(weights_only=True)``, which
  unpickles tensors and plain containers only and refuses anything that would run code.
- ``check_model_folder(path, trust_remote_code=...)``: before a Hugging Face ``from_pretrained``: the
  folder exists, has a config.json, and does not ask to run its own Python (``auto_map``) unless the
  user passed ``trust_remote_code``. ``pretrained_kwargs`` gives the matching ``from_pretrained``
  arguments (local files only, safetensors when the folder has them, trust_remote_code as given).
- ``check_tokenizer(...)``: a tokenizer whose ids do not fit the model's embedding is the wrong one.
Every problem is a one-line ``UserError`` naming the config field. Policies that load weights call
these instead of ``torch.load`` / ``from_pretrained`` directly; tests/test_security.py checks that no
module under src/ calls ``torch.load`` without ``weights_only=True`` or pickle at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from rlvr.errors import UserError


def load_safetensors(path: str | Path, *, field: str = "path") -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{field}: no such file {str(path)!r}")
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise UserError(f"{field}: {str(path)!r} is not a valid safetensors file ({exc})") from None


def load_torch_file(path: str | Path, *, field: str = "path") -> Any:
    """A legacy torch file, unpickled with ``weights_only=True`` (tensors and containers only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{field}: no such file {str(path)!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # includes the UnpicklingError for anything but plain data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{field}: refusing to load {str(path)!r}: not plain tensor data ({first})") from None


def check_model_folder(path: str | Path, *, field: str = "policy.path", trust_remote_code: bool = False) -> Path:
    """A local Hugging Face model folder that is safe to pass to ``from_pretrained``."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{field}: no such model folder {str(path)!r}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{field}: {str(path)!r} is not a model folder (no config.json)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{field}: {str(config_file)!r} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{field}: {str(config_file)!r} must hold a JSON object")
    if "auto_map" in config and not trust_remote_code:
        raise UserError(f"{field}: {str(path)!r} ships its own model code (auto_map in config.json); rlvr runs "
                        "it only if you pass --policy.trust_remote_code true")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise UserError(f"{field}: {str(path)!r} has no weights (*.safetensors or *.bin)")
    return folder


def pretrained_kwargs(path: str | Path, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` on a checked local folder."""
    folder = Path(path)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if any(folder.glob("*.safetensors")):
        kwargs["use_safetensors"] = True
    return kwargs


def check_tokenizer(num_tokens: int, embedding_rows: int, *, field: str = "policy.tokenizer") -> None:
    """Every token id the tokenizer can produce must index a row of the model's embedding."""
    if num_tokens > embedding_rows:
        raise UserError(f"{field}: the tokenizer has {num_tokens} tokens but the model's embedding has only "
                        f"{embedding_rows} rows; is it the tokenizer of another model?")
