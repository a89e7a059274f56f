"""Tokenizers of language-model policies: what turns a text prompt into ids and ids back into text.

Every LM policy owns a ``Codec``: the character tokenizer of our synthetic tasks, or a Hugging
Face tokenizer (``rlvr.policies.hf``). The character tokenizer is pure Python (no dependency) and
saves itself in the Hugging Face format (``tokenizer.json`` + ``tokenizer_config.json``), so
``AutoTokenizer.from_pretrained`` loads it as a ``PreTrainedTokenizerFast`` with the same ids.

Ids of the character tokenizer (workloads.md, W1): <pad>=0 <bos>=1 <eos>=2 <unk>=3, then the task's
alphabet: digits and letters in order, then every other character by code point (for W1's digits
and " >": digits 0-9 = 4..13, space 14, '>' 15).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from rlvr.runs.rundir import atomic_write_text

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


class Codec(Protocol):
    """What a language-model policy needs from its tokenizer."""

    pad_id: int
    eos_id: int
    special_ids: frozenset[int]
    vocab_size: int

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt as the model sees it: <bos> (or the chat template) + the text."""
        ...

    def encode_answer(self, text: str) -> list[int]:
        """A response body without any special token (for demonstrations; <eos> added by the caller)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; special tokens are dropped."""
        ...

    def save(self, path: Path) -> None:
        """Write the tokenizer files into a Hugging Face model folder."""
        ...


class CharTokenizer:
    """One id per character of the alphabet; unknown characters map to <unk>."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID
    special_ids = frozenset(range(len(SPECIAL_TOKENS)))

    def __init__(self, alphabet: Iterable[str]) -> None:
        # digits and letters first, then the rest by code point (W1: digits 4..13, ' ' 14, '>' 15)
        chars = sorted(set(alphabet) - set(SPECIAL_TOKENS), key=lambda ch: (not ch.isalnum(), ch))
        for ch in chars:
            if len(ch) != 1:
                raise ValueError(f"alphabet entries must be single characters, got {ch!r}")
        self.alphabet = "".join(chars)
        self.tokens = list(SPECIAL_TOKENS) + chars
        self.ids = {tok: i for i, tok in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The alphabet of a task: every character of its prompts and answers."""
        return cls("".join(texts))

    def encode_answer(self, text: str) -> list[int]:
        return [self.ids.get(ch, UNK_ID) for ch in text]

    def encode_prompt(self, text: str) -> list[int]:
        return [BOS_ID] + self.encode_answer(text)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[i] for i in ids if i not in self.special_ids and 0 <= i < self.vocab_size)

    # ------------------------------------------------------------------ Hugging Face format
    def save(self, path: Path) -> None:
        """tokenizer.json (a WordLevel model over single characters) + tokenizer_config.json."""
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / "tokenizer.json", json.dumps(self.hf_tokenizer_json(), indent=1))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1_000_000,
            "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
            "padding_side": "left", "add_bos_token": True, "clean_up_tokenization_spaces": False,
            "rlvr_alphabet": self.alphabet,
        }
        atomic_write_text(path / "tokenizer_config.json", json.dumps(config, indent=1))
        special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
        atomic_write_text(path / "special_tokens_map.json", json.dumps(special, indent=1))

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls(json.loads((path / "tokenizer_config.json").read_text())["rlvr_alphabet"])

    def hf_tokenizer_json(self) -> dict:
        added = [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, tok in enumerate(SPECIAL_TOKENS)]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            # every character is its own piece (spaces included)
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?m)."}, "behavior": "Isolated",
                              "invert": False},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<bos>": {"id": "<bos>", "ids": [BOS_ID], "tokens": ["<bos>"]}},
            },
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": self.ids, "unk_token": "<unk>"},
        }


def is_char_tokenizer(path: Path) -> bool:
    config = path / "tokenizer_config.json"
    return config.is_file() and "rlvr_alphabet" in json.loads(config.read_text())
