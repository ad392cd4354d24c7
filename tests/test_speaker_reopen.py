"""The sound-card sink reopens its device after the speaker was lost (fake PortAudio)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.test_audio_devices import FAKE_STREAMS, fake_sd  # noqa: F401 - the fixture
from voiced.audio.sinks import SoundcardSink
from voiced.errors import AudioError
from voiced.pipeline.speaker_watch import Reopenable


def test_reopen_opens_a_new_stream_and_drops_what_was_queued(
    fake_sd: SimpleNamespace,  # noqa: F811
) -> None:
    sink = SoundcardSink(None)
    assert isinstance(sink, Reopenable)
    first = FAKE_STREAMS[0]
    sink.enqueue(bytes(3200), 16000)
    sink.reopen()
    assert first.closed and len(FAKE_STREAMS) == 2 and FAKE_STREAMS[1].started
    assert not sink.is_playing
    sink.close()


def test_reopen_while_the_device_is_gone_raises_audio_error(
    fake_sd: SimpleNamespace,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = SoundcardSink(None)
    monkeypatch.setattr(fake_sd, "query_devices", lambda: [])
    with pytest.raises(AudioError):
        sink.reopen()
    sink.close()
