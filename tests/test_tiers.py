"""Language-model tiers: "auto" picks by memory and cores; names and tiers resolve."""

from __future__ import annotations

import pytest

from voiced.errors import ConfigError
from voiced.models.manifest import Role, load_manifest
from voiced.models.tiers import GIB, TIERS, Machine, models_for, resolve_slm_model, tier_for
from voiced.settings import Settings, SlmSettings


@pytest.mark.parametrize(
    ("memory_gib", "cores", "tier"),
    [
        (8, 4, "large"),  # Raspberry Pi 5 8 GB, Jetson Orin Nano
        (8, 2, "medium"),  # room, but two cores cannot start a 1.5B reply in time
        (4, 4, "medium"),  # Raspberry Pi 5 4 GB
        (2, 4, "medium"),  # Raspberry Pi 4 2 GB
        (1, 4, "small"),
        (0, 1, "small"),
    ],
)
def test_auto_picks_the_largest_tier_that_fits(memory_gib: int, cores: int, tier: str) -> None:
    assert tier_for(Machine(memory_gib * GIB, cores)).name == tier


def test_every_tier_is_a_language_model_in_the_manifest() -> None:
    manifest = load_manifest()
    for tier in TIERS:
        spec = manifest.get(tier.model)
        assert spec.role is Role.SLM and spec.tier == tier.name and not spec.unavailable


def test_names_tiers_and_auto_resolve() -> None:
    small = Machine(GIB, 1)
    assert resolve_slm_model("auto", small) == "smollm2-135m-instruct"
    assert resolve_slm_model("large", small) == "qwen2.5-coder-1.5b-instruct"
    assert resolve_slm_model("smollm2-135m-instruct") == "smollm2-135m-instruct"
    with pytest.raises(ConfigError, match="whisper-tiny.en"):
        resolve_slm_model("whisper-tiny.en")  # a model, but not a language model
    with pytest.raises(ConfigError) as raised:
        resolve_slm_model("gpt-5")
    assert raised.value.fix is not None and "auto, small, medium, large" in raised.value.fix


def test_prepare_takes_what_the_config_needs() -> None:
    names = [s.name for s in models_for(Settings(slm=SlmSettings(model="small")))]
    assert names == [
        "whisper-tiny.en", "piper-en_US-joe-medium", "smollm2-135m-instruct", "micro-wakeword"
    ]  # fmt: skip
    off = Settings(slm=SlmSettings(enabled=False))
    assert all(s.role is not Role.SLM for s in models_for(off))
    own = Settings(slm=SlmSettings(path="/opt/my-model"))
    assert all(s.role is not Role.SLM for s in models_for(own))


def test_a_profile_can_pin_the_tier() -> None:
    from voiced.service.profiles import load_profile, settings_overrides
    from voiced.settings import load_settings

    rpi4 = load_settings(None, settings_overrides(load_profile("rpi4")))
    assert resolve_slm_model(rpi4.slm.model, Machine(8 * GIB, 4)) == "qwen2.5-coder-0.5b-instruct"
    rpi5 = load_settings(None, settings_overrides(load_profile("rpi5")))
    assert resolve_slm_model(rpi5.slm.model, Machine(8 * GIB, 4)) == "qwen2.5-coder-1.5b-instruct"
