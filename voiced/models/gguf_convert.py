"""Convert a llama-architecture GGUF into a CTranslate2 generator, without torch.

``gguf.GGUFReader`` reads the file, ``gguf.quants.dequantize`` turns every tensor
into float32 numpy, and the arrays fill a ``TransformerDecoderModelSpec`` the way
CTranslate2's own ``LlamaLoader`` (``ctranslate2/converters/transformers.py``) does:
pre-norm RMS norm, fused q/k/v, SiLU-gated (GLU) feed-forward, rotary embeddings
on the whole head with the halves layout, grouped-query attention, and the output
projection tied to the embeddings when the GGUF has no ``output.weight``.

llama.cpp's converter permutes the q and k rows of every head from Hugging Face's
``(2, half)`` rotary layout to the interleaved ``(half, 2)`` one; the permutation
is undone here so that ``rotary_interleave=False`` is right.

The output directory gets ``model.bin``, ``config.json`` and the vocabulary from
CTranslate2, plus ``tokenizer.json``, ``chat_template.jinja`` and
``voiced_generation.json`` (special tokens and their ids).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voiced.errors import ModelError
from voiced.models.gguf_tokenizer import (
    GgufTokenizerInfo,
    field_value,
    read_tokenizer_info,
    tokenizer_json_from_info,
)

Array = npt.NDArray[np.float32]

SUPPORTED_ARCHITECTURES = frozenset({"llama"})
END_OF_TURN_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
"""Chat end-of-turn tokens looked up in the vocabulary, first match wins."""
GENERATION_FILE = "voiced_generation.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILE = "tokenizer.json"

_FIX_GGUF = "check the file against the manifest's sha256, or prepare the model again"


@dataclass(frozen=True, slots=True)
class LlamaHParams:
    """Llama hyper-parameters, read from a GGUF's ``<arch>.*`` metadata."""

    num_layers: int
    num_heads: int
    num_heads_kv: int
    hidden_size: int
    ffn_size: int
    head_dim: int
    rotary_dim: int
    rope_theta: float
    rms_norm_eps: float
    vocab_size: int


def read_hparams(reader: Any) -> LlamaHParams:
    """Read the llama hyper-parameters; raise ModelError for an unsupported architecture."""
    arch = field_value(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"GGUF architecture {arch!r} is not supported (supported: llama)",
            fix="use a llama-architecture GGUF such as the manifest's SmolLM2",
        )
    scaling = field_value(reader, f"{arch}.rope.scaling.type", required=False)
    if scaling not in (None, "none"):
        raise ModelError(
            f"GGUF rope scaling {scaling!r} is not supported", fix="use a GGUF without rope scaling"
        )

    def get(key: str, default: Any = None) -> Any:
        value = field_value(reader, f"{arch}.{key}", required=default is None)
        return default if value is None else value

    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // heads))
    return LlamaHParams(
        num_layers=int(get("block_count")),
        num_heads=heads,
        num_heads_kv=int(get("attention.head_count_kv", heads)),
        hidden_size=hidden,
        ffn_size=int(get("feed_forward_length")),
        head_dim=head_dim,
        rotary_dim=int(get("rope.dimension_count", head_dim)),
        rope_theta=float(get("rope.freq_base", 10_000.0)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        vocab_size=int(get("vocab_size", len(field_value(reader, "tokenizer.ggml.tokens")))),
    )


class GgufTensors:
    """Dequantized float32 access to a GGUF's tensors by llama.cpp name."""

    def __init__(self, reader: Any) -> None:
        self._by_name = {tensor.name: tensor for tensor in reader.tensors}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str, shape: tuple[int, ...]) -> Array:
        """Return tensor ``name`` as float32 with numpy ``shape`` (rows = outputs)."""
        from gguf.quants import dequantize

        tensor = self._by_name.get(name)
        if tensor is None:
            raise ModelError(f"the GGUF has no tensor {name!r}", fix=_FIX_GGUF)
        try:
            array = dequantize(tensor.data, tensor.tensor_type)
        except (NotImplementedError, ValueError) as err:
            raise ModelError(
                f"cannot dequantize GGUF tensor {name!r} ({tensor.tensor_type.name}): {err}",
                fix="use a GGUF whose tensor types gguf-py can dequantize",
            ) from err
        if tuple(array.shape) != shape:
            raise ModelError(
                f"GGUF tensor {name!r} has shape {tuple(array.shape)}, expected {shape}",
                fix=_FIX_GGUF,
            )
        return np.ascontiguousarray(array, dtype=np.float32)


def unpermute_rotary_rows(weight: Array, num_heads: int) -> Array:
    """Undo llama.cpp's q/k permutation: rows (head, half, 2) back to (head, 2, half)."""
    rows, cols = weight.shape
    half = rows // num_heads // 2
    grouped = weight.reshape(num_heads, half, 2, cols)
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(rows, cols))


def _make_spec(hp: LlamaHParams) -> Any:
    from ctranslate2.specs import common_spec, transformer_spec

    return transformer_spec.TransformerDecoderModelSpec.from_config(
        hp.num_layers,
        hp.num_heads,
        activation=common_spec.Activation.SWISH,
        pre_norm=True,
        ffn_glu=True,
        rms_norm=True,
        rotary_dim=0 if hp.rotary_dim == hp.head_dim else hp.rotary_dim,
        rotary_interleave=False,
        rotary_base=hp.rope_theta,
        num_heads_kv=None if hp.num_heads_kv == hp.num_heads else hp.num_heads_kv,
        head_dim=None if hp.head_dim * hp.num_heads == hp.hidden_size else hp.head_dim,
        quant_type=common_spec.Quantization.CT2,
    )


