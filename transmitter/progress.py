"""How far the transmitter has got: the next sequence number, kept in a small file so that
a restarted transmitter (``link.resume_stream``) continues the stream instead of
repeating it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.config import Config
from shared.errors import DataError

FILE = "transmitter_progress.json"


def progress_path(cfg: Config) -> Path:
    return Path(cfg.link.out_dir) / FILE


def start_seq(cfg: Config) -> int:
    """0 for a new stream; for a resumed one, the sequence number after the last frame
    the crashed transmitter began to send."""
    path = progress_path(cfg)
    if not cfg.link.resume_stream or not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text())["next_seq"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"transmitter progress {path} cannot be read ({exc})") from None


def record(cfg: Config, next_seq: int) -> None:
    """Note, atomically, that frames up to ``next_seq - 1`` are (being) sent. Written
    before a frame goes out, so that a crash can lose that frame but never send it
    twice."""
    path = progress_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"next_seq": next_seq}))
    os.replace(tmp, path)
