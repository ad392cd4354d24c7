"""GGUF -> CTranslate2 conversion of SmolLM2-135M-Instruct, checked against a numpy reference.

The reference (tests/reference_llama.py) runs the llama equations in float32 on
the same dequantized GGUF tensors. A float32 conversion must reproduce it: the
same logits to ~1e-4 and the same greedy tokens. The shipped int8 conversion is
held to a looser, stated standard (see ``test_int8_*``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ctranslate2
import gguf
import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.ct2_helpers import load_generator, teacher_forced_rates, tokens
from tests.reference_llama import LlamaReference
from voiced.errors import EngineError, ModelError
from voiced.models.chat_template import render_chat
from voiced.models.gguf_convert import convert_gguf_to_ct2
from voiced.models.gguf_tokenizer import build_tokenizer_json, read_tokenizer_info

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
]
MAX_NEW_TOKENS = 24

pytestmark = pytest.mark.models


# -- fixtures: one reader, one reference, one conversion per quantization ----


@pytest.fixture(scope="module")
def reader(smollm2_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(smollm2_gguf)


@pytest.fixture(scope="module")
def reference(reader: gguf.GGUFReader) -> LlamaReference:
    return LlamaReference(reader, rope_layout="halves")


@pytest.fixture(scope="module")
def tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    return Tokenizer.from_str(build_tokenizer_json(reader))


def _convert(gguf_path: Path, out_dir: Path, quantization: str) -> Path:
    steps: list[str] = []
    convert_gguf_to_ct2(gguf_path, out_dir, quantization=quantization, on_step=steps.append)
    assert steps, "on_step was never called"
    return out_dir


@pytest.fixture(scope="module")
def ct2_float32(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(smollm2_gguf, tmp_path_factory.mktemp("ct2_f32"), "float32")


@pytest.fixture(scope="module")
def ct2_int8(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(smollm2_gguf, tmp_path_factory.mktemp("ct2_int8"), "int8")


@pytest.fixture(scope="module")
def prompts(reader: gguf.GGUFReader, tokenizer: Tokenizer) -> list[list[int]]:
    """The QUESTIONS rendered with the GGUF's chat template, as ids."""
    template = read_tokenizer_info(reader).chat_template
    assert template is not None
    texts = [
        render_chat(
            template,
            [{"role": "user", "content": q}],
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
        )
        for q in QUESTIONS
    ]
    return [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]


@pytest.fixture(scope="module")
def reference_greedy(reference: LlamaReference, prompts: list[list[int]]) -> list[list[int]]:
    eos = 2  # <|im_end|>; checked against the metadata in test_generation_file
    return [reference.greedy(p, MAX_NEW_TOKENS, eos) for p in prompts]


def _greedy(generator: ctranslate2.Generator, tokenizer: Tokenizer, prompt: list[int]) -> list[int]:
    result = generator.generate_batch(
        [tokens(tokenizer, prompt)],
        sampling_topk=1,
        max_length=MAX_NEW_TOKENS,
        include_prompt_in_result=False,
    )
    return list(result[0].sequences_ids[0])


# -- the reference checks itself ---------------------------------------------


def test_reference_rope_layouts_agree(
    reader: gguf.GGUFReader, reference: LlamaReference, prompts: list[list[int]]
) -> None:
    """GGUF rows with llama.cpp's pair rotation == HF-ordered rows with rotate_half.

    This pins down the q/k row reordering without any converter code.
    """
    assert reference.rope_layout == "halves"
    halves = reference.logits(prompts[0])
    pairs = LlamaReference(reader, rope_layout="pairs").logits(prompts[0])
    assert np.abs(halves - pairs).max() < 1e-3


# -- float32 conversion: must reproduce the reference ------------------------


def test_float32_logits_match_reference(
    ct2_float32: Path, reference: LlamaReference, tokenizer: Tokenizer, prompts: list[list[int]]
) -> None:
    ids = prompts[1]
    expected = reference.logits(ids)
    got = np.asarray(load_generator(ct2_float32).forward_batch([tokens(tokenizer, ids)]))[0]
    assert got.shape == expected.shape
    # Logits span about +-38; float32 summation order alone explains ~1e-4.
    assert np.abs(got - expected).max() < 2e-3


def test_float32_greedy_ids_match_reference(
    ct2_float32: Path,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    reference_greedy: list[list[int]],
) -> None:
    generator = load_generator(ct2_float32)
    for prompt, expected in zip(prompts, reference_greedy, strict=True):
        assert _greedy(generator, tokenizer, prompt) == expected
    assert sum(len(e) for e in reference_greedy) > 40  # real continuations, not instant stops
    assert "torch" not in sys.modules and "transformers" not in sys.modules


# -- int8 conversion (the shipped default) -----------------------------------


def test_int8_keeps_the_reference_token_in_its_top_five(
    ct2_int8: Path,
    reference: LlamaReference,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    reference_greedy: list[list[int]],
) -> None:
    """Teacher-forced, the float32 reference's next token is among int8's five best at
    almost every position.

    No exact int8 output is asserted: CTranslate2's int8 kernels differ between
    CPUs (AVX2, AVX-512 VNNI, AMX, ARM), and this 135M model sits on near-ties, so
    its greedy text changes with the CPU (on an AMX Xeon "What is the capital of
    France?" got French nonsense). A broken conversion fails this by far.
    """
    _, top5 = teacher_forced_rates(load_generator(ct2_int8), tokenizer, prompts, reference_greedy)
    assert top5 >= 0.9


