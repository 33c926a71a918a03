"""The ``spikelink`` command: one entry point for every user-facing tool.

Each subcommand forwards its arguments to the ``main(argv)`` of a module that also runs
on its own as ``python -m <module>``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

COMMANDS = {
    "demo": (
        "shared.commands.demo",
        "run the link on the bundled samples at a few SNRs",
    ),
    "link": (
        "shared.commands.link",
        "start transmitter, channel and receiver and stream",
    ),
    "sweep": ("shared.commands.sweep", "quality vs SNR over channels, with baselines"),
    "train": ("trainer.__main__", "train a model (also: python -m trainer)"),
    "eval": ("shared.commands.eval", "evaluate a model in one process"),
    "energy": (
        "shared.commands.energy",
        "firing rates, operations and energy per frame",
    ),
    "bench": (
        "shared.commands.bench",
        "speed of the SNN and its twin: model, link, fast path; bench.json",
    ),
    "keys": ("shared.commands.keys", "CURVE key pairs for a secured link"),
    "faults": (
        "shared.commands.faults",
        "kill, fuzz and intrude on a running link; faults.json",
    ),
    "transmitter": ("transmitter.__main__", "the transmitter process alone"),
    "channel": ("channel_sim.__main__", "the channel process alone"),
    "receiver": ("receiver.__main__", "the receiver process alone"),
}


def usage() -> str:
    lines = [
        "usage: spikelink <command> [options]   (spikelink <command> --help, "
        "spikelink --version)",
        "",
        "commands:",
    ]
    lines += [f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def version() -> str:
    """The installed distribution's version."""
    return importlib.metadata.version("spikelink")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"spikelink {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"spikelink: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
