"""Process-wide callbacks between the library and the command line (no heavy imports here).

``WRITE_STARTED``: called (without arguments) when an output file starts being written
(:func:`cryoxplain.io.atomic.atomic_path`); the CLI prints the warnings it held back until then.
"""
from __future__ import annotations

WRITE_STARTED: list = []


def write_started() -> None:
    for hook in list(WRITE_STARTED):
        try:
            hook()
        except Exception:  # noqa: BLE001 - a display hook never breaks a write
            pass
