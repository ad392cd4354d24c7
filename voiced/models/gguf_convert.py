"""Convert a llama or qwen2 GGUF into a CTranslate2 generator, without torch.

``gguf.GGUFReader`` reads the file, ``gguf.quants.dequantize`` turns each tensor
(F32, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0, ...) into float32 numpy, and the arrays fill a
``TransformerDecoderModelSpec`` the way CTranslate2's own ``LlamaLoader`` and
``Qwen2Loader`` (``ctranslate2/converters/transformers.py``) do: pre-norm RMS
norm, fused q/k/v (with their biases for qwen2), SiLU-gated (GLU) feed-forward,
rotary embeddings on the whole head with the halves layout, grouped-query
attention, and the output projection tied to the embeddings when the GGUF has no
``output.weight``.

llama.cpp's converter permutes the q and k rows of every llama head from Hugging
Face's ``(2, half)`` rotary layout to the interleaved ``(half, 2)`` one; the
permutation is undone here so that ``rotary_interleave=False`` is right. qwen2
uses llama.cpp's NEOX rotary type, whose rows are stored unpermuted.

Memory stays bounded: each part of the model (the embeddings, one block, the
output projection) is dequantized, quantized to the target type and its float32
copy dropped before the next is read, and large tensors are dequantized in row
chunks. Peak memory is about the quantized model plus one float32 block.

The output directory gets ``model.bin``, ``config.json`` and the vocabulary from
CTranslate2, plus ``tokenizer.json``, ``chat_template.jinja`` and
``voiced_generation.json`` (special tokens and their ids).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
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

SUPPORTED_ARCHITECTURES = frozenset({"llama", "qwen2"})
_PERMUTED_QK_ARCHITECTURES = frozenset({"llama"})
"""Architectures whose q/k rows llama.cpp stores in its interleaved rotary order."""
_QKV_BIAS_ARCHITECTURES = frozenset({"qwen2"})
_DEQUANTIZE_CHUNK_VALUES = 1 << 24
"""Rows of a large tensor are dequantized this many values at a time (64 MB of float32)."""
END_OF_TURN_CANDIDATES = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
"""Chat end-of-turn tokens looked up in the vocabulary, first match wins."""
GENERATION_FILE = "voiced_generation.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILE = "tokenizer.json"

_FIX_GGUF = "check the file against the manifest's sha256, or prepare the model again"


@dataclass(frozen=True, slots=True)
class DecoderHParams:
    """Decoder hyper-parameters, read from a GGUF's ``<arch>.*`` metadata."""

    architecture: str
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

    @property
    def permuted_qk(self) -> bool:
        return self.architecture in _PERMUTED_QK_ARCHITECTURES

    @property
    def qkv_bias(self) -> bool:
        return self.architecture in _QKV_BIAS_ARCHITECTURES


