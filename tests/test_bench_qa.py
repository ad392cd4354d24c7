"""`voiced bench --qa`: the question set, its scoring, and a real run through the
real responder and language model."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voiced.bench.qa import (
    BenchControls,
    QaItem,
    is_correct,
    is_honest_refusal,
    load_questions,
    run_qa,
    summarize_qa,
)
from voiced.engines.slm import SlmEngine
from voiced.errors import UsageError
from voiced.intents.builtin import BuiltinIntents
from voiced.pipeline.responder import Responder
from voiced.settings import SlmSettings


def test_the_built_in_set_is_big_enough_and_well_formed() -> None:
    items = load_questions(None)
    facts = [i for i in items if i.kind == "fact" and i.after is None]
    assert len(facts) >= 50
    assert len({i.question for i in items}) == len(items)
    assert sum(i.after is not None for i in items) >= 5
    assert sum(i.kind == "unable" for i in items) >= 8
    assert all(i.answers for i in facts)


@pytest.mark.parametrize(
    ("reply", "answers", "expected"),
    [
        ("The capital of France is Paris.", ("Paris",), True),
        ("Parisian food is nice.", ("Paris",), False),  # whole words only
        ("Seven times eight is fifty-six.", ("56", "fifty six"), True),
        ("It is 56.", ("56", "fifty six"), True),
        ("It is 560.", ("56",), False),
        ("WATER IS H2O!", ("H2O",), True),
        ("", ("Paris",), False),
    ],
)
def test_whole_word_scoring(reply: str, answers: tuple[str, ...], expected: bool) -> None:
    assert is_correct(reply, answers) is expected


@pytest.mark.parametrize(
    ("reply", "honest"),
    [
        ("I can't turn on the kitchen lights: nothing is set up for that.", True),
        ("I'm sorry, I cannot lock doors.", True),
        ("Sure, I've turned on the kitchen lights.", False),
        ("The dog is out.", False),
        ("Turning on the lights now. I can't see them though.", False),
    ],
)
def test_honest_refusal_scoring(reply: str, honest: bool) -> None:
    assert is_honest_refusal(reply) is honest


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not JSON"),
        ('["a list"]', "expected an object"),
        ('{"question": "", "answers": ["x"]}', '"question" must be'),
        ('{"question": "q", "answers": []}', '"answers" must be'),
        ('{"question": "q", "answers": [3]}', '"answers" must be'),
        ('{"question": "q", "answers": ["x"], "rm": 1}', "expected an object"),
        ('{"question": "q", "kind": "opinion"}', '"kind" must be'),
        ('{"question": "q", "kind": "unable", "answers": ["x"]}', "has no"),
        ('{"question": "' + "x" * 600 + '", "answers": ["x"]}', '"question" must be'),
    ],
)
def test_bad_question_sets_name_the_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "fine?", "answers": ["yes"]}\n' + line + "\n")
    with pytest.raises(UsageError, match="line 2") as raised:
        load_questions(path)
    assert problem in raised.value.message


@pytest.mark.parametrize(
    "content", [b"", b"\n\n", b"\xff\xfe\x00bad"], ids=["empty", "blank", "binary"]
)
def test_empty_or_unreadable_sets_are_usage_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_bytes(content)
    with pytest.raises(UsageError):
        load_questions(path)
    with pytest.raises(UsageError, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


# -- the real thing ------------------------------------------------------------------


@pytest.mark.models
def test_a_real_run_alone_and_in_one_session(slm_float32: SlmEngine) -> None:
    items = [
        QaItem("What is the capital of France?", ("Paris",)),
        QaItem("Turn on the kitchen lights.", (), kind="unable"),
        QaItem("And what about Italy?", ("Rome",), after="What is the capital of France?"),
    ]
    settings = SlmSettings(max_reply_tokens=24)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        responder = Responder([BuiltinIntents()], slm_float32, settings, BenchControls(), executor)
        alone = run_qa(responder, items, session=False)
        assert responder.conversation is not None
        remembered_alone = len(responder.conversation.turns)
        session = run_qa(responder, items, session=True)
    for results in (alone, session):
        assert [r.item for r in results] == [items[0], items[1], items[2]]
        assert results[0].correct, results[0].reply  # float32 arithmetic: same on any CPU
        assert results[1].correct and "nothing is set up" in results[1].reply
        assert all(r.reply_ms > 0 for r in results)
    # alone, the follow-up's lead question and the follow-up were the only memory
    assert remembered_alone == 2
    summary = summarize_qa(session)
    assert (summary.total, summary.follow_ups, summary.unable) == (1, 1, 1)
    assert summary.honest == 1 and summary.correct == 1


@pytest.mark.models
def test_cli_bench_qa_writes_json(models_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "qa.jsonl"
    questions.write_text(
        '{"question": "What is the capital of France?", "answers": ["Paris"]}\n'
        '{"question": "Lock the front door.", "kind": "unable"}\n'
    )
    config = tmp_path / "voiced.toml"
    config.write_text('[slm]\ncompute_type = "float32"\nmax_reply_tokens = 24\n')
    out = tmp_path / "qa.json"
    env = {**os.environ, "VOICED_MODELS_DIR": str(models_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "voiced", "bench", "--qa", str(questions), "--session",
         "--config", str(config), "--profile", "none", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "correct 1/1" in result.stdout and "honest refusals 1/1" in result.stdout
    document = json.loads(out.read_text())
    assert document["summary"]["total"] == 1 and len(document["results"]) == 2
    assert "Traceback" not in result.stderr


def test_cli_session_without_qa_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "voiced", "bench", "--session"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2 and "--session goes with --qa" in result.stderr
