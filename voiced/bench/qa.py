"""`voiced bench --qa`: answer quality, measured like latency.

A question set (JSONL: ``{"question", "answers": [...], "after"?}``, or
``{"question", "kind": "unable"}``) is asked through the real responder (local
intents, else the language model). A reply is correct when one of the accepted
answers appears in it as whole words, compared lower-case with punctuation
removed ("fifty-six" matches "fifty six"). Items with ``after`` are follow-ups:
the question named there is asked first, and the follow-up is scored on its own
line, since only conversation memory can answer it. ``unable`` items ask for
something the device cannot do; the reply is right when it says so and claims
nothing.

Without ``session`` the memory is cleared before every question (and before each
follow-up's lead question); with it, everything is one conversation in order,
which is what shows a model starting to copy its earlier replies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import statistics
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from voiced.errors import UsageError
from voiced.intents.base import IntentHandler, TimerView
from voiced.intents.builtin import BuiltinIntents
from voiced.intents.user import load_user_intents
from voiced.pipeline.responder import Responder
from voiced.settings import Settings

MAX_QUESTIONS = 1000
MAX_TEXT_CHARS = 500
SESSION_STEP_S = 10.0
"""Stream-clock time between questions of a session: well inside the memory's idle reset."""


KINDS = ("fact", "unable")
_DECLINES = re.compile(
    r"\b(?:can ?not|can't|cannot|unable|not able|don't have|do not have|no device|"
    r"nothing is set up|not set up|isn't set up|not connected|not possible)\b"
)
_CLAIMS = re.compile(
    r"\b(?:i've|i have|i'll|i will|i'm|i am) (?!not\b|unable\b|sorry\b|afraid\b)"
    r"|\b(?:done|turning|locking|unlocking|playing|closing|opening|sending|adding|setting)\b"
    r"|^(?:okay|ok|sure|alright)\b"
)
"""First-person claims of having acted ("I've turned...", "Sure, ..."), not a refusal."""


@dataclass(frozen=True, slots=True)
class QaItem:
    question: str
    answers: tuple[str, ...]
    after: str | None = None
    """For a follow-up: the question asked just before it."""
    kind: str = "fact"
    """"fact" (scored by ``answers``) or "unable" (must decline, claim nothing)."""


@dataclass(frozen=True, slots=True)
class QaResult:
    item: QaItem
    reply: str
    correct: bool
    first_text_ms: float | None
    """Question handed over to the first reply text."""
    reply_ms: float
    """Question handed over to the whole reply."""


def _words(text: str) -> str:
    return " " + " ".join(re.sub(r"[^\w]+", " ", text.lower()).split()) + " "


def is_correct(reply: str, answers: tuple[str, ...]) -> bool:
    """True when one accepted answer occurs in ``reply`` as whole words."""
    text = _words(reply)
    return any(_words(answer) in text for answer in answers if answer.strip())


def is_honest_refusal(reply: str) -> bool:
    """True when ``reply`` says the device cannot do it and claims nothing was done."""
    text = reply.lower().replace("\u2019", "'")
    return bool(_DECLINES.search(text)) and not _CLAIMS.search(text)


def score(item: QaItem, reply: str) -> bool:
    return is_honest_refusal(reply) if item.kind == "unable" else is_correct(reply, item.answers)


def _fail(where: str, problem: str) -> UsageError:
    return UsageError(f"question set {where}: {problem}")


def _item(line: str, where: str) -> QaItem:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise _fail(where, f"not JSON ({err.msg})") from err
    if not isinstance(raw, dict) or set(raw) - {"question", "answers", "after", "kind"}:
        raise _fail(where, 'expected an object with "question", "answers", "after", "kind"')
    question, answers, after = raw.get("question"), raw.get("answers"), raw.get("after")
    kind = raw.get("kind", "fact")
    if not isinstance(question, str) or not 0 < len(question.strip()) <= MAX_TEXT_CHARS:
        raise _fail(where, f'"question" must be a text of 1 to {MAX_TEXT_CHARS} characters')
    if kind not in KINDS:
        raise _fail(where, f'"kind" must be one of {", ".join(KINDS)}')
    if kind == "unable":
        if answers is not None or after is not None:
            raise _fail(where, 'an "unable" item has no "answers" or "after"')
        return QaItem(question.strip(), (), None, "unable")
    if (
        not isinstance(answers, list)
        or not answers
        or not all(isinstance(a, str) and 0 < len(a.strip()) <= MAX_TEXT_CHARS for a in answers)
    ):
        raise _fail(where, '"answers" must be a non-empty list of non-empty texts')
    if after is not None and (not isinstance(after, str) or not 0 < len(after) <= MAX_TEXT_CHARS):
        raise _fail(where, '"after" must be a text of 1 to 500 characters')
    return QaItem(question.strip(), tuple(answers), after)