def read_hparams(reader: Any) -> DecoderHParams:
    """Read the hyper-parameters; raise ModelError for an unsupported architecture."""
    arch = field_value(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"GGUF architecture {arch!r} is not supported (supported: llama, qwen2)",
            fix="use a llama or qwen2 GGUF such as the manifest's SmolLM2 or Qwen2.5",
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
    return DecoderHParams(
        architecture=str(arch),
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
        chunks = list(self.row_chunks(name, shape))
        array = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return np.ascontiguousarray(array, dtype=np.float32)

    def row_chunks(self, name: str, shape: tuple[int, ...]) -> Iterator[Array]:
        """Tensor ``name`` as float32, a block of rows at a time (about 64 MB each).

        gguf's dequantize needs several times its output in temporaries, so a
        150k-row embedding matrix is never dequantized at once.
        """
        from gguf.quants import dequantize

        tensor = self._by_name.get(name)
        if tensor is None:
            raise ModelError(f"the GGUF has no tensor {name!r}", fix=_FIX_GGUF)
        data = tensor.data
        expected_rows = shape[0] if len(shape) > 1 else 1
        rows = data.shape[0] if data.ndim > 1 else 1
        if rows != expected_rows or tuple(tensor.shape[::-1]) != shape:
            raise ModelError(
                f"GGUF tensor {name!r} has shape {tuple(int(n) for n in tensor.shape[::-1])}, "
                f"expected {shape}",
                fix=_FIX_GGUF,
            )
        step = max(1, _DEQUANTIZE_CHUNK_VALUES // max(1, math.prod(shape) // rows))
        for start in range(0, rows, step):
            try:
                chunk = dequantize(
                    data[start : start + step] if rows > 1 else data, tensor.tensor_type
                )
            except (NotImplementedError, ValueError) as err:
                raise ModelError(
                    f"cannot dequantize GGUF tensor {name!r} ({tensor.tensor_type.name}): {err}",
                    fix="use a GGUF whose tensor types gguf-py can dequantize",
                ) from err
            yield np.asarray(chunk, dtype=np.float32).reshape(-1, *shape[1:])


def unpermute_rotary_rows(weight: Array, num_heads: int) -> Array:
    """Undo llama.cpp's q/k permutation: rows (head, half, 2) back to (head, 2, half)."""
    rows, cols = weight.shape
    half = rows // num_heads // 2
    grouped = weight.reshape(num_heads, half, 2, cols)
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(rows, cols))


def _make_spec(hp: DecoderHParams) -> Any:
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


def _fill_layer(layer: Any, tensors: GgufTensors, hp: DecoderHParams, index: int) -> None:
    p = f"blk.{index}."
    d, ffn_dim = hp.hidden_size, hp.ffn_size
    q_dim, kv_dim = hp.num_heads * hp.head_dim, hp.num_heads_kv * hp.head_dim
    q = tensors.get(p + "attn_q.weight", (q_dim, d))
    k = tensors.get(p + "attn_k.weight", (kv_dim, d))
    if hp.permuted_qk:
        q, k = unpermute_rotary_rows(q, hp.num_heads), unpermute_rotary_rows(k, hp.num_heads_kv)
    v = tensors.get(p + "attn_v.weight", (kv_dim, d))
    attention = layer.self_attention
    attention.layer_norm.gamma = tensors.get(p + "attn_norm.weight", (d,))
    attention.linear[0].weight = np.concatenate([q, k, v])
    if hp.qkv_bias:
        biases = [
            (p + "attn_q.bias", q_dim),
            (p + "attn_k.bias", kv_dim),
            (p + "attn_v.bias", kv_dim),
        ]
        attention.linear[0].bias = np.concatenate([tensors.get(n, (size,)) for n, size in biases])
    attention.linear[1].weight = tensors.get(p + "attn_output.weight", (d, q_dim))
    ffn = layer.ffn
    ffn.layer_norm.gamma = tensors.get(p + "ffn_norm.weight", (d,))
    ffn.linear_0.weight = tensors.get(p + "ffn_gate.weight", (ffn_dim, d))
    ffn.linear_0_noact.weight = tensors.get(p + "ffn_up.weight", (ffn_dim, d))
    ffn.linear_1.weight = tensors.get(p + "ffn_down.weight", (d, ffn_dim))


_INT8_TYPES = frozenset({"int8", "int8_float32", "int8_float16", "int8_bfloat16"})


def quantize_int8_rows(weight: Array) -> tuple[npt.NDArray[np.int8], Array]:
    """CTranslate2's int8 weight quantization (``LayerSpec._quantize``): a scale per row.

    Each row is scaled on its own, so quantizing a matrix a block of rows at a
    time gives exactly what CTranslate2 gives for the whole matrix.
    """
    amax = np.amax(np.absolute(weight), axis=1)
    amax[amax == 0] = 127.0
    amax = np.maximum(amax, np.float32(127) / np.finfo(np.float32).max)
    scale = (127.0 / amax).astype(np.float32)
    return np.rint(weight * scale[:, None]).astype(np.int8), scale


def _fill_large(
    part: Any, tensors: GgufTensors, name: str, shape: tuple[int, int], quantization: str
) -> None:
    """Fill a vocabulary-sized matrix (embeddings, output projection) without a float32 copy."""
    if quantization not in _INT8_TYPES:
        part.weight = tensors.get(name, shape)
        _settle(part, quantization)
        return
    weight = np.empty(shape, dtype=np.int8)
    scale = np.empty(shape[0], dtype=np.float32)
    row = 0
    for chunk in tensors.row_chunks(name, shape):
        weight[row : row + len(chunk)], scale[row : row + len(chunk)] = quantize_int8_rows(chunk)
        row += len(chunk)
    part.weight, part.weight_scale = weight, scale
    part.validate()  # already quantized: optimize() would quantize it a second time


def _settle(part: Any, quantization: str) -> None:
    """Quantize one filled part of the spec now, so its float32 arrays can be freed."""
    part.validate()
    part.optimize(quantization=quantization)


def build_spec(
    tensors: GgufTensors, hp: DecoderHParams, quantization: str, on_step: Callable[[str], None]
) -> Any:
    """Return a ``TransformerDecoderModelSpec`` filled part by part and quantized."""
    spec = _make_spec(hp)
    decoder = spec.decoder
    decoder.scale_embeddings = False
    on_step("embeddings")
    vocab_shape = (hp.vocab_size, hp.hidden_size)
    _fill_large(decoder.embeddings, tensors, "token_embd.weight", vocab_shape, quantization)
    decoder.layer_norm.gamma = tensors.get("output_norm.weight", (hp.hidden_size,))
    _settle(decoder.layer_norm, quantization)
    if "output.weight" in tensors:
        _fill_large(decoder.projection, tensors, "output.weight", vocab_shape, quantization)
    else:  # tied: passes validate(), then becomes an alias (see convert_gguf_to_ct2)
        decoder.projection.weight = decoder.embeddings.weight
    for index, layer in enumerate(decoder.layer):
        on_step(f"layer {index + 1}/{hp.num_layers}")
        _fill_layer(layer, tensors, hp, index)
        _settle(layer, quantization)
    return spec


_TIED_PROJECTION_ALIAS = "decoder/embeddings/weight"
"""How CTranslate2 names the embeddings that a tied output projection reuses."""


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
    # The reader keeps a numpy view per token and merge (~270 MB for a 150k
    # vocabulary); ``info`` has what is needed, so free them before the weights.
    for key in [k for k in reader.fields if k.startswith("tokenizer.ggml.")]:
        del reader.fields[key]
    tensors = GgufTensors(reader)
    spec = build_spec(tensors, hp, quantization, step)
    spec.register_vocabulary(info.tokens)
    spec.config.bos_token = info.bos_token
    spec.config.eos_token = info.eos_token
    spec.config.unk_token = info.unk_token or ""
    spec.config.layer_norm_epsilon = hp.rms_norm_eps
    spec.validate()
    if "output.weight" not in tensors:
        # What CTranslate2's own optimize() does for tied weights: store them once.
        spec.decoder.projection.weight = _TIED_PROJECTION_ALIAS
    step(f"writing {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    _write_side_files(out_dir, info)
