"""Option decorators shared by the commands, so flags read the same everywhere."""
from __future__ import annotations

import click

device_option = click.option(
    "--device", "-d", default="auto", show_default=True,
    help="Compute device: auto (GPU if available), cpu, cuda or cuda:N.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (reproducible on the same device).")
force_option = click.option("--force", is_flag=True, help="Overwrite existing output files.")
batch_size_option = click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True,
                                 help="Images per batch (memory stays bounded by this).")
