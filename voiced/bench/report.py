"""Summaries of a benchmark run: the terminal table and the JSON document."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jiwer

from voiced.bench.corpus import Utterance
from voiced.bench.measure import BaselineResult, StreamResult
from voiced.bench.probes import ProcessFigures
from voiced.intents.normalize import normalize


@dataclass(frozen=True, slots=True)
class Row:
    utterance: Utterance
    stream: StreamResult
    baseline: BaselineResult | None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _wer(refs: list[str], hyps: list[str]) -> float:
    return float(jiwer.wer([normalize(r) or "-" for r in refs], [normalize(h) for h in hyps]))


def summarize(rows: list[Row], process: ProcessFigures | None) -> dict[str, Any]:
    latencies = [r.stream.latency_ms for r in rows if r.stream.latency_ms is not None]
    commands = [r.stream.latency_ms for r in rows
                if r.utterance.kind == "command" and r.stream.latency_ms is not None]  # fmt: skip
    baseline = [r.baseline.latency_ms for r in rows if r.baseline is not None]
    refs = [r.utterance.text for r in rows]
    summary: dict[str, Any] = {
        "utterances": len(rows),
        "replies": sum(1 for r in rows if r.stream.reply and r.stream.latency_ms is not None),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "p50_commands_ms": percentile(commands, 0.5),
        "wer": _wer(refs, [r.stream.transcript for r in rows]),
        "stages_p50_ms": _stage_medians(rows),
    }
    if baseline:
        summary["baseline_p50_ms"] = statistics.median(baseline)
        stock = [r.baseline.transcript if r.baseline else "" for r in rows]
        summary["baseline_wer_stock"] = _wer(refs, stock)
        if summary["p50_ms"]:
            summary["speedup_p50"] = summary["baseline_p50_ms"] / summary["p50_ms"]
    if process is not None:
        summary.update(asdict(process))
    return summary


def _stage_medians(rows: list[Row]) -> dict[str, float]:
    names = ["endpoint", "asr_done", "first_token", "first_clause", "first_audio"]
    medians: dict[str, float] = {}
    for name in names:
        values = [r.stream.stages_ms[name] for r in rows if name in r.stream.stages_ms]
        if values:
            medians[name] = round(statistics.median(values), 1)
    return medians


def format_table(rows: list[Row], summary: dict[str, Any]) -> str:
    lines = [f"{'utterance':<44} {'kind':<8} {'stream ms':>9} {'baseline':>9}  reply"]
    for row in rows:
        stream = row.stream.latency_ms
        base = row.baseline.latency_ms if row.baseline else None
        lines.append(
            f"{row.utterance.text[:43]:<44} {row.utterance.kind:<8} "
            f"{_ms(stream):>9} {_ms(base):>9}  {row.stream.reply[:48]}"
        )
    lines.append("")
    lines.append(_summary_lines(summary))
    return "\n".join(lines)


def _summary_lines(s: dict[str, Any]) -> str:
    out = [
        f"replies: {s['replies']}/{s['utterances']}   WER: {s['wer'] * 100:.1f} %"
        + (f" (stock 30 s window: {s['baseline_wer_stock'] * 100:.1f} %)"
           if "baseline_wer_stock" in s else ""),  # fmt: skip
        f"end of speech -> first audio: p50 {_ms(s['p50_ms'])} ms, p95 {_ms(s['p95_ms'])} ms, "
        f"commands p50 {_ms(s['p50_commands_ms'])} ms",
        "stage medians after end of speech (ms): "
        + ", ".join(f"{k} {v:.0f}" for k, v in s["stages_p50_ms"].items()),
    ]
    if "baseline_p50_ms" in s:
        out.append(
            f"sequential baseline p50 {_ms(s['baseline_p50_ms'])} ms; "
            f"streaming is {s.get('speedup_p50', 0):.2f}x faster (ratio of medians)"
        )
    if "peak_rss_mb" in s:
        out.append(f"peak RSS {s['peak_rss_mb']:.0f} MB, idle-listening CPU "
                   f"{s['idle_cpu_percent']:.1f} % of one core, start to ready "
                   f"{s['start_to_ready_s']:.2f} s")  # fmt: skip
    return "\n".join(out)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def write_json(path: Path, rows: list[Row], summary: dict[str, Any]) -> None:
    document = {
        "summary": summary,
        "utterances": [
            {"name": r.utterance.name, "text": r.utterance.text, "kind": r.utterance.kind,
             "stream": asdict(r.stream), "baseline": asdict(r.baseline) if r.baseline else None}
            for r in rows
        ],
    }  # fmt: skip
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
