"""A small run of `voiced bench` with the real models (the full run is done by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.models


def bench(*args: str, models_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOICED_MODELS_DIR": str(models_dir)}
    return subprocess.run([sys.executable, "-m", "voiced", "bench", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)  # fmt: skip


def test_bench_smoke(models_dir: Path, tmp_path: Path) -> None:
    out_json, out_png, corpus = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "corpus"
    result = bench("--limit", "2", "--json", str(out_json), "--plot", str(out_png),
                   "--save-corpus", str(corpus), models_dir=models_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "end of speech -> first audio" in result.stdout
    assert "x faster (ratio of medians)" in result.stdout
    document = json.loads(out_json.read_text())
    summary = document["summary"]
    assert summary["utterances"] == 2 and summary["replies"] == 2
    assert summary["p50_ms"] > 0 and summary["baseline_p50_ms"] > 0
    assert summary["peak_rss_mb"] > 100 and summary["start_to_ready_s"] > 0
    assert 0 <= summary["idle_cpu_percent"] < 200
    for entry in document["utterances"]:
        assert entry["stream"]["transcript"] and entry["stream"]["reply"]
        assert entry["stream"]["stages_ms"]["first_audio"] > 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = (corpus / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 2

    again = bench("--corpus", str(corpus), "--limit", "1", "--no-baseline", "--no-process",
                  models_dir=models_dir)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "replies: 1/1" in again.stdout


@pytest.mark.parametrize(
    "manifest",
    ['{"audio": "../../etc/passwd", "text": "x", "kind": "command"}', "not json", ""],
    ids=["path-escape", "malformed", "empty"],
)
def test_bad_corpus_is_a_clear_error(manifest: str, models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text(manifest)
    result = bench("--corpus", str(tmp_path), "--no-process", models_dir=models_dir)
    assert result.returncode == 2
    assert "error[usage]" in result.stderr and "Traceback" not in result.stderr


def test_without_jiwer_the_bench_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """jiwer is the bench extra's, not voiced's: a plain install gets a clear error."""
    from voiced.cli.main import main

    monkeypatch.setitem(sys.modules, "jiwer", None)  # import jiwer raises ImportError
    code = main(["bench", "--room", "kitchen", "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "jiwer" in err and "voiced[bench]" in err and "Traceback" not in err
