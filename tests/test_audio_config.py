"""``[audio] input``/``output`` in the config (issue 13): the same syntax as
``--input``/``--output``, which override them; ALSA and PortAudio device names;
the default config paths read without ``--config``."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_audio_devices import fake_sd  # noqa: F401 (a fixture used here)
from tests.test_audio_io import TIMEOUT_S
from tests.test_staying_up import voiced
from voiced.audio import devices
from voiced.audio.devices import alsa_hw_name, device_of, find_device, is_device_spec
from voiced.audio.sinks import open_sink
from voiced.audio.sources import SilenceSource, SoundcardSource, WavFileSource, open_source
from voiced.cli.common import default_config_path
from voiced.engines.tts import PiperTts
from voiced.errors import AudioError
from voiced.speech_synth import compose, write_wav


def test_one_spec_syntax_for_devices() -> None:
    assert device_of(None) is None and device_of("default") is None
    assert device_of(" device:USB Mic ") == "USB Mic" and device_of("device:3") == 3
    assert device_of("2") == 2
    assert device_of("hw:CARD=seeed2micvoicec,DEV=0") == "hw:CARD=seeed2micvoicec,DEV=0"
    assert device_of("USB Audio Device") == "USB Audio Device"
    for spec in ("-", "null", "NULL", "in.wav", "/tmp/x.WAV"):
        assert not is_device_spec(spec)
    for bad in ("", "   ", "device:", "x" * 5000, "a\x00b", "song.mp3", "/dev/snd/pcmC0D0c",
                "./clip.flac", "-"):  # fmt: skip
        with pytest.raises(AudioError):
            device_of(bad)
    for spec, kind in (("null", SilenceSource), ("hw:CARD=USB,DEV=0", SoundcardSource),
                       ("default", SoundcardSource), ("x.wav", WavFileSource)):  # fmt: skip
        assert isinstance(open_source(spec, True), kind), spec
    assert open_source("hw:1,0", True).device == "hw:1,0"  # type: ignore[attr-defined]
    with pytest.raises(AudioError, match="neither a device nor a .wav"):
        open_sink("out.ogg", True)


def test_alsa_card_names_find_portaudio_devices(
    fake_sd: SimpleNamespace,  # noqa: F811
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    asound = tmp_path / "asound"
    asound.mkdir()
    (asound / "card1").mkdir()
    (asound / "seeed2micvoicec").symlink_to("card1")
    (asound / "weird").symlink_to("elsewhere")
    monkeypatch.setattr(devices, "ASOUND", asound)
    assert alsa_hw_name("hw:CARD=seeed2micvoicec,DEV=0", asound) == "hw:1,0"
    assert alsa_hw_name("plughw:CARD=seeed2micvoicec", asound) == "hw:1,0"
    assert alsa_hw_name("hw:2,3", asound) == "hw:2,3"
    assert alsa_hw_name("hw:CARD=missing,DEV=0", asound) is None
    assert alsa_hw_name("hw:CARD=weird", asound) is None
    assert alsa_hw_name("USB Mic", asound) is None
    entries = fake_sd.query_devices()
    entries.append({"name": "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 "
                    "(hw:1,0)", "max_input_channels": 2, "max_output_channels": 2,
                    "default_samplerate": 48000.0, "hostapi": 0})  # fmt: skip
    fake_sd.query_devices = lambda: entries
    for spec in ("hw:CARD=seeed2micvoicec,DEV=0", "plughw:1,0", "seeed-2mic", "2"):
        assert find_device(device_of(spec), "input").index == 2, spec
    assert find_device(device_of("default"), "input").name == "USB Mic"
    assert find_device(device_of("usb mic"), "input").name == "USB Mic"
    with pytest.raises(AudioError, match="available input devices"):
        find_device(device_of("hw:CARD=missing,DEV=0"), "input")


def test_default_config_paths(tmp_path: Path) -> None:
    system = tmp_path / "etc-voiced.toml"
    home = tmp_path / "home"
    user = home / ".config/voiced/voiced.toml"
    assert default_config_path({"HOME": str(home)}, system) is None
    system.write_text("")
    assert default_config_path({"HOME": str(home)}, system) == system
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert default_config_path({"HOME": str(home)}, system) == user
    xdg = tmp_path / "xdg"
    assert default_config_path({"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}, system) == system
    assert default_config_path({"VOICED_CONFIG": "/x.toml", "HOME": str(home)}, system) == Path(
        "/x.toml"
    )
    assert default_config_path({"HOME": "relative"}, system) == system


@pytest.mark.models
def test_the_config_alone_names_the_input_and_output(
    tts: PiperTts, models_dir: Path, tmp_path: Path
) -> None:
    """Reproduced in issue 13: with only the config naming a WAV in and out, the
    daemon tried the default sound card and exited."""
    heard = tmp_path / "in.wav"
    write_wav(heard, compose(tts, [0.3, "What time is it?", 1.5]))
    said = tmp_path / "out.wav"
    config = tmp_path / "voiced.toml"
    config.write_text(f'[audio]\ninput = "{heard}"\noutput = "{said}"\n[slm]\nenabled = false\n')
    result = voiced("run", "--config", str(config), "--no-wake", "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stderr
    with wave.open(str(said), "rb") as reply:
        assert reply.getnframes() > 16000 * 0.5, "the time was spoken into the configured WAV"
    said.unlink()
    result = voiced("run", "--config", str(config), "--no-wake", "--output", "null",
                    "--models-dir", str(models_dir))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not said.exists(), "--output overrides [audio] output"
    config.write_text('[audio]\ninput = "song.mp3"\n')
    result = voiced("run", "--config", str(config), "--models-dir", str(models_dir))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "neither a device nor a .wav" in result.stderr




def test_the_profile_capture_rate_opens_the_microphone(
    fake_sd: SimpleNamespace,  # noqa: F811
) -> None:
    """The profiles' capture_sample_rate_hz was read by nothing; now it is the rate
    the microphone is opened at, and a device that refuses it opens at its own."""
    from tests.test_audio_devices import FAKE_STREAMS, STREAM_OPENED, FakeStream
    from voiced.service.profiles import load_profile, settings_overrides

    assert settings_overrides(load_profile("rpi4"))["audio"]["capture_sample_rate_hz"] == 16000

    async def first_rate(source: SoundcardSource) -> int:
        agen = source.frames()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.wait_for(asyncio.to_thread(STREAM_OPENED.wait, TIMEOUT_S), TIMEOUT_S)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agen.aclose()
        return FAKE_STREAMS[-1].samplerate

    def fresh() -> None:
        FAKE_STREAMS.clear()
        STREAM_OPENED.clear()

    fresh()
    source = open_source(None, True, capture_rate_hz=16000)
    assert isinstance(source, SoundcardSource)
    assert asyncio.run(first_rate(source)) == 16000 and source.opened_rate_hz == 16000

    class Picky(FakeStream):
        def __init__(self, *, samplerate: int, **kwargs: object) -> None:
            if samplerate != 48000:
                raise ValueError(f"Invalid sample rate {samplerate}")
            super().__init__(samplerate=samplerate, **kwargs)  # type: ignore[arg-type]

    fake_sd.InputStream = Picky
    fresh()
    picky = SoundcardSource("USB Mic", sample_rate_hz=16000)
    assert asyncio.run(first_rate(picky)) == 48000 and picky.opened_rate_hz == 48000


def test_config_check_names_a_malformed_audio_device(tmp_path: Path) -> None:
    from voiced.control.config_check import check_config

    config = tmp_path / "voiced.toml"
    config.write_text('[audio]\ninput = "song.mp3"\noutput = "hw:CARD=USB,DEV=0"\n')
    (problem,) = check_config(config)
    assert "line 2" in problem and "audio.input" in problem and "neither a device" in problem
    config.write_text('[audio]\ninput = "x.wav"\noutput = "null"\n')
    assert check_config(config) == []


def test_doctor_warns_of_a_secret_in_a_world_readable_config(tmp_path: Path) -> None:
    from voiced.service.doctor import check_secrets
    from voiced.settings import load_settings

    config = tmp_path / "voiced.toml"
    config.write_text('[http]\ntoken = "s3cret"\n[mqtt]\nhost = "b"\npassword = "p"\n')
    config.chmod(0o644)
    finding = check_secrets(config, load_settings(config))
    assert finding.status == "warn" and "http.token and mqtt.password" in finding.detail
    assert "/etc/voiced/credentials" in (finding.fix or "")
    config.chmod(0o600)
    assert check_secrets(config, load_settings(config)).status == "ok"
    config.write_text('[http]\ntoken_file = "http_token"\n')
    config.chmod(0o644)
    assert check_secrets(config, load_settings(config)).status == "ok"
