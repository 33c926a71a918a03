"""``spikelink keys --out DIR``: a CURVE key pair for each peer of the link.

Writes ``transmitter``, ``channel``, ``receiver`` and ``control`` key pairs in pyzmq's
certificate format (``NAME.key`` public, ``NAME.key_secret`` secret, readable by the
owner only). Use them with ``--set link.security=curve --set link.keys_dir=DIR``; copy
only the public keys and each host's own secret key to the hosts of a link across
machines.
"""

from __future__ import annotations

import argparse
import sys

from shared.link.security import create_keys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spikelink keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="folder for the keys (made private)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for path in create_keys(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