def _fill_layer(layer: Any, tensors: GgufTensors, hp: LlamaHParams, index: int) -> None:
    p = f"blk.{index}."
    d, ffn_dim = hp.hidden_size, hp.ffn_size
    q_dim, kv_dim = hp.num_heads * hp.head_dim, hp.num_heads_kv * hp.head_dim
    q = unpermute_rotary_rows(tensors.get(p + "attn_q.weight", (q_dim, d)), hp.num_heads)
    k = unpermute_rotary_rows(tensors.get(p + "attn_k.weight", (kv_dim, d)), hp.num_heads_kv)
    v = tensors.get(p + "attn_v.weight", (kv_dim, d))
    attention = layer.self_attention
    attention.layer_norm.gamma = tensors.get(p + "attn_norm.weight", (d,))
    attention.linear[0].weight = np.concatenate([q, k, v])
    attention.linear[1].weight = tensors.get(p + "attn_output.weight", (d, q_dim))
    ffn = layer.ffn
    ffn.layer_norm.gamma = tensors.get(p + "ffn_norm.weight", (d,))
    ffn.linear_0.weight = tensors.get(p + "ffn_gate.weight", (ffn_dim, d))
    ffn.linear_0_noact.weight = tensors.get(p + "ffn_up.weight", (ffn_dim, d))
    ffn.linear_1.weight = tensors.get(p + "ffn_down.weight", (d, ffn_dim))


def build_spec(tensors: GgufTensors, hp: LlamaHParams, on_step: Callable[[str], None]) -> Any:
    """Return a filled ``TransformerDecoderModelSpec`` (float32, not yet optimized)."""
    spec = _make_spec(hp)
    decoder = spec.decoder
    decoder.scale_embeddings = False
    embeddings = tensors.get("token_embd.weight", (hp.vocab_size, hp.hidden_size))
    decoder.embeddings.weight = embeddings
    decoder.layer_norm.gamma = tensors.get("output_norm.weight", (hp.hidden_size,))
    if "output.weight" in tensors:
        output = tensors.get("output.weight", (hp.vocab_size, hp.hidden_size))
    else:
        output = embeddings  # tied: optimize() stores it once, as an alias
    decoder.projection.weight = output
    for index, layer in enumerate(decoder.layer):
        on_step(f"layer {index + 1}/{hp.num_layers}")
        _fill_layer(layer, tensors, hp, index)
    return spec


def _end_of_turn_token(info: GgufTokenizerInfo) -> str:
    vocabulary = set(info.tokens)
    for candidate in END_OF_TURN_CANDIDATES:
        if candidate in vocabulary:
            return candidate
    return info.eos_token


def _write_side_files(out_dir: Path, info: GgufTokenizerInfo) -> None:
    (out_dir / TOKENIZER_FILE).write_text(tokenizer_json_from_info(info), encoding="utf-8")
    if info.chat_template is not None:
        (out_dir / CHAT_TEMPLATE_FILE).write_text(info.chat_template, encoding="utf-8")
    end_of_turn = _end_of_turn_token(info)
    generation = {
        "bos_token": info.bos_token,
        "bos_token_id": info.bos_token_id,
        "eos_token": info.eos_token,
        "eos_token_id": info.eos_token_id,
        "end_of_turn_token": end_of_turn,
        "end_of_turn_token_id": info.tokens.index(end_of_turn),
    }
    text = json.dumps(generation, indent=2, ensure_ascii=False) + "\n"
    (out_dir / GENERATION_FILE).write_text(text, encoding="utf-8")


def _open_reader(gguf_path: Path) -> Any:
    import gguf

    if not gguf_path.is_file():
        raise ModelError(f"GGUF file not found: {gguf_path}", fix="prepare the model first")
    try:
        return gguf.GGUFReader(gguf_path)
    except (ValueError, OSError, IndexError, KeyError, UnicodeDecodeError) as err:
        raise ModelError(f"{gguf_path} is not a readable GGUF file: {err}", fix=_FIX_GGUF) from err


def _check_quantization(quantization: str) -> None:
    from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

    if quantization not in ACCEPTED_MODEL_TYPES:
        raise ModelError(
            f"unknown CTranslate2 quantization {quantization!r}",
            fix=f"use one of: {', '.join(ACCEPTED_MODEL_TYPES)}",
        )


def convert_gguf_to_ct2(
    gguf_path: Path,
    out_dir: Path,
    *,
    quantization: str = "int8",
    on_step: Callable[[str], None] | None = None,
) -> None:
    """Convert the llama GGUF at ``gguf_path`` into a CTranslate2 generator in ``out_dir``.

    ``quantization`` is a CTranslate2 weight type ("int8", "float32", ...);
    ``on_step`` receives a short progress message per stage. Raises ModelError
    for a file that is not a GGUF, an unsupported architecture or tokenizer, or
    a missing or mis-shaped tensor.
    """
    step = on_step or (lambda _message: None)
    _check_quantization(quantization)
    step(f"reading {gguf_path.name}")
    reader = _open_reader(gguf_path)
    hp = read_hparams(reader)
    info = read_tokenizer_info(reader)
    if hp.vocab_size != len(info.tokens):
        raise ModelError(
            f"GGUF vocab_size {hp.vocab_size} differs from its {len(info.tokens)} tokens",
            fix=_FIX_GGUF,
        )
    spec = build_spec(GgufTensors(reader), hp, step)
    spec.register_vocabulary(info.tokens)
    spec.config.bos_token = info.bos_token
    spec.config.eos_token = info.eos_token
    spec.config.unk_token = info.unk_token or ""
    spec.config.layer_norm_epsilon = hp.rms_norm_eps
    step(f"optimizing ({quantization})")
    spec.validate()
    spec.optimize(quantization=quantization)
    step(f"writing {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    _write_side_files(out_dir, info)
