"""GGUF -> CTranslate2 conversion of Qwen2.5-Coder-0.5B-Instruct (qwen2, K-quants).

The same standard as the llama path (tests/test_gguf_convert.py): a float32
conversion reproduces the independent numpy reference (tests/reference_llama.py,
qwen2 branch: q/k/v biases, grouped-query attention with 14 query and 2 kv heads,
rope theta 1e6, an untied output projection) to the logit and token for token;
the shipped int8 conversion is held to agreement rates, never an exact string.
The weights are Q4_K, Q5_0, Q6_K and Q8_0, dequantized by ``gguf``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.ct2_helpers import load_generator, teacher_forced_rates, tokens
from tests.reference_llama import LlamaReference
from voiced.models.chat_template import render_chat
from voiced.models.gguf_convert import convert_gguf_to_ct2, quantize_int8_rows, read_hparams
from voiced.models.gguf_tokenizer import build_tokenizer_json, read_tokenizer_info

QUESTIONS = ["What is the capital of France?", "Name three colours of the rainbow."]
SYSTEM = "You are a helpful voice assistant. Answer in one short sentence."
MAX_NEW_TOKENS = 12

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def reader(qwen2_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(qwen2_gguf)


@pytest.fixture(scope="module")
def reference(reader: gguf.GGUFReader) -> LlamaReference:
    return LlamaReference(reader, rope_layout="halves")


@pytest.fixture(scope="module")
def tokenizer(reader: gguf.GGUFReader) -> Tokenizer:
    return Tokenizer.from_str(build_tokenizer_json(reader))


@pytest.fixture(scope="module")
def ct2_float32(qwen2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qwen2_f32")
    convert_gguf_to_ct2(qwen2_gguf, out, quantization="float32")
    return out


@pytest.fixture(scope="module")
def int8_dir(models_dir: Path) -> Path:
    """The int8 model exactly as `voiced models prepare` made it."""
    return models_dir / "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def prompts(reader: gguf.GGUFReader, tokenizer: Tokenizer) -> list[list[int]]:
    info = read_tokenizer_info(reader)
    assert info.chat_template is not None
    texts = [
        render_chat(
            info.chat_template,
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
            bos_token=info.bos_token,
            eos_token=info.eos_token,
        )
        for q in QUESTIONS
    ]
    return [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]


@pytest.fixture(scope="module")
def reference_greedy(reference: LlamaReference, prompts: list[list[int]]) -> list[list[int]]:
    end_of_turn = 151645  # <|im_end|>, checked in test_tokenizer_known_ids
    return [reference.greedy(p, MAX_NEW_TOKENS, end_of_turn) for p in prompts]


def test_hparams_are_qwen2s(reader: gguf.GGUFReader) -> None:
    hp = read_hparams(reader)
    assert (hp.architecture, hp.num_layers, hp.num_heads, hp.num_heads_kv) == ("qwen2", 24, 14, 2)
    assert hp.qkv_bias and not hp.permuted_qk
    assert hp.rope_theta == 1_000_000.0


def test_tensor_types_include_k_quants(reader: gguf.GGUFReader) -> None:
    kinds = {t.tensor_type.name for t in reader.tensors}
    assert {"Q4_K", "Q6_K", "Q5_0", "Q8_0"} <= kinds


def test_tokenizer_known_ids(tokenizer: Tokenizer) -> None:
    # ids of Qwen2's published tokenizer
    assert tokenizer.encode("Hello world", add_special_tokens=False).ids == [9707, 1879]
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False).ids == [151644]
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False).ids == [151645]
    ids = tokenizer.encode("Hi 123", add_special_tokens=False).ids
    assert [tokenizer.id_to_token(i) for i in ids] == ["Hi", "Ġ", "1", "2", "3"]


@pytest.mark.parametrize("text", ["Grüße, 東京!  two  spaces\n\n", "What's up? I'll see."])
def test_tokenizer_round_trips(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_float32_logits_match_reference(
    ct2_float32: Path, reference: LlamaReference, tokenizer: Tokenizer, prompts: list[list[int]]
) -> None:
    ids = prompts[1]
    expected = reference.logits(ids)
    got = np.asarray(load_generator(ct2_float32).forward_batch([tokens(tokenizer, ids)]))[0]
    assert got.shape == expected.shape == (len(ids), 151936)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < 2e-3 * scale


def test_float32_greedy_ids_match_reference(
    ct2_float32: Path,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    reference_greedy: list[list[int]],
) -> None:
    generator = load_generator(ct2_float32)
    for prompt, expected in zip(prompts, reference_greedy, strict=True):
        result = generator.generate_batch(
            [tokens(tokenizer, prompt)], sampling_topk=1, max_length=MAX_NEW_TOKENS,
            include_prompt_in_result=False, end_token="<|im_end|>",
        )  # fmt: skip
        assert list(result[0].sequences_ids[0]) == expected
    assert sum(len(e) for e in reference_greedy) > 12  # real continuations
    assert "Paris" in tokenizer.decode(reference_greedy[0])  # the reference itself is sane
    assert "torch" not in sys.modules and "transformers" not in sys.modules


def test_int8_agrees_with_reference(
    int8_dir: Path,
    reference: LlamaReference,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    reference_greedy: list[list[int]],
) -> None:
    """Teacher-forced on the reference's continuations, the prepared int8 model picks
    the same next token at most positions and keeps it in its top five nearly always."""
    top1, top5 = teacher_forced_rates(
        load_generator(int8_dir), tokenizer, prompts, reference_greedy
    )
    assert top1 >= 0.75
    assert top5 >= 0.9


def test_int8_rows_equal_ctranslate2s_own_quantization() -> None:
    """Quantizing the vocabulary matrices a block of rows at a time (to bound memory)
    gives exactly what CTranslate2's optimize() gives for the whole matrix."""
    from ctranslate2.specs import common_spec

    rng = np.random.default_rng(7)
    weight = rng.standard_normal((300, 64)).astype(np.float32)
    weight[5] = 0.0  # an all-zero row keeps a finite scale
    spec = common_spec.LinearSpec()
    spec.weight = weight.copy()
    spec.validate()
    spec.optimize(quantization="int8")
    blocks = [quantize_int8_rows(weight[i : i + 64]) for i in range(0, 300, 64)]
    ours = np.concatenate([b[0] for b in blocks])
    scales = np.concatenate([b[1] for b in blocks])
    assert np.array_equal(ours, spec.weight.numpy())
    assert np.array_equal(scales, spec.weight_scale.numpy())
