"""Typed, strict configuration: nested frozen dataclasses, YAML presets, dotted overrides.

A configuration is built in three steps, each of which may only narrow what is allowed:

1. the dataclass defaults below;
2. a YAML file (``load_config(path)``), usually a preset from ``shared/configs/``;
3. command-line overrides ``section.key=value`` (``--set model.time_steps=4``), each value
   parsed as YAML.

Every value is checked against its type hint and the bounds in the field's metadata. An
unknown key, a wrong type or an out-of-range value raises :class:`ConfigError`, whose message
names the dotted key, the value given and what is allowed.

The dataclass defaults are the ``default`` preset, the operating point of the bundled
models; other presets (``small``, ``tiny``) change only what they name. Conventions (SNR,
bandwidth ratio, evaluation crop) are in ``docs/CONVENTIONS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from shared.assets import BUNDLED_SNN, SAMPLE_PAIRS, VALIDATION_SPLIT
from shared.errors import ConfigError
from shared.latent import latent_modes

PRESETS_DIR = Path(__file__).resolve().parent / "configs"
log = logging.getLogger(__name__)


def _bounded(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
) -> Any:
    """A dataclass field with numeric bounds ``lo <= value <= hi`` (``lo < value`` if open)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open})


def _choice(default: str, choices: Callable[[], tuple[str, ...]]) -> Any:
    """A string field whose allowed values come from a registry at check time."""
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the stereo JSCC model (see ``shared.model.jscc``)."""

    arch: str = "stereo_jscc"
    kind: Literal["snn", "cnn"] = "snn"
    latent: str = _choice("count_pam", latent_modes)
    cbr: float = _bounded(1 / 16, 0.0, 1.0, lo_open=True)
    time_steps: int = _bounded(4, 1, 64)
    tau: float = _bounded(2.0, 1.0, None, lo_open=True)
    v_threshold: float = _bounded(1.0, 0.0, None, lo_open=True)
    reset: Literal["hard", "soft"] = "hard"
    neuron: Literal["lif", "plif"] = "lif"
    surrogate: Literal["atan", "sigmoid", "erf"] = "atan"
    surrogate_alpha: float = _bounded(2.0, 0.0, None, lo_open=True)
    detach_reset: bool = True
    twin_gradient: Literal["exact", "surrogate"] = "surrogate"
    share_encoder: bool = True
    widths: tuple[int, ...] = (32, 64, 192)
    res_blocks: tuple[int, ...] = (1, 2, 2)
    fusion_scales: tuple[int, ...] = (2,)
    fusion_dim: int = _bounded(64, 1, None)
    fusion_gate: bool = False
    snr_conditioning: bool = True


@dataclass(frozen=True)
class ChannelConfig:
    """The wireless channel (conventions in ``docs/CONVENTIONS.md``)."""

    kind: Literal[
        "awgn",
        "rayleigh_block",
        "rayleigh_fast",
        "rician_block",
        "ofdm_tdl",
        "bsc",
        "erasure",
    ] = "awgn"
    snr_db: float = _bounded(10.0, -40.0, 80.0)
    rician_k: float = _bounded(3.0, 0.0, None)
    #: ``ofdm_tdl``: the 3GPP TDL model, its delay spread and the terminal's speed, and
    #: the resource grid (``shared/channel/ofdm.py``).
    tdl_model: Literal["A", "B", "C", "D", "E"] = "A"
    delay_spread_ns: float = _bounded(100.0, 0.0, None, lo_open=True)
    speed_mps: float = _bounded(0.0, 0.0, None)
    subcarriers: int = _bounded(72, 1, None)
    subcarrier_spacing_khz: float = _bounded(30.0, 0.0, None, lo_open=True)
    carrier_ghz: float = _bounded(3.5, 0.0, None, lo_open=True)
    #: What the receiver knows of the channel: ``perfect`` (h and N0), ``estimated``
    #: (``ofdm_tdl`` only: h from pilots, ``shared/channel/pilots.py``; N0 known) or
    #: ``none`` (neither).
    csi: Literal["perfect", "estimated", "none"] = "perfect"
    #: ``csi: estimated``: a pilot on every ``pilot_subcarrier_step``-th subcarrier of
    #: every ``pilot_symbol_step``-th OFDM symbol, and how the estimates are spread over
    #: the grid (Sionna's interpolators).
    pilot_subcarrier_step: int = _bounded(4, 1, None)
    pilot_symbol_step: int = _bounded(7, 1, None)
    pilot_interpolation: Literal["lin_time_avg", "lin", "nn"] = "lin_time_avg"
    equalizer: Literal["zf", "mmse"] = "mmse"
    flip_prob: float = _bounded(0.01, 0.0, 0.5)
    erasure_prob: float = _bounded(0.01, 0.0, 1.0)
    seed: int = _bounded(0, 0, None)

    def __post_init__(self) -> None:
        check_csi(self.kind, self.csi)


#: Channels whose receiver can estimate ``h`` from pilots (``csi: estimated``).
PILOT_CHANNELS = ("ofdm_tdl",)


def check_csi(kind: str, csi: str) -> None:
    """ConfigError naming ``channel.csi`` for estimated CSI on a channel without
    pilots."""
    if csi == "estimated" and kind not in PILOT_CHANNELS:
        raise ConfigError(
            f"config key 'channel.csi': got 'estimated' for channel.kind '{kind}'; "
            f"allowed: 'estimated' only with {', '.join(map(repr, PILOT_CHANNELS))} "
            "(the channels with pilots), 'perfect' or 'none' with any channel"
        )


#: What a receiver may know of the channel (``channel.csi``), for command-line choices.
CSI_MODES: tuple[str, ...] = typing.get_args(
    typing.get_type_hints(ChannelConfig)["csi"]
)


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are cropped."""

    root: str = ""
    stereo: tuple[str, ...] = ("stereo",)
    mono: tuple[str, ...] = ("mono", "kodak")
    layout: Literal[
        "auto",
        "generic",
        "kitti2012",
        "kitti2015",
        "kitti_raw",
        "instereo2k",
        "middlebury",
    ] = "auto"
    train_split: str = ""
    val_split: str = str(VALIDATION_SPLIT)
    on_error: Literal["error", "skip"] = "error"
    image_height: int = _bounded(128, 8, None)
    image_width: int = _bounded(256, 8, None)
    crop_height: int = _bounded(64, 8, None)
    crop_width: int = _bounded(128, 8, None)
    scale_max: float = _bounded(4.0, 1.0, None)
    mono_fraction: float = _bounded(0.7, 0.0, 1.0)
    mismatch_fraction: float = _bounded(0.0, 0.0, 1.0)
    max_disparity: float = _bounded(0.06, 0.0, 0.5)
    workers: int = _bounded(0, 0, 64)