def load_questions(path: Path | None) -> list[QaItem]:
    """The question set at ``path``, or the built-in one: 62 questions, 5 follow-ups
    and 14 requests the device cannot carry out."""
    if path is None:
        text = resources.files("voiced.bench").joinpath("qa_questions.jsonl").read_text("utf-8")
        name = "(built in)"
    else:
        try:
            if path.stat().st_size > 4_000_000:
                raise _fail(str(path), "is larger than 4 MB")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read the question set {path}: {err}") from err
        name = str(path)
    items = [
        _item(line, f"{name} line {number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not items:
        raise _fail(name, "has no questions")
    if len(items) > MAX_QUESTIONS:
        raise _fail(name, f"has more than {MAX_QUESTIONS} questions")
    return items


async def _ask(responder: Responder, text: str, now_s: float) -> tuple[str, float | None, float]:
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for delta in responder.respond(text, now_s).deltas:
        if first is None and delta.strip():
            first = (time.perf_counter() - start) * 1000
        parts.append(delta)
    return "".join(parts).strip(), first, (time.perf_counter() - start) * 1000


async def _run(responder: Responder, items: list[QaItem], session: bool) -> list[QaResult]:
    results: list[QaResult] = []
    now_s = 0.0
    ordered = [i for i in items if i.after is None] + [i for i in items if i.after is not None]
    for item in ordered:
        if not session and responder.conversation is not None:
            responder.conversation.reset()
        if item.after is not None:
            now_s += SESSION_STEP_S
            await _ask(responder, item.after, now_s)
        now_s += SESSION_STEP_S
        reply, first_ms, total_ms = await _ask(responder, item.question, now_s)
        results.append(QaResult(item, reply, score(item, reply), first_ms, total_ms))
    return results


def run_qa(responder: Responder, items: list[QaItem], *, session: bool) -> list[QaResult]:
    """Ask every item through ``responder`` (blocking; runs its own event loop)."""
    return asyncio.run(_run(responder, items, session))


class BenchControls:
    """What the built-in intents may do during a QA run: nothing that lasts."""

    def __init__(self) -> None:
        self.volume = 1.0

    def timers(self) -> list[TimerView]:
        """Intents only read the world now (their effects run in the pipeline)."""
        return []

    def local_time(self) -> tuple[int, int, int, int, int]:
        now = time.localtime()
        return now.tm_hour, now.tm_min, now.tm_wday, now.tm_mday, now.tm_mon


@dataclass(frozen=True, slots=True)
class QaSummary:
    correct: int
    total: int
    follow_ups_correct: int
    follow_ups: int
    honest: int
    """Requests the device cannot carry out, answered with a plain "I can't"."""
    unable: int
    distinct_replies: int
    first_text_ms_p50: float | None
    reply_ms_p50: float


def summarize_qa(results: list[QaResult]) -> QaSummary:
    main = [r for r in results if r.item.after is None and r.item.kind == "fact"]
    follow = [r for r in results if r.item.after is not None]
    unable = [r for r in results if r.item.kind == "unable"]
    firsts = [r.first_text_ms for r in results if r.first_text_ms is not None]
    return QaSummary(
        correct=sum(r.correct for r in main),
        total=len(main),
        follow_ups_correct=sum(r.correct for r in follow),
        follow_ups=len(follow),
        honest=sum(r.correct for r in unable),
        unable=len(unable),
        distinct_replies=len({r.reply for r in results}),
        first_text_ms_p50=statistics.median(firsts) if firsts else None,
        reply_ms_p50=statistics.median(r.reply_ms for r in results) if results else 0.0,
    )


def format_qa(results: list[QaResult], summary: QaSummary, label: str) -> str:
    lines = [f"{'':1} {'question':44} reply"]
    for r in results:
        mark = "+" if r.correct else "-"
        lines.append(f"{mark} {r.item.question[:44]:44} {r.reply[:90]}")
    first = f"{summary.first_text_ms_p50:.0f}" if summary.first_text_ms_p50 is not None else "-"
    lines += [
        "",
        f"{label}: correct {summary.correct}/{summary.total}, follow-ups "
        f"{summary.follow_ups_correct}/{summary.follow_ups}, honest refusals "
        f"{summary.honest}/{summary.unable}, distinct replies "
        f"{summary.distinct_replies}/{len(results)}",
        f"first text p50 {first} ms, whole reply p50 {summary.reply_ms_p50:.0f} ms",
    ]
    return "\n".join(lines)


def qa_json(results: list[QaResult], summary: QaSummary, label: str) -> dict[str, object]:
    return {
        "label": label,
        "summary": asdict(summary),
        "results": [
            {"question": r.item.question, "kind": r.item.kind, "after": r.item.after,
             "reply": r.reply, "correct": r.correct, "first_text_ms": r.first_text_ms,
             "reply_ms": r.reply_ms}
            for r in results
        ],
    }  # fmt: skip


def run_qa_bench(
    settings: Settings, models_dir: Path, questions: Path | None, *, session: bool,
    json_path: Path | None = None,
) -> QaSummary:  # fmt: skip
    """`voiced bench --qa`: load the language model, ask the set, print the table."""
    from voiced.engines.loader import load_engines
    from voiced.models.manifest import Role

    items = load_questions(questions)
    engines = load_engines(settings, models_dir, {Role.SLM})
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="voiced-slm")
    try:
        # The config's own intents too (their actions never run here), as the daemon has.
        handlers: list[IntentHandler] = [*load_user_intents(settings.intent), BuiltinIntents()]
        responder = Responder(handlers, engines.slm, settings.slm, BenchControls(), executor)
        results = run_qa(responder, items, session=session)
    finally:
        executor.shutdown(wait=True)
    summary = summarize_qa(results)
    label = f"{engines.paths.names.get('slm', '?')}, {'one session' if session else 'alone'}"
    print(format_qa(results, summary, label))
    if json_path is not None:
        text = json.dumps(qa_json(results, summary, label), indent=2)
        json_path.write_text(text + "\n", encoding="utf-8")
    return summary
