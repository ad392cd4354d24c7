"""`voiced bench`: the whole benchmark, from corpus to table, JSON and plot."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiced.bench.corpus import Utterance, load_corpus, save_corpus, synthesize_corpus
from voiced.bench.measure import input_pcm, measure_baseline, run_streaming
from voiced.bench.probes import ProcessFigures, process_figures
from voiced.bench.report import Row, format_table, summarize, write_json
from voiced.engines.loader import load_engines
from voiced.models.manifest import Role
from voiced.settings import Settings
from voiced.speech_synth import write_wav


@dataclass(frozen=True, slots=True)
class BenchOptions:
    settings: Settings
    models_dir: Path
    config: Path | None = None
    corpus: Path | None = None
    limit: int | None = None
    baseline: bool = True
    process: bool = True
    json_path: Path | None = None
    plot_path: Path | None = None
    save_corpus: Path | None = None


def run_bench(options: BenchOptions) -> dict[str, Any]:
    given = load_corpus(options.corpus)[: options.limit or None] if options.corpus else None
    engines = load_engines(options.settings, options.models_dir,
                           {Role.ASR, Role.TTS, Role.SLM})  # fmt: skip
    assert engines.tts is not None
    utterances = given or synthesize_corpus(engines.tts, options.limit)
    if options.save_corpus:
        save_corpus(utterances, options.save_corpus)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="voiced-bench-") as tmp:
        for utt in utterances:
            wav = Path(tmp, f"{utt.name}.wav")
            write_wav(wav, input_pcm(utt))
            stream = run_streaming(engines, options.settings, utt, str(wav))
            base = measure_baseline(engines, options.settings, utt) if options.baseline else None
            rows.append(Row(utt, stream, base))
            print(f"  {utt.name} {stream.latency_ms or float('nan'):7.0f} ms  {utt.text}",
                  file=sys.stderr, flush=True)  # fmt: skip
        process = _process(options, utterances, Path(tmp)) if options.process else None
    summary = summarize(rows, process)
    print(format_table(rows, summary))
    if options.json_path:
        write_json(options.json_path, rows, summary)
    if options.plot_path:
        from voiced.bench.plot import write_plot

        write_plot(options.plot_path, rows)
    return summary


def _process(options: BenchOptions, utterances: list[Utterance], tmp: Path) -> ProcessFigures:
    question = next((u for u in utterances if u.kind == "question"), utterances[0])
    wav = tmp / "probe.wav"
    write_wav(wav, input_pcm(question))
    print("  measuring start-to-ready, idle CPU and peak RSS of `voiced run` ...",
          file=sys.stderr, flush=True)  # fmt: skip
    return process_figures(options.models_dir, options.config, wav)