@dataclass(frozen=True)
class TrainConfig:
    """Joint training of encoder, differentiable channel and decoder."""

    steps: int = _bounded(4000, 0, None)
    batch_size: int = _bounded(8, 1, None)
    lr: float = _bounded(2e-3, 0.0, None, lo_open=True)
    lr_min: float = _bounded(2e-5, 0.0, None)
    warmup_steps: int = _bounded(100, 0, None)
    weight_decay: float = _bounded(0.0, 0.0, None)
    grad_clip: float = _bounded(0.0, 0.0, None)
    snr_min_db: float = _bounded(-5.0, -40.0, 80.0)
    snr_max_db: float = _bounded(15.0, -40.0, 80.0)
    loss: Literal["mse", "mse_msssim"] = "mse"
    msssim_weight: float = _bounded(0.1, 0.0, 1.0)
    val_every: int = _bounded(250, 1, None)
    val_snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0)
    log_every: int = _bounded(25, 1, None)
    ckpt_every: int = _bounded(100, 1, None)
    out_dir: str = "runs/snn"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["float32", "bfloat16"] = "bfloat16"
    memory_format: Literal["channels_last", "contiguous"] = "channels_last"
    seed: int = _bounded(0, 0, None)
    init_from: str = ""
    init_bn_scale: float = _bounded(1.0, 0.0, None, lo_open=True)
    distill_from: str = ""
    distill_weight: float = _bounded(0.05, 0.0, None)
    freeze_bn: bool = False
    ema_decay: float = _bounded(0.0, 0.0, 0.9999)
    max_minutes: float = _bounded(0.0, 0.0, None)
    threads: int = _bounded(0, 0, 256)


