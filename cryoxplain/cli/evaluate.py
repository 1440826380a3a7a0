"""``cryoxplain evaluate``: a group of evaluation commands, each registered by one line.

Subcommands live in their own modules and are imported lazily (``SUBCOMMANDS``: name →
``"module:attribute"``, module relative to :mod:`cryoxplain.cli`).
"""
from __future__ import annotations

import importlib

import click

# subcommand name -> "module:attribute" (module relative to cryoxplain.cli), imported lazily
SUBCOMMANDS: dict[str, str] = {
    "equivariance": "evaluate_equivariance:equivariance",
}


class _LazySubgroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx, name):
        if name in SUBCOMMANDS:
            mod, attr = SUBCOMMANDS[name].split(":")
            return getattr(importlib.import_module(f"{__package__}.{mod}"), attr)
        return super().get_command(ctx, name)


@click.group("evaluate", cls=_LazySubgroup)
def evaluate():
    """Evaluate denoisers: rotation equivariance, …"""
