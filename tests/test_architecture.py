"""The seams between modules: one place applies the channel to a view, the library does
not import the CLI, the channel process does not load the spiking model, and every typed
error shares one base class."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import shared.errors
from shared.errors import SpikeLinkError

PACKAGES = ("shared", "transmitter", "channel_sim", "receiver", "trainer", "scripts")
SOURCES = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_only_the_cli_imports_the_commands() -> None:
    importers = {
        relative(p)
        for p in SOURCES
        if any(m.startswith("shared.commands") for m in imported_modules(p))
    }
    assert {p for p in importers if not p.startswith("shared/commands/")} == set()


def test_one_module_outside_the_channel_package_runs_the_channel_stages() -> None:
    """``transmit``, ``propagate`` and ``receive`` of a WirelessChannel are called by the
    hop functions alone (and inside ``shared/channel/``)."""
    stage_call = re.compile(r"\bchannel\.(transmit|propagate|receive)\(")
    callers = {
        relative(p)
        for p in SOURCES
        if stage_call.search(p.read_text())
        and not relative(p).startswith("shared/channel/")
    }
    assert callers == {"shared/link/hop.py"}


def test_the_channel_process_does_not_import_spikingjelly() -> None:
    """``python -m channel_sim`` never runs a network, so it loads no SNN code."""
    check = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('channel_sim', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(n for n in sys.modules if n.startswith('spikingjelly')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_every_typed_error_derives_from_one_base() -> None:
    errors = [
        cls
        for _, cls in inspect.getmembers(shared.errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == "shared.errors"
    ]
    assert len(errors) >= 8
    assert all(issubclass(cls, SpikeLinkError) for cls in errors)
    assert not any(issubclass(cls, (ValueError, RuntimeError)) for cls in errors)
    defined_elsewhere = [
        relative(p)
        for p in SOURCES
        if p.name != "errors.py"
        and re.search(r"^class \w+Error\(", p.read_text(), re.MULTILINE)
    ]
    assert defined_elsewhere == []


BROAD = re.compile(r"except (\(?)(ValueError|RuntimeError|Exception)\b")
#: The places that may catch broadly, each for a stated reason next to it.
BROAD_ALLOWED = {
    "shared/wire.py",  # any msgpack failure of received bytes is a malformed frame
    "shared/model/checkpoint.py",  # torch raises many types for a corrupt file
    "shared/link/process.py",  # logs an unexpected error with its traceback
    "shared/data/images.py",  # Pillow's decoding errors of a named file
    "shared/data/pairs.py",  # Path.relative_to outside the root
    "shared/commands/common.py",  # float() of an SNR list entry
    "trainer/distributed.py",  # re-raised after the ranks' vote
}


def test_broad_catches_are_only_where_they_are_needed() -> None:
    found = {relative(p) for p in SOURCES if BROAD.search(p.read_text())}
    assert found <= BROAD_ALLOWED, found - BROAD_ALLOWED


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if re.search(r"(?<![\w/.])docs/", p.read_text())],
    ids=relative,
)
def test_documents_named_in_the_code_exist(path: Path) -> None:
    for name in re.findall(r"(?<![\w/.])docs/[\w/.-]+\.md", path.read_text()):
        assert (REPO / name).is_file(), f"{relative(path)} names {name}"
