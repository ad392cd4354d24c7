"""Shared by the GGUF conversion tests: a CTranslate2 generator, token strings, and
how often a model ranks a reference continuation's tokens first or in its top k."""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import numpy as np
from tokenizers import Tokenizer

THREADS = 1  # spin-waiting worker threads crawl when other jobs share the 2 cores


def load_generator(model_dir: Path) -> ctranslate2.Generator:
    return ctranslate2.Generator(str(model_dir), device="cpu", intra_threads=THREADS)


def tokens(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i) for i in ids]


def teacher_forced_rates(
    model: ctranslate2.Generator,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    continuations: list[list[int]],
    k: int = 5,
) -> tuple[float, float]:
    """(top-1 rate, top-k rate) of the continuation tokens, each predicted from the
    prompt plus the continuation before it."""
    top1 = topk = total = 0
    for prompt, continuation in zip(prompts, continuations, strict=True):
        ids = prompt + continuation
        logits = np.asarray(model.forward_batch([tokens(tokenizer, ids)]))[0]
        best = np.argsort(logits[len(prompt) - 1 : -1], axis=-1)[:, -k:]
        top1 += sum(int(t == row[-1]) for t, row in zip(continuation, best, strict=True))
        topk += sum(int(t in row) for t, row in zip(continuation, best, strict=True))
        total += len(continuation)
    return top1 / total, topk / total
