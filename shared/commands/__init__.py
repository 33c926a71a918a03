"""User-facing tools behind ``spikelink <command>``; each module has ``main(argv)``."""
