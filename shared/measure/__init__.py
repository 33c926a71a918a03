"""Measurement shared by the receiver, ``eval``, ``sweep`` and ``energy``: quality per
view (:mod:`.quality`), and energy and firing rates of the model's parts
(:mod:`.activity`, :mod:`.meter`)."""
