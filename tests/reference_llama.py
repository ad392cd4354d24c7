"""An independent float32 numpy implementation of the llama and qwen2 forward passes.

qwen2 (Qwen2 / Qwen2.5, as in Hugging Face's ``modeling_qwen2.py``) is llama
with a bias on the q, k and v projections; llama.cpp stores its q/k rows in
Hugging Face's order (it uses the NEOX rotary type, ``x[i]`` with ``x[i + d/2]``),
so for qwen2 only the "halves" layout applies and no rows are reordered.

Why this is a valid reference for ``voiced.models.gguf_convert``:

* **Same weights.** It reads the GGUF itself with ``gguf.GGUFReader`` and
  ``gguf.quants.dequantize``, the same float32 values the converter starts from;
  any difference in output therefore comes from how the weights are *used*, which
  is exactly what the conversion has to get right.
* **The published equations, written out.** Llama (Touvron et al. 2023) as
  implemented by Hugging Face's ``modeling_llama.py`` and llama.cpp: RMSNorm
  ``x / sqrt(mean(x^2) + eps) * g``; rotary position embeddings with frequencies
  ``theta^(-2i/d)``; grouped-query causal attention scaled by ``1/sqrt(d)``;
  the SwiGLU MLP ``W_down(silu(W_gate x) * W_up x)``; a final RMSNorm and an lm
  head tied to the token embeddings when the file has no ``output.weight``.
* **No shared code with the converter.** Nothing here imports ``voiced``: the
  hyper-parameters are read from the metadata again, and the rotary layout is
  handled in two ways that do not depend on each other:

  - ``rope_layout="pairs"``: q and k are used exactly as stored in the GGUF and
    rotated as adjacent pairs ``(x[2i], x[2i+1])``, llama.cpp's own convention
    for llama (``LLAMA_ROPE_TYPE_NORM``);
  - ``rope_layout="halves"``: the q/k rows are first reordered to Hugging Face's
    layout with an index map derived from llama.cpp's ``permute`` (GGUF row
    ``h*d + 2i + c`` holds HF row ``h*d + c*d/2 + i``) and rotated with HF's
    ``rotate_half`` (``x[i]`` paired with ``x[i + d/2]``), the layout the
    converter feeds CTranslate2 with ``rotary_interleave=False``.

  The two layouts agreeing with each other checks the row reordering; the
  "halves" one agreeing with CTranslate2 checks everything else.

A KV cache keeps greedy decoding at one token's work per step.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np
from gguf.quants import dequantize

F32 = np.float32
RopeLayout = Literal["pairs", "halves"]


@dataclass
class _Layer:
    attn_norm: np.ndarray
    wq: np.ndarray  # (heads*d, hidden)
    wk: np.ndarray  # (kv_heads*d, hidden)
    wv: np.ndarray
    wo: np.ndarray  # (hidden, heads*d)
    ffn_norm: np.ndarray
    w_gate: np.ndarray  # (ffn, hidden)
    w_up: np.ndarray
    w_down: np.ndarray  # (hidden, ffn)
    bq: np.ndarray | float = 0.0  # qwen2's projection biases
    bk: np.ndarray | float = 0.0
    bv: np.ndarray | float = 0.0
    k_cache: list[np.ndarray] = field(default_factory=list)
    v_cache: list[np.ndarray] = field(default_factory=list)


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Best effort: run numpy's bundled OpenBLAS on one thread, then restore it.

    The reference does many small products; with other jobs on a 2-core box,
    OpenBLAS's spin-waiting worker threads made it up to 10x slower. Without a
    bundled scipy-openblas (another numpy build) this does nothing.
    """
    lib = None
    for path in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
            get, set_ = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
            break
        except (OSError, AttributeError):
            lib = None
    if lib is None:
        yield
        return
    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def _meta(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.get_field(key)
    if f is None:
        if default is None:
            raise KeyError(key)
        return default
    return f.contents()


def _hf_row_order(n_heads: int, head_dim: int) -> np.ndarray:
    """GGUF row index for every Hugging Face row of a q or k projection."""
    half = head_dim // 2
    order = np.empty(n_heads * head_dim, dtype=np.int64)
    for h in range(n_heads):
        for c in range(2):
            for i in range(half):
                order[h * head_dim + c * half + i] = h * head_dim + 2 * i + c
    return order


class LlamaReference:
    """Llama forward pass in float32 numpy, for one sequence at a time."""

    def __init__(self, reader: Any, *, rope_layout: RopeLayout = "halves") -> None:
        arch = _meta(reader, "general.architecture")
        assert arch in ("llama", "qwen2"), arch
        assert arch == "llama" or rope_layout == "halves", "qwen2 rows are stored HF-ordered"
        self.rope_layout = rope_layout
        self.n_layers = int(_meta(reader, f"{arch}.block_count"))
        self.hidden = int(_meta(reader, f"{arch}.embedding_length"))
        self.n_heads = int(_meta(reader, f"{arch}.attention.head_count"))
        self.n_kv = int(_meta(reader, f"{arch}.attention.head_count_kv", self.n_heads))
        self.head_dim = self.hidden // self.n_heads
        self.theta = float(_meta(reader, f"{arch}.rope.freq_base", 10000.0))
        self.eps = float(_meta(reader, f"{arch}.attention.layer_norm_rms_epsilon"))
        raw = {t.name: t for t in reader.tensors}

        def w(name: str) -> np.ndarray:
            t = raw[name]
            return np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=F32)

        self.embed = w("token_embd.weight")
        self.lm_head = w("output.weight") if "output.weight" in raw else self.embed
        self.out_norm = w("output_norm.weight")
        q_order = _hf_row_order(self.n_heads, self.head_dim)
        k_order = _hf_row_order(self.n_kv, self.head_dim)
        self.layers = []
        for i in range(self.n_layers):
            p = f"blk.{i}."
            wq, wk = w(p + "attn_q.weight"), w(p + "attn_k.weight")
            if rope_layout == "halves" and arch == "llama":
                wq, wk = wq[q_order], wk[k_order]
            biases = {}
            if arch == "qwen2":
                biases = {b: w(f"{p}attn_{b[1]}.bias") for b in ("bq", "bk", "bv")}
            self.layers.append(
                _Layer(
                    attn_norm=w(p + "attn_norm.weight"),
                    wq=wq,
                    wk=wk,
                    wv=w(p + "attn_v.weight"),
                    wo=w(p + "attn_output.weight"),
                    ffn_norm=w(p + "ffn_norm.weight"),
                    w_gate=w(p + "ffn_gate.weight"),
                    w_up=w(p + "ffn_up.weight"),
                    w_down=w(p + "ffn_down.weight"),
                    **biases,
                )
            )
        exponents = np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim
        self.inv_freq = self.theta**-exponents

    @classmethod
    def from_gguf(cls, path: Path, *, rope_layout: RopeLayout = "halves") -> LlamaReference:
        return cls(gguf.GGUFReader(path), rope_layout=rope_layout)

    # -- the equations -------------------------------------------------------

    def _rms_norm(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        var = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
        return (x / np.sqrt(var + self.eps)).astype(F32) * g

    def _rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Rotate x of shape (tokens, heads, head_dim) by its positions."""
        angles = positions[:, None].astype(np.float64) * self.inv_freq[None, :]  # (T, d/2)
        cos = np.cos(angles).astype(F32)[:, None, :]
        sin = np.sin(angles).astype(F32)[:, None, :]
        half = self.head_dim // 2
        if self.rope_layout == "halves":  # HF rotate_half: x[i] with x[i + d/2]
            a, b = x[..., :half], x[..., half:]
            return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
        a, b = x[..., 0::2], x[..., 1::2]  # llama.cpp NORM: x[2i] with x[2i+1]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
        return out

    def _attention(self, layer: _Layer, h: np.ndarray, start: int) -> np.ndarray:
        t, d = h.shape[0], self.head_dim
        positions = np.arange(start, start + t)
        q = self._rope((h @ layer.wq.T + layer.bq).reshape(t, self.n_heads, d), positions)
        k = self._rope((h @ layer.wk.T + layer.bk).reshape(t, self.n_kv, d), positions)
        v = (h @ layer.wv.T + layer.bv).reshape(t, self.n_kv, d)
        layer.k_cache.append(k)
        layer.v_cache.append(v)
        keys = np.concatenate(layer.k_cache)  # (S, kv, d), S = start + t
        values = np.concatenate(layer.v_cache)
        group = self.n_heads // self.n_kv  # query head j uses kv head j // group
        keys = np.repeat(keys, group, axis=1).transpose(1, 0, 2)  # (heads, S, d)
        values = np.repeat(values, group, axis=1).transpose(1, 0, 2)
        scores = q.transpose(1, 0, 2) @ keys.transpose(0, 2, 1) / np.sqrt(d)  # (heads, t, S)
        causal = np.arange(keys.shape[1])[None, :] > positions[:, None]  # key after query
        scores = np.where(causal[None], -np.inf, scores)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        context = (probs @ values).transpose(1, 0, 2).reshape(t, self.n_heads * d)
        return context @ layer.wo.T

    def _mlp(self, layer: _Layer, h: np.ndarray) -> np.ndarray:
        gate = h @ layer.w_gate.T
        silu = gate / (1.0 + np.exp(-gate))
        return (silu * (h @ layer.w_up.T)) @ layer.w_down.T

    def _forward(self, ids: list[int], start: int) -> np.ndarray:
        """Run ``ids`` at positions ``start...``; return their logits (tokens, vocab)."""
        x = self.embed[np.asarray(ids)]
        for layer in self.layers:
            x = x + self._attention(layer, self._rms_norm(x, layer.attn_norm), start)
            x = x + self._mlp(layer, self._rms_norm(x, layer.ffn_norm))
        return self._rms_norm(x, self.out_norm) @ self.lm_head.T

    def _reset(self) -> None:
        for layer in self.layers:
            layer.k_cache.clear()
            layer.v_cache.clear()

    # -- public --------------------------------------------------------------

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits for every position of ``ids`` (a fresh sequence)."""
        self._reset()
        with _single_threaded_blas():
            return self._forward(ids, 0)

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, end_id: int) -> list[int]:
        """Greedy continuation of ``prompt_ids``, stopping before ``end_id``."""
        self._reset()
        out: list[int] = []
        with _single_threaded_blas():
            logits = self._forward(prompt_ids, 0)[-1]
            while len(out) < max_new_tokens:
                token = int(np.argmax(logits))
                if token == end_id:
                    break
                out.append(token)
                logits = self._forward([token], len(prompt_ids) + len(out) - 1)[-1]
        return out
