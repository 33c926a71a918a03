"""The `spikelink` command: one entry point that dispatches to each tool's main(argv)."""
import sys
def main(argv=None) -> int:
    return 0
