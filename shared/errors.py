"""The project's typed errors: one base class, one subclass for each kind of problem.

A :class:`SpikeLinkError` is a problem with what the user gave (a config, a file, a
message on the wire) and is reported in one line. Any other exception is a bug and reaches
the user with its traceback, so code catches these classes only, never a broad built-in
type such as ``ValueError`` or ``RuntimeError``.
"""

from __future__ import annotations


class SpikeLinkError(Exception):
    """Base of every error SpikeLink reports in one line, without a traceback."""


class ConfigError(SpikeLinkError):
    """A configuration key or value, or a command-line option, that is not allowed; the
    message names the key (or option), the value given and what is allowed."""


class DataError(SpikeLinkError):
    """A data file, layout or image size that cannot be used; the message names the file
    or the size."""


class CheckpointError(SpikeLinkError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


class WireError(SpikeLinkError):
    """A message that cannot be accepted; ``kind`` names the failed check (the counters
    of dropped messages are kept by kind)."""

    KINDS = (
        "oversized",
        "truncated",
        "checksum",
        "malformed",
        "schema",
        "version",
        "type",
        "dtype",
        "shape",
        "payload",
        "protocol",
    )

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class ProtocolError(WireError):
    """A well-formed message whose content does not fit the hop it arrived on."""

    def __init__(self, detail: str) -> None:
        super().__init__("protocol", detail)


class ControlError(SpikeLinkError):
    """The channel refused a control request or did not answer."""


class LinkError(SpikeLinkError):
    """A run of the three-process link failed; the message says where its log is."""


class TrainingError(SpikeLinkError):
    """Training cannot go on (non-finite loss, silent layer, a failed rank); the message
    says why."""
