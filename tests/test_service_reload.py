"""Secrets for intents' webhooks, and ``systemctl reload`` (SIGHUP) re-reading the
intents and hooks of a running daemon without dropping its audio (issue 13)."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_process import spawn_daemon
from tests.test_mqtt import free_port
from voiced.errors import ConfigError
from voiced.intents.user import load_user_intents

START_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 30.0


def intent_with_header(header: object) -> dict[str, Any]:
    return {"name": "garage", "sentences": ["open the garage door"], "reply": "Opening.",
            "http": {"url": "http://127.0.0.1:8123/api/webhook/garage",
                     "headers": {"Authorization": header}}}  # fmt: skip


def test_an_intent_header_can_come_from_a_root_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "ha_token"
    token.write_text("eyJ-long-lived-token\n")
    token.chmod(0o600)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    spec = {"file": str(token), "prefix": "Bearer "}
    (intent,) = load_user_intents([intent_with_header(spec)])
    assert intent.http is not None
    assert intent.http.headers == {"Authorization": "Bearer eyJ-long-lived-token"}
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # LoadCredential=
    (intent,) = load_user_intents([intent_with_header({"file": "ha_token"})])
    assert intent.http is not None
    assert intent.http.headers["Authorization"] == "eyJ-long-lived-token"
    for bad in ({"file": "missing"}, {"prefix": "x"}, {"file": 3}, {"file": "a", "x": 1}, 5):
        with pytest.raises(ConfigError, match=r"http\.headers\.Authorization"):
            load_user_intents([intent_with_header(bad)])
    token.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_user_intents([intent_with_header({"file": str(token)})])


def _ask(port: int, text: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"http://127.0.0.1:{port}/api/ask", data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
        return body


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(  # noqa: S310 (loopback)
            f"http://127.0.0.1:{port}/readyz", timeout=5
        ) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


CONFIG = """\
[slm]
enabled = false
[http]
listen = "127.0.0.1:{port}"
"""
RELOADED = CONFIG + """
[[intent]]
name = "porch"
sentences = ["switch on the porch light"]
reply = "Porch light on."

[[hook]]
on = "reply"
command = ["{python}", "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))",
           "{out}", "hook: {{reply}}"]
"""


@pytest.mark.models
def test_sighup_rereads_intents_and_hooks_and_keeps_the_audio(
    models_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "hook.txt"
    config = tmp_path / "voiced.toml"
    config.write_text(CONFIG.format(port=port))
    log = tmp_path / "daemon.log"
    daemon = spawn_daemon(config, models_dir, log, log_level="INFO")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(port):
            assert daemon.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.1)
        # before the reload nothing is set up for the porch: a true "I can't"
        before = _ask(port, "Switch on the porch light.")
        assert before["intent"] == "unsupported_action", before
        config.write_text("[[intent]]\nname = 3\n")  # a broken config changes nothing
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while "reload refused" not in log.read_text():
            assert time.monotonic() < deadline, "the broken config was not reported"
            time.sleep(0.05)
        assert _ready(port) and _ask(port, "What time is it?")["intent"] == "time"
        config.write_text(RELOADED.format(port=port, python=sys.executable, out=out))
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while (reply := _ask(port, "Switch on the porch light."))["intent"] != "porch":
            assert time.monotonic() < deadline, reply
            time.sleep(0.1)
        assert reply["reply"] == "Porch light on."
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not (out.exists() and "hook: Porch light on." in out.read_text()):
            assert time.monotonic() < deadline, "the reloaded hook did not run"
            time.sleep(0.1)
        assert _ready(port), "the audio kept flowing through both reloads"
        assert _ask(port, "What time is it?")["intent"] == "time", "built-ins stay"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=CALL_TIMEOUT_S)
    stderr = log.read_text()
    assert daemon.returncode == 0, stderr[-3000:]
    assert "reload refused" in stderr and "intent" in stderr
    assert "Traceback" not in stderr
    assert stderr.count("reloaded ") == 1