@dataclass(frozen=True)
class LinkConfig:
    """The three-process link: endpoints, flow control, source and outputs.

    ``channel_in``/``channel_out``/``channel_control`` are bound by the channel process,
    ``reference`` by the receiver; the transmitter only connects. Endpoints are on
    loopback unless configured otherwise; ``security: curve`` encrypts and authenticates
    every socket with the keys in ``keys_dir`` (``shared.link.security``).

    The channel sends the receiver a heartbeat every ``hb_interval_s`` when it has
    nothing else to send, and the receiver reports a channel silent for ``liveness``
    intervals; libzmq reconnects a lost connection itself, with back-off. (ZMTP
    heartbeats are left off: with a receiving socket whose queue is full, libzmq 4.3's
    heartbeat timeout aborts the process, libzmq issues 3937, 4364 and 4767.) The
    launcher restarts a crashed process ``max_restarts`` times with ``resume_stream``
    set: the transmitter continues after the last frame it sent, the receiver keeps its
    records. Each process runs torch's operations on ``threads`` threads (0: half the
    CPU cores) and the fast path's native kernels on ``kernel_threads`` (0: all of them;
    ``shared.model.kernel_threads``).
    """

    channel_in: str = "tcp://127.0.0.1:5555"
    channel_out: str = "tcp://127.0.0.1:5556"
    channel_control: str = "tcp://127.0.0.1:5557"
    reference: str = "tcp://127.0.0.1:5558"
    hwm: int = _bounded(8, 1, None)
    hb_interval_s: float = _bounded(1.0, 0.0, None, lo_open=True)
    liveness: int = _bounded(3, 1, None)
    idle_timeout_s: float = _bounded(120.0, 0.0, None, lo_open=True)
    max_message_bytes: int = _bounded(64 * 1024 * 1024, 1024, None)
    source: str = str(SAMPLE_PAIRS)
    source_root: str = ""
    frames: int = _bounded(0, 0, None)
    repeat: int = _bounded(1, 0, None)
    fps: float = _bounded(0.0, 0.0, None)
    crop: Literal["eval", "native"] = "eval"
    model: str = str(BUNDLED_SNN)
    out_dir: str = "runs/link"
    save_png: bool = True
    save_grid: bool = False
    stream: int = _bounded(1, 0, 2**32 - 1)
    summary_every_s: float = _bounded(10.0, 0.0, None, lo_open=True)
    threads: int = _bounded(0, 0, 256)
    kernel_threads: int = _bounded(0, 0, 256)
    security: Literal["none", "curve"] = "none"
    keys_dir: str = ""
    max_restarts: int = _bounded(3, 0, None)
    restart_backoff_s: float = _bounded(0.5, 0.0, None)
    resume_stream: bool = False