def test_int8_top1_mostly_agrees_with_reference(
    ct2_int8: Path,
    reference: LlamaReference,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    reference_greedy: list[list[int]],
) -> None:
    """Teacher-forced on the reference's own continuations, int8 picks the same next token
    at most positions (measured 0.80-0.88); a wrong conversion scores near 0."""
    generator = load_generator(ct2_int8)
    agree, total = 0, 0
    for prompt, continuation in zip(prompts, reference_greedy, strict=True):
        ids = prompt + continuation
        expected = reference.logits(ids)[len(prompt) - 1 :].argmax(-1)
        logits = np.asarray(generator.forward_batch([tokens(tokenizer, ids)]))[0]
        got = logits[len(prompt) - 1 :].argmax(-1)
        agree += int((got == expected).sum())
        total += len(expected)
    assert agree / total >= 0.7


def test_output_files(ct2_int8: Path) -> None:
    names = {p.name for p in ct2_int8.iterdir()}
    assert {"model.bin", "config.json", "tokenizer.json", "chat_template.jinja"} <= names
    assert "voiced_generation.json" in names
    config = json.loads((ct2_int8 / "config.json").read_text(encoding="utf-8"))
    assert config["eos_token"] == "<|im_end|>"
    assert (ct2_int8 / "model.bin").stat().st_size < 160e6  # int8, embeddings stored once


def test_generation_file(ct2_int8: Path, reader: gguf.GGUFReader) -> None:
    info = read_tokenizer_info(reader)
    generation = json.loads((ct2_int8 / "voiced_generation.json").read_text(encoding="utf-8"))
    assert generation == {
        "bos_token": "<|im_start|>",
        "bos_token_id": info.bos_token_id,
        "eos_token": "<|im_end|>",
        "eos_token_id": info.eos_token_id,
        "end_of_turn_token": "<|im_end|>",
        "end_of_turn_token_id": 2,
    }


# -- tokenizer and chat template ---------------------------------------------


def test_chat_template_renders_chatml(ct2_int8: Path) -> None:
    template = (ct2_int8 / "chat_template.jinja").read_text(encoding="utf-8")
    text = render_chat(
        template,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_template_exception_is_engine_error() -> None:
    with pytest.raises(EngineError, match="roles must alternate"):
        render_chat(
            "{{ raise_exception('roles must alternate') }}",
            [],
            bos_token="",
            eos_token="",
        )


@pytest.mark.parametrize(
    "text",
    [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "Grüße, 東京! 123",
        "  two spaces,\ttabs\n\nand newlines  ",
    ],
)
def test_tokenizer_round_trips(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_tokenizer_special_tokens_and_known_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False).ids == [1]
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False).ids == [2]
    # ids of SmolLM2's published tokenizer for this text (digits split one by one)
    ids = tokenizer.encode("<|im_start|>user\nHi 123<|im_end|>", add_special_tokens=False).ids
    assert [tokenizer.id_to_token(i) for i in ids] == [
        "<|im_start|>", "user", "Ċ", "Hi", "Ġ", "1", "2", "3", "<|im_end|>",
    ]  # fmt: skip


# -- bad inputs ---------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a gguf file\n" * 64], ids=["empty", "text"])
def test_not_a_gguf_is_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a readable GGUF"):
        convert_gguf_to_ct2(path, tmp_path / "out")


def test_truncated_gguf_is_model_error(smollm2_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with smollm2_gguf.open("rb") as source:
        path.write_bytes(source.read(20_000_000))
    with pytest.raises(ModelError):
        convert_gguf_to_ct2(path, tmp_path / "out")


def _write_tiny_gguf(path: Path, arch: str, *, omit: str = "") -> None:
    """A 1-layer llama-shaped GGUF with random float32 tensors."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(["<|im_end|>", "a", "b", "ab"])
    writer.add_token_types([3, 1, 1, 1])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (4, 8), "output_norm.weight": (8,)}
    shapes |= {f"blk.0.{n}.weight": (8,) for n in ("attn_norm", "ffn_norm")}
    shapes |= {"blk.0.attn_q.weight": (8, 8), "blk.0.attn_output.weight": (8, 8)}
    shapes |= {"blk.0.attn_k.weight": (4, 8), "blk.0.attn_v.weight": (4, 8)}
    shapes |= {"blk.0.ffn_gate.weight": (16, 8), "blk.0.ffn_up.weight": (16, 8)}
    shapes |= {"blk.0.ffn_down.weight": (8, 16)}
    for name, shape in shapes.items():
        if name != omit:
            writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, "llama", omit="blk.0.ffn_down.weight")
    with pytest.raises(ModelError, match=r"blk\.0\.ffn_down\.weight"):
        convert_gguf_to_ct2(path, tmp_path / "out", quantization="float32")


def test_unsupported_architecture_is_model_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write_tiny_gguf(path, "gpt2")
    with pytest.raises(ModelError, match="architecture 'gpt2'"):
        convert_gguf_to_ct2(path, tmp_path / "out")


def test_unknown_quantization_is_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="quantization"):
        convert_gguf_to_ct2(tmp_path / "missing.gguf", tmp_path / "out", quantization="int3")
