"""Log lines: one per event, JSON when asked, and no transcript above DEBUG."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.pipeline_harness import run_pipeline, voice_turns
from voiced.engines.loader import Engines
from voiced.engines.tts import PiperTts
from voiced.logs import JsonFormatter
from voiced.settings import Settings
from voiced.speech_synth import compose


def test_json_log_line_is_one_parseable_object() -> None:
    record = logging.LogRecord("voiced.x", logging.WARNING, __file__, 1, "mic lost: %s",
                               ("unplugged\nagain",), None)  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["msg"] == "mic lost: unplugged\nagain"


@pytest.mark.models
@pytest.mark.parametrize(("level", "shown"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_transcripts_are_logged_only_at_debug(
    level: int, shown: bool, engines: Engines, tts: PiperTts, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    speech = compose(tts, [0.3, "What day is it today?", 1.0])
    with caplog.at_level(level, logger="voiced"):
        run = run_pipeline(engines, Settings(), speech, tmp_path, wake_mode=False,
                           realtime=False)  # fmt: skip
    assert [t.intent for t in voice_turns(run)] == ["day"]
    assert ("what day is it" in caplog.text.lower()) is shown


@pytest.mark.parametrize(
    ("env", "value", "rc", "says"),
    [
        ("VOICED_LOG_LEVEL", "info", 0, ""),
        ("VOICED_LOG_LEVEL", "verbose", 2, "$VOICED_LOG_LEVEL is 'VERBOSE'; use one of DEBUG"),
        ("VOICED_LOG_FORMAT", "JSON", 0, ""),
        ("VOICED_LOG_FORMAT", "xml", 2, "$VOICED_LOG_FORMAT is 'xml'; use one of text, json"),
    ],
)
def test_log_settings_from_the_environment_are_checked(
    env: str, value: str, rc: int, says: str
) -> None:
    """Lower-case levels are fine; anything else is a usage error, never a traceback."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "voiced", "models", "list"], capture_output=True, text=True,
        env={**os.environ, env: value}, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == rc, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