@dataclass(frozen=True)
class InferenceConfig:
    """Where and how a trained model runs outside training (``shared.model.inference``):
    the transmitter and receiver processes, ``eval``, ``sweep``, ``energy``, ``demo`` and
    ``bench``.

    ``device: auto`` takes the GPU when torch sees one. ``precision: auto`` is bfloat16
    where the device computes it faster than float32 (a CUDA GPU with bfloat16, a CPU
    with AMX; not AVX512-BF16 alone, docs/RESULTS.md) and float32 elsewhere; the
    measuring commands (``eval``, ``sweep``, ``energy``) default to float32 instead, so
    that their figures are the same on every machine. ``fast: false`` runs the reference
    path (the training graph in eval mode) instead of the fast path. ``event_driven``
    (fast path, CPU, float32) computes each convolution that reads spikes from the inputs
    that fired only (:mod:`shared.model.event_conv`; needs a C compiler, else the dense
    convolutions run); ``false`` keeps oneDNN's dense ones. ``batch`` is how
    many stereo frames ``eval`` and the in-process sweep run at once; 0 is 1 on a CPU
    (where larger batches are no faster per frame, docs/RESULTS.md) and 32 on a GPU.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    fast: bool = True
    event_driven: bool = True
    batch: int = _bounded(0, 0, 4096)


@dataclass(frozen=True)
class Config:
    """The whole configuration; one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    infer: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        _check_consistency(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), as written to YAML and checkpoints."""
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _check_consistency(cfg: Config) -> None:
    """Rules that involve more than one key."""
    m, t = cfg.model, cfg.train
    if len(m.res_blocks) != len(m.widths):
        raise ConfigError(
            f"config key 'model.res_blocks': got {list(m.res_blocks)}; allowed: one "
            f"entry per scale, i.e. {len(m.widths)} entries like model.widths"
        )
    if not m.widths or any(w < 1 for w in m.widths):
        raise ConfigError(
            f"config key 'model.widths': got {list(m.widths)}; allowed: a non-empty "
            "list of positive channel counts"
        )
    if any(n < 0 for n in m.res_blocks):
        raise ConfigError(
            f"config key 'model.res_blocks': got {list(m.res_blocks)}; allowed: "
            "non-negative integers"
        )
    bad = [s for s in m.fusion_scales if not 0 <= s < len(m.widths)]
    if bad:
        raise ConfigError(
            f"config key 'model.fusion_scales': got {list(m.fusion_scales)}; allowed: "
            f"scale indices in 0..{len(m.widths) - 1}"
        )
    if t.snr_min_db > t.snr_max_db:
        raise ConfigError(
            f"config key 'train.snr_min_db': got {t.snr_min_db}; allowed: <= "
            f"train.snr_max_db ({t.snr_max_db})"
        )


# ---------------------------------------------------------------------------- checking


def _describe_type(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe_type(typing.get_args(hint)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return {
        bool: "true/false",
        int: "an integer",
        float: "a finite number",
        str: "a string",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def _describe_bounds(meta: typing.Mapping[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    parts = []
    if lo is not None:
        parts.append(f"{'>' if meta.get('lo_open') else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return " and ".join(parts)


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}': got {value!r}; allowed: {allowed}")


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Return ``value`` as type ``hint`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value in typing.get_args(hint) and isinstance(value, str):
            return value
        raise _fail(key, value, _describe_type(hint))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(key, value, _describe_type(hint))
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise _fail(key, value, _describe_type(hint))


def _check_choices(meta: typing.Mapping[str, Any], value: Any, key: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices():
        raise _fail(key, value, "one of " + ", ".join(repr(c) for c in choices()))


def _check_bounds(meta: typing.Mapping[str, Any], value: Any, key: str) -> None:
    lo, hi = meta.get("lo"), meta.get("hi")
    too_low = lo is not None and (value <= lo if meta.get("lo_open") else value < lo)
    too_high = hi is not None and value > hi
    if too_low or too_high:
        raise _fail(key, value, _describe_bounds(meta))


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) mapping, strictly."""
    if not isinstance(data, dict):
        raise _fail(prefix or "<root>", data, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(
            f"config key '{key}' is unknown; allowed keys here: {', '.join(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
            continue
        coerced = _coerce(hint, value, key)
        _check_bounds(known[name].metadata, coerced, key)
        _check_choices(known[name].metadata, coerced, key)
        kwargs[name] = coerced
    return cls(**kwargs)


# ---------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``'a.b=value'`` into (['a', 'b'], parsed value); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} is not of the form section.key=value "
            "(example: model.time_steps=4)"
        )
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if any(not p for p in path):
        raise ConfigError(f"override {text!r}: the key {key!r} has an empty part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({exc})"
        ) from exc
    return path, value


def _apply_override(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"config key '{'.'.join(path)}': '{part}' is a value, not a section"
            )
        node = child
    node[path[-1]] = value


def add_config_arguments(
    parser: argparse.ArgumentParser,
    example: str,
    config_help: str = "YAML file or preset name in shared/configs "
    "(default: the built-in defaults)",
) -> None:
    """The two options every tool shares: ``--config`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (repeatable; the value "
        "is parsed as YAML)",
    )


def override_arguments(settings: Iterable[str]) -> list[str]:
    """``KEY=VALUE`` settings as the ``--set`` arguments of :func:`add_config_arguments`
    (for a command line that starts another tool)."""
    return [arg for setting in settings for arg in ("--set", setting)]


def resolve_preset(path: str | Path) -> Path:
    """A path as given, or the name of a preset in ``shared/configs`` (``tiny``)."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    preset = PRESETS_DIR / f"{path}.yaml"
    if preset.exists():
        return preset
    names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {str(path)!r} not found; presets: {names}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file raises ConfigError naming it."""
    file = resolve_preset(path)
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file '{file}' cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{file}' must hold a mapping at the top level")
    return data


def section_from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """One checked config section (e.g. ``ChannelConfig``) from a mapping."""
    return _build(cls, _to_plain(data), prefix)


def config_from_dict(
    data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Build a checked Config from a nested dict plus ``key=value`` overrides."""
    tree = _to_plain(data)
    for text in overrides:
        path, value = parse_override(text)
        _apply_override(tree, path, value)
    return _build(Config, tree, "")


def config_from_stored(
    data: dict[str, Any], missing_meant: Mapping[str, Any] = {}
) -> Config:
    """A Config from a stored dict (a checkpoint's), tolerant of other versions.

    A key the stored dict lacks takes the value ``missing_meant`` gives for its dotted
    name (what it meant when the dict was written, see
    ``shared.model.checkpoint.STORED_DEFAULTS``), else today's default. The ``model``
    section must otherwise be valid as it stands (it decides the weights' shapes); keys of
    other sections that this version does not know are dropped with a warning.
    """
    known = {
        f.name: typing.get_type_hints(Config)[f.name]
        for f in dataclasses.fields(Config)
    }
    kept: dict[str, Any] = {}
    for section, value in data.items():
        if section not in known or not isinstance(value, dict):
            log.warning(
                "stored config: section %r ignored (unknown to this version)", section
            )
            continue
        if section != "model":
            fields = {f.name for f in dataclasses.fields(known[section])}
            dropped = sorted(set(value) - fields)
            if dropped:
                log.warning(
                    "stored config: keys %s of section %r ignored (unknown to "
                    "this version)",
                    dropped,
                    section,
                )
            value = {k: v for k, v in value.items() if k in fields}
        kept[section] = dict(value)
    for dotted, meant in missing_meant.items():
        section, key = dotted.split(".")
        kept.setdefault(section, {}).setdefault(key, meant)
    return config_from_dict(kept)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Load a YAML file (or a preset name) and apply overrides; None means defaults."""
    data = read_yaml(path) if path else {}
    return config_from_dict(data, overrides)


def dump_config(cfg: Config) -> str:
    """The resolved configuration as YAML text."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
