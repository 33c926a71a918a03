"""Where the files that ship with SpikeLink are: the bundled models, the sample pairs and
the validation split, found from the code's own location, so that every command finds
them from any working directory."""

from __future__ import annotations

from pathlib import Path

#: The checkout (or editable install) that holds ``shared/``, ``models/`` and ``samples/``.
ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SNN = ROOT / "models" / "snn_v4.pt"
BUNDLED_TWIN = ROOT / "models" / "cnn_twin_v2.pt"
SAMPLE_PAIRS = ROOT / "samples" / "stereo"
#: The validation split of ``../shared/data``; its paths are relative to ``data.root``.
VALIDATION_SPLIT = ROOT / "shared" / "configs" / "splits" / "shared_val.txt"
