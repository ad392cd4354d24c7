"""Rebuild a Hugging Face ``tokenizers`` tokenizer from a GGUF file's metadata.

A llama.cpp GGUF with ``tokenizer.ggml.model == "gpt2"`` carries a byte-level BPE
vocabulary (``tokenizer.ggml.tokens``), its merge list (``tokenizer.ggml.merges``)
and a type per token (``tokenizer.ggml.token_type``; 3 = control token). That is
everything a ``tokenizers`` BPE model needs, so no hub download is required.

The pre-tokenizer is chosen from ``tokenizer.ggml.pre``: only the pre-tokenizers
whose split rules are known to match a byte-level ``tokenizers`` pipeline are
accepted; any other one raises :class:`~voiced.errors.ModelError` rather than
building a tokenizer that would silently produce different ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from voiced.errors import ModelError

CONTROL_TOKEN_TYPE = 3
"""``tokenizer.ggml.token_type`` value llama.cpp uses for control (special) tokens."""

_GPT2_PRE = frozenset({"default", "gpt2"})
"""Pre-tokenizers that are the plain GPT-2 regex split."""

_DIGIT_SPLIT_PRE = frozenset({"smollm", "starcoder", "refact"})
"""Pre-tokenizers that split every digit on its own before the GPT-2 regex."""

_QWEN2_PRE = frozenset({"qwen2"})
"""Pre-tokenizers with Qwen2's split: contractions, letter runs, single digits."""

QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer regex (its tokenizer.json; llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2)."""

_FIX_REPREPARE = "prepare the model again from the manifest's GGUF (voiced models prepare)"


@dataclass(frozen=True, slots=True)
class GgufTokenizerInfo:
    """Tokenizer facts read from a GGUF's metadata."""

    tokens: list[str]
    """Token strings, indexed by token id."""
    token_types: list[int]
    """llama.cpp token type per id (1 normal, 3 control, ...)."""
    merges: list[str]
    """BPE merges, ``"left right"``, highest priority first."""
    pre_tokenizer: str
    """``tokenizer.ggml.pre``: llama.cpp's name for the pre-tokenizer."""
    bos_token_id: int
    eos_token_id: int
    unk_token_id: int | None
    chat_template: str | None
    """The Jinja chat template, or None when the GGUF has none."""

    @property
    def bos_token(self) -> str:
        return self.tokens[self.bos_token_id]

    @property
    def eos_token(self) -> str:
        return self.tokens[self.eos_token_id]

    @property
    def unk_token(self) -> str | None:
        return None if self.unk_token_id is None else self.tokens[self.unk_token_id]

    def special_token_ids(self) -> list[int]:
        """Ids of the control tokens (``token_type`` 3)."""
        return [i for i, kind in enumerate(self.token_types) if kind == CONTROL_TOKEN_TYPE]


def field_value(reader: Any, key: str, *, required: bool = True) -> Any:
    """Return a GGUF metadata value (scalar, string or list), or None when absent.

    Raises ModelError when ``required`` and the key is missing.
    """
    field = reader.get_field(key)
    if field is None:
        if required:
            raise ModelError(f"the GGUF has no metadata key {key!r}", fix=_FIX_REPREPARE)
        return None
    return field.contents()


def read_tokenizer_info(reader: Any) -> GgufTokenizerInfo:
    """Read the tokenizer vocabulary, merges, special ids and chat template."""
    model = field_value(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ModelError(
            f"GGUF tokenizer model {model!r} is not supported (only byte-level BPE 'gpt2')",
            fix="use a GGUF whose tokenizer.ggml.model is 'gpt2', e.g. the manifest's SLM",
        )
    tokens = [str(t) for t in field_value(reader, "tokenizer.ggml.tokens")]
    types = field_value(reader, "tokenizer.ggml.token_type", required=False)
    unk = field_value(reader, "tokenizer.ggml.unknown_token_id", required=False)
    info = GgufTokenizerInfo(
        tokens=tokens,
        token_types=[int(t) for t in types] if types is not None else [1] * len(tokens),
        merges=[str(m) for m in field_value(reader, "tokenizer.ggml.merges")],
        pre_tokenizer=str(field_value(reader, "tokenizer.ggml.pre", required=False) or "default"),
        bos_token_id=int(field_value(reader, "tokenizer.ggml.bos_token_id")),
        eos_token_id=int(field_value(reader, "tokenizer.ggml.eos_token_id")),
        unk_token_id=None if unk is None else int(unk),
        chat_template=field_value(reader, "tokenizer.chat_template", required=False),
    )
    for name in ("bos_token_id", "eos_token_id", "unk_token_id"):
        token_id = getattr(info, name)
        if token_id is not None and not 0 <= token_id < len(tokens):
            raise ModelError(
                f"GGUF {name} {token_id} is outside the vocabulary of {len(tokens)}",
                fix=_FIX_REPREPARE,
            )
    return info


def _pre_tokenizer_json(pre: str) -> dict[str, Any]:
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    if pre in _GPT2_PRE:
        return byte_level
    if pre in _DIGIT_SPLIT_PRE:
        digits = {"type": "Digits", "individual_digits": True}
        return {"type": "Sequence", "pretokenizers": [digits, byte_level]}
    if pre in _QWEN2_PRE:
        split = {
            "type": "Split",
            "pattern": {"Regex": QWEN2_SPLIT_REGEX},
            "behavior": "Isolated",
            "invert": False,
        }
        bytes_only = {**byte_level, "trim_offsets": False, "use_regex": False}
        return {"type": "Sequence", "pretokenizers": [split, bytes_only]}
    supported = ", ".join(sorted(_GPT2_PRE | _DIGIT_SPLIT_PRE | _QWEN2_PRE))
    raise ModelError(
        f"GGUF pre-tokenizer {pre!r} is not supported (supported: {supported})",
        fix="use a GGUF whose tokenizer.ggml.pre is one of the supported ones",
    )


def _added_tokens_json(info: GgufTokenizerInfo) -> list[dict[str, Any]]:
    return [
        {
            "id": token_id,
            "content": info.tokens[token_id],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token_id in info.special_token_ids()
    ]


def _merge_pairs(merges: list[str]) -> list[list[str]]:
    pairs: list[list[str]] = []
    for merge in merges:
        left, sep, right = merge.partition(" ")
        if not sep or not left or not right:
            raise ModelError(f"malformed GGUF BPE merge {merge!r}", fix=_FIX_REPREPARE)
        pairs.append([left, right])
    return pairs


def tokenizer_json_from_info(info: GgufTokenizerInfo) -> str:
    """Serialize ``info`` as a ``tokenizers`` JSON document (byte-level BPE)."""
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    document = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens_json(info),
        # Qwen2's tokenizer composes text to NFC first; the others leave it as it is.
        "normalizer": {"type": "NFC"} if info.pre_tokenizer in _QWEN2_PRE else None,
        "pre_tokenizer": _pre_tokenizer_json(info.pre_tokenizer),
        "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {token: i for i, token in enumerate(info.tokens)},
            "merges": _merge_pairs(info.merges),
        },
    }
    return json.dumps(document, ensure_ascii=False)


def build_tokenizer_json(reader: Any) -> str:
    """Return a ``tokenizers`` JSON for the GGUF read by ``reader`` (a ``gguf.GGUFReader``)."""
    return tokenizer_json_from_info(read_tokenizer_info(reader))
