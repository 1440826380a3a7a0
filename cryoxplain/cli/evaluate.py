"""``cryoxplain evaluate``: the group of evaluation commands, one module each (register one line each).

* ``snr`` — :mod:`cryoxplain.cli.evaluate_snr`;
* ``equivariance`` — :mod:`cryoxplain.cli.evaluate_equivariance`;
* ``explanations`` — :mod:`cryoxplain.cli.evaluate_explanations`;
* ``real`` — :mod:`cryoxplain.cli.evaluate_real` (no ground truth).
"""
from __future__ import annotations

import click

from .common import LazyGroup

# subcommand name -> "module:attribute" (module relative to cryoxplain.cli), imported lazily
SUBCOMMANDS: dict[str, str] = {
    "snr": "evaluate_snr:snr",
    "equivariance": "evaluate_equivariance:equivariance",
    "explanations": "evaluate_explanations:explanations",
    "real": "evaluate_real:real",
}


class _LazySubgroup(LazyGroup):
    lazy_commands = SUBCOMMANDS


@click.group("evaluate", cls=_LazySubgroup)
def evaluate():
    """Evaluate denoisers: SNR/PSNR/FRC against ground truth, rotation equivariance, …"""


# deprecated locations, kept for one release (imported lazily)
_MOVED = {
    "format_table": ("cryoxplain.metrics.report", "format_snr_table"),  # use cryoxplain.metrics.report.format_snr_table
    "plot_frc": ("cryoxplain.metrics.plots", "plot_frc"),  # use cryoxplain.metrics.plots.plot_frc
    "snr": ("cryoxplain.cli.evaluate_snr", "snr"),  # use cryoxplain.cli.evaluate_snr.snr
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        mod, attr = _MOVED[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SUBCOMMANDS", "evaluate"]
