"""Strict configuration: presets, overrides, and errors that name the key."""

from __future__ import annotations

import pytest
from conftest import REPO

from shared.config import (
    Config,
    dump_config,
    load_config,
    parse_override,
    read_yaml,
)
from shared.errors import ConfigError
from shared.model.checkpoint import load_model
from shared.model.jscc import latent_channels
from shared.model.registry import build_model


def test_the_dataclass_defaults_are_the_default_preset() -> None:
    """One source of defaults: the ``default`` preset sets nothing, and the other presets
    set only what differs from it."""
    assert read_yaml("default") == {}
    assert load_config("default") == load_config(None) == Config()
    default = load_config("default")
    assert default.model.cbr == pytest.approx(1 / 16)
    assert default.model.widths == (32, 64, 192)
    assert default.data.image_height == 128 and default.data.image_width == 256
    assert load_config("tiny").model.widths == (8, 16, 16)
    assert load_config("small").model.widths == (16, 32, 96)
    defaults = Config().to_dict()
    for preset in ("small", "tiny"):
        for section, values in read_yaml(preset).items():
            for key, value in values.items():
                assert defaults[section][key] != value, f"{preset}: {section}.{key}"


def test_overrides_are_parsed_as_yaml() -> None:
    cfg = load_config(
        "tiny",
        [
            "model.time_steps=8",
            "model.widths=[2, 4, 4]",
            "channel.kind=rayleigh_block",
            "train.val_snrs=[0, 5]",
        ],
    )
    assert cfg.model.time_steps == 8
    assert cfg.model.widths == (2, 4, 4)
    assert cfg.channel.kind == "rayleigh_block"
    assert cfg.train.val_snrs == (0.0, 5.0)
    assert parse_override("a.b=c=d") == (["a", "b"], "c=d")


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.time_stepz=4", ["model.time_stepz", "unknown", "time_steps"]),
        ("model.time_steps=0", ["model.time_steps", "0", ">= 1"]),
        ("model.time_steps=four", ["model.time_steps", "four", "integer"]),
        ("model.time_steps=true", ["model.time_steps", "True", "integer"]),
        ("channel.kind=rayleigh", ["channel.kind", "rayleigh", "awgn", "rician_block"]),
        ("channel.csi=partial", ["channel.csi", "perfect", "none"]),
        ("model.cbr=0", ["model.cbr", "> 0"]),
        ("channel.flip_prob=0.7", ["channel.flip_prob", "<= 0.5"]),
        ("channel.snr_db=.nan", ["channel.snr_db", "nan", "finite"]),
        ("channel.rician_k=.inf", ["channel.rician_k", "inf", "finite"]),
        ("model.widths=[4, x]", ["model.widths[1]", "integer"]),
        ("model.res_blocks=[0, 1]", ["model.res_blocks", "one entry per scale"]),
        ("train.snr_min_db=20", ["train.snr_min_db", "snr_max_db"]),
        ("model.fusion_scales=[5]", ["model.fusion_scales", "0..2"]),
        ("model=3", ["model", "mapping"]),
        ("nosection", ["section.key=value"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(
    override: str, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tiny", [override])
    for word in words:
        assert word in str(info.value)


def test_bit_channels_need_a_bit_latent() -> None:
    cfg = load_config("default", ["channel.kind=bsc"])
    with pytest.raises(ConfigError, match="channel.kind.*spike_bpsk"):
        build_model(cfg.model, cfg.channel)


def test_bad_yaml_file_and_unknown_preset(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="presets: .*default.*tiny"):
        load_config("no_such_preset")


def test_dump_round_trips(tmp_path) -> None:
    cfg = load_config("default", ["model.kind=cnn"])
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_latent_channels_follow_the_bandwidth_ratio() -> None:
    cfg = load_config("default")
    assert latent_channels(cfg.model) == 6
    assert latent_channels(load_config("default", ["model.cbr=0.03125"]).model) == 3
    bits = load_config(
        "default",
        [
            "model.latent=spike_bpsk",
            "model.widths=[8,8,8,8]",
            "model.res_blocks=[0,0,0,0]",
        ],
    )
    assert latent_channels(bits.model) == 6  # 6 * rho * 8^2 / T
    with pytest.raises(ConfigError, match="model.cbr"):
        latent_channels(load_config("default", ["model.cbr=0.05"]).model)


@pytest.mark.parametrize(
    ("file", "kind"), [("snn_v4.pt", "snn"), ("cnn_twin_v2.pt", "cnn")]
)
def test_bundled_models_are_built_with_the_default_model_section(
    file: str, kind: str
) -> None:
    """``--config default`` reproduces the bundled architecture, and the weights fit it."""
    expected = load_config("default", [f"model.kind={kind}"])
    _, stored = load_model(REPO / "models" / file, expected=expected)
    assert stored.model == expected.model
