"""Checkpoints of every format shipped so far load as they were trained, through the
versioned compatibility table; newer or foreign files are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO

from shared.config import config_from_stored, load_config
from shared.errors import CheckpointError
from shared.model.checkpoint import (
    CHECKPOINT_FORMAT,
    STORED_DEFAULTS,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from shared.model.registry import build_model

STORED = REPO / "tests" / "expected" / "stored_configs"


@pytest.mark.parametrize(
    ("file", "twin_gradient", "widths"),
    [
        ("ce5458c_snn_default.json", "exact", (16, 32, 96)),
        ("cfc484f_snn_default.json", "surrogate", (32, 64, 192)),
    ],
)
def test_shipped_formats_load_as_they_were_trained(
    tmp_path: Path, file: str, twin_gradient: str, widths: tuple[int, ...]
) -> None:
    """The stored configs of the shipped models (``shipped_as`` in each file), written
    into a checkpoint of their format with weights of their architecture."""
    shipped = json.loads((STORED / file).read_text())
    stored_model = shipped["config"]["model"]
    cfg = config_from_stored(shipped["config"], STORED_DEFAULTS[shipped["format"]])
    assert cfg.model.twin_gradient == twin_gradient and cfg.model.widths == widths
    for key, value in stored_model.items():
        assert cfg.to_dict()["model"][key] == value, key
    weights = build_model(cfg.model).state_dict()
    path = tmp_path / "old.pt"
    torch.save(
        {"format": shipped["format"], "model": weights, "config": shipped["config"]},
        path,
    )
    model, loaded = load_model(path)
    assert loaded.model == cfg.model
    assert torch.equal(
        model.state_dict()["decoder.readout.weight"], weights["decoder.readout.weight"]
    )


def test_the_table_restores_format_1_defaults_that_changed() -> None:
    """A format-1 config without a key means that key's value of the time, not today's."""
    assert load_config("default").model.twin_gradient == "surrogate"
    bare = config_from_stored({"model": {}}, STORED_DEFAULTS[1])
    assert bare.model.widths == (24, 48, 96) and bare.model.twin_gradient == "exact"
    assert bare.train.grad_clip == 1.0 and bare.train.memory_format == "contiguous"
    assert config_from_stored({"model": {}}, STORED_DEFAULTS[2]) == load_config(None)


def test_new_checkpoints_store_every_key_in_the_current_format(tmp_path: Path) -> None:
    cfg = load_config("tiny")
    path = tmp_path / "new.pt"
    save_checkpoint(
        path, {"model": build_model(cfg.model).state_dict(), "config": cfg.to_dict()}
    )
    ckpt = load_checkpoint(path)
    assert "sha256" not in ckpt  # checked and removed on loading
    assert ckpt["format"] == CHECKPOINT_FORMAT == max(STORED_DEFAULTS)
    assert STORED_DEFAULTS[CHECKPOINT_FORMAT] == {}
    assert load_model(path)[1] == cfg


def test_unknown_formats_are_refused(tmp_path: Path) -> None:
    cfg = load_config("tiny")
    path = tmp_path / "future.pt"
    torch.save({"format": 99, "model": {}, "config": cfg.to_dict()}, path)
    with pytest.raises(CheckpointError, match="format 99.*reads formats 1, 2"):
        load_checkpoint(path)


def test_a_corrupt_or_truncated_checkpoint_is_refused_and_the_previous_is_kept(
    tmp_path: Path,
) -> None:
    cfg = load_config("tiny")
    model = build_model(cfg.model)
    path = tmp_path / "last.pt"
    for step in (1, 2):
        save_checkpoint(
            path, {"model": model.state_dict(), "config": cfg.to_dict(), "step": step}
        )
    previous = tmp_path / "last.prev.pt"
    assert load_checkpoint(previous)["step"] == 1 and load_checkpoint(path)["step"] == 2
    rotted = torch.load(path, weights_only=True)  # bytes changed, checksum kept
    rotted["model"]["decoder.readout.bias"] += 1e-3
    torch.save(rotted, path)
    with pytest.raises(CheckpointError, match=r"corrupt.*SHA-256.*last\.prev\.pt"):
        load_checkpoint(path)
    data = previous.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    assert load_checkpoint(previous)["step"] == 1
