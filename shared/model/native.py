"""The native spike kernels (``spike_conv.c``): compiled for this CPU on first use, cached,
and loaded with ctypes.

The library is built with the system's C compiler (``$CC``, else ``cc``) at
``-O3 -march=native -ffp-contract=off`` and any ``$SPIKELINK_CFLAGS`` (``-mno-avx512f``
builds the AVX2 variant on an AVX-512 CPU) into ``$SPIKELINK_CACHE`` (else
``$XDG_CACHE_HOME/spikelink``, else ``~/.cache/spikelink``), under a name that hashes the
source, the compiler, its flags and the CPU's flags, so a changed source, compiler or
machine builds afresh. The build takes about a second; processes that start together (the
link's) each write a temporary file and rename it into place. Where no compiler works,
:func:`spike_kernels` is None, the reason is logged once, and the fast path keeps
oneDNN's dense convolutions.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("spike_conv.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC")
I64, PTR = ctypes.c_int64, ctypes.c_void_p


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("SPIKELINK_CACHE"):
        return Path(os.environ["SPIKELINK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spikelink"


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    flags = [
        line for line in text.splitlines() if line.startswith(("flags", "Features"))
    ]
    return flags[0] if flags else platform.processor()


def _compiler() -> tuple[str, str]:
    """The C compiler's path and version line; OSError where there is none."""
    name = os.environ.get("CC", "cc")
    path = shutil.which(name)
    if path is None:
        raise OSError(f"no C compiler {name!r} on PATH")
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()[0]
    return path, version


def compiler_flags() -> list[str]:
    """The flags of the build: :data:`FLAGS` and ``$SPIKELINK_CFLAGS``."""
    return [*FLAGS, *os.environ.get("SPIKELINK_CFLAGS", "").split()]


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *compiler_flags(), "-o", partial, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[:500]}")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    signatures = {
        "spike_lanes": (ctypes.c_int, []),
        "spike_slack": (ctypes.c_int, []),
        "spike_chunk_vectors": (ctypes.c_int, [I64]),
        "spike_order": (ctypes.c_int, [I64] * 4),
        "spike_index": (I64, [PTR, PTR, I64, I64, I64, I64, I64, PTR, PTR, PTR]),
        "spike_scatter": (
            ctypes.c_int,
            [PTR, PTR, I64, I64, I64, I64, PTR, PTR, I64, I64, I64, I64, PTR, PTR, PTR],
        ),
        "spike_gather": (
            ctypes.c_int,
            [PTR, PTR, PTR]
            + [I64] * 5
            + [PTR, PTR]
            + [I64] * 6
            + [PTR, I64, I64]
            + [PTR, PTR],
        ),
        "lif_steps": (
            I64,
            [
                PTR,
                I64,
                I64,
                I64,
                I64,
                I64,
                PTR,
                ctypes.c_int,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_int,
                PTR,
            ],
        ),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib


@functools.cache
def spike_kernels() -> ctypes.CDLL | None:
    """The loaded kernels of ``spike_conv.c``, built first where needed; None (with a
    logged reason) where they cannot be built or loaded."""
    try:
        compiler, version = _compiler()
        key = "\n".join(
            (
                SOURCE.read_text(),
                version,
                " ".join(compiler_flags()),
                platform.machine(),
                _cpu_flags(),
            )
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        target = cache_dir() / f"spike_conv-{digest}.so"
        if not target.exists():
            _build(compiler, target)
        return _declare(ctypes.CDLL(str(target)))
    except (OSError, subprocess.SubprocessError) as err:
        log.warning(
            "event-driven spike convolutions unavailable (%s); using dense ones", err
        )
        return None
