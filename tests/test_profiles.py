"""Hardware profiles: the built-in TOML files, detection, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiced.errors import ConfigError
from voiced.service.profiles import (
    builtin_profile_dir,
    detect_profile,
    list_profiles,
    load_profile,
    profile_dirs,
    settings_overrides,
)
from voiced.settings import load_settings

BUILTIN = [builtin_profile_dir()]


def test_builtin_profiles_load() -> None:
    names = list_profiles(BUILTIN)
    assert {"rpi4", "rpi5", "jetson-orin-nano", "generic-x86"} <= set(names)
    for name in names:
        profile = load_profile(name, search_dirs=BUILTIN)
        assert profile.name == name == profile.source.stem
        assert profile.description


def test_builtin_profile_values() -> None:
    rpi4 = load_profile("rpi4", search_dirs=BUILTIN)
    assert (rpi4.asr.model, rpi4.asr.device, rpi4.slm.compute_type) == (
        "whisper-tiny.en", "cpu", "int8",
    )  # fmt: skip
    assert not rpi4.tts.use_cuda
    rpi5 = load_profile("rpi5", search_dirs=BUILTIN)
    assert rpi5.asr.model == "whisper-tiny.en"  # until the benchmark confirms base fits
    assert "whisper-base" in rpi5.source.read_text()
    jetson = load_profile("jetson-orin-nano", search_dirs=BUILTIN)
    assert (jetson.asr.model, jetson.asr.device, jetson.asr.compute_type) == (
        "whisper-base", "cuda", "float16",
    )  # fmt: skip
    assert (jetson.slm.device, jetson.slm.compute_type) == ("cuda", "int8_float16")
    assert jetson.tts.use_cuda
    assert "seeed2micvoicec" in rpi4.source.read_text()
    for name in ("rpi4", "rpi5", "jetson-orin-nano", "generic-x86"):
        profile = load_profile(name, search_dirs=BUILTIN)
        assert profile.wake.engine == "open" and "49 of 54" in profile.source.read_text()


def test_a_profile_chooses_the_wake_engine_and_the_config_wins(tmp_path: Path) -> None:
    path = tmp_path / "small-board.toml"
    path.write_text('[profile]\nname = "small-board"\n[wake]\nengine = "micro"\n')
    base = settings_overrides(load_profile(path))
    assert load_settings(None, base).wake.engine == "micro"
    config = tmp_path / "voiced.toml"
    config.write_text('[wake]\nengine = "both"\n')
    assert load_settings(config, base).wake.engine == "both"


def test_asound_example_shares_the_card() -> None:
    text = (builtin_profile_dir() / "asound.conf.example").read_text()
    for word in ("type dsnoop", "type dmix", "type plug", "ipc_key"):
        assert word in text


def _model(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model"
    path.write_bytes(text.encode() + b"\0")  # the device-tree string is NUL-terminated
    return path


@pytest.mark.parametrize(
    ("model", "tegra", "expected"),
    [
        ("Raspberry Pi 4 Model B Rev 1.4", False, "rpi4"),
        ("Raspberry Pi Compute Module 4 Rev 1.0", False, "rpi4"),
        ("Raspberry Pi 5 Model B Rev 1.0", False, "rpi5"),
        ("NVIDIA Jetson Orin Nano Developer Kit", True, "jetson-orin-nano"),
        ("NVIDIA Jetson AGX Orin", True, "jetson-orin-nano"),  # via "tegra"
        ("Pine64 RockPro64 v2.1", False, None),
    ],
)
def test_detect_profile(tmp_path: Path, model: str, tegra: bool, expected: str | None) -> None:
    tegra_path = tmp_path / "nv_tegra_release"
    if tegra:
        tegra_path.write_text("# R36 (release), REVISION: 4.0\n")
    got = detect_profile(_model(tmp_path, model), tegra_path, search_dirs=BUILTIN)
    assert got == expected


def test_detect_without_device_tree(tmp_path: Path) -> None:
    assert detect_profile(tmp_path / "none", tmp_path / "none2", search_dirs=BUILTIN) is None


def test_user_profile_overrides_and_detects(tmp_path: Path) -> None:
    user_dir = tmp_path / "hardware"
    user_dir.mkdir()
    text = (builtin_profile_dir() / "rpi4.toml").read_text()
    (user_dir / "rpi4.toml").write_text(text.replace("cpu_threads = 3", "cpu_threads = 4"))
    (user_dir / "my-pi4-8gb.toml").write_text(
        text.replace('name = "rpi4"', 'name = "my-pi4-8gb"').replace(
            "match = [", 'match = ["Raspberry Pi 4 Model B Rev 1.5", '
        )
    )
    dirs = [user_dir, *BUILTIN]
    assert load_profile("rpi4", search_dirs=dirs).asr.cpu_threads == 4
    assert "my-pi4-8gb" in list_profiles(dirs)
    model = _model(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    assert detect_profile(model, tmp_path / "none", search_dirs=dirs) == "my-pi4-8gb"


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "board.toml"
    path.write_text('[profile]\ndescription = "x"\n[asr]\nmodel = "whisper-base"\n')
    profile = load_profile(path)
    assert profile.name == "board"
    assert profile.asr.model == "whisper-base"
    assert load_profile(str(path)).source == path


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[asr]\nmodle = "whisper-base"\n', "asr.modle"),
        ("[gpu]\nenabled = true\n", "gpu"),
        ('[profile]\nname = "x"\nmatches = ["a"]\n', "profile.matches"),
        ('[audio]\ninput = "hw:0"\n', "audio.input"),
        ('[wake]\nmodel = "alexa"\n', "wake.model"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert repr(key) in err.value.message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[asr]\ncpu_threads = "3"\n', "asr.cpu_threads"),
        ("[tts]\nuse_cuda = 1\n", "tts.use_cuda"),
        ("[slm]\nintra_threads = true\n", "slm.intra_threads"),
        ('[slm]\ncompute_type = "int4"\n', "slm.compute_type"),
        ('[asr]\ndevice = "gpu"\n', "asr.device"),
        ("[audio]\ncapture_sample_rate_hz = 0\n", "audio.capture_sample_rate_hz"),
        ('[profile]\nmatch = "tegra"\n', "profile.match"),
        ("asr = 3\n", "asr"),
        ('[wake]\nengine = "porcupine"\n', "wake.engine"),
    ],
)
def test_wrong_value_is_named(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert repr(key) in err.value.message


def test_invalid_toml_and_unknown_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[asr\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(path)
    with pytest.raises(ConfigError, match="unknown hardware profile 'cray-1'") as err:
        load_profile("cray-1", search_dirs=BUILTIN)
    assert "rpi4" in err.value.message


def test_profile_dirs_order(tmp_path: Path) -> None:
    dirs = profile_dirs({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/home/x"})
    assert dirs == [tmp_path / "voiced/hardware", Path("/etc/voiced/hardware"), *BUILTIN]
    assert profile_dirs({"HOME": "/home/x"})[0] == Path("/home/x/.config/voiced/hardware")


def test_a_profile_sets_the_echo_canceller_for_its_board(tmp_path: Path) -> None:
    from voiced.service.profiles import settings_overrides
    from voiced.settings import load_settings

    rpi4 = load_profile("rpi4", search_dirs=BUILTIN)
    assert settings_overrides(rpi4)["audio"]["noise_suppression"] is False
    path = tmp_path / "speakerphone.toml"
    path.write_text('[profile]\ndescription = "x"\n[audio]\necho_cancel = "device"\n')
    settings = load_settings(None, settings_overrides(load_profile(path)))
    assert settings.audio.echo_cancel == "device"
    path.write_text('[profile]\ndescription = "x"\n[audio]\necho_cancel = "maybe"\n')
    with pytest.raises(ConfigError, match="echo_cancel"):
        load_settings(None, settings_overrides(load_profile(path)))
