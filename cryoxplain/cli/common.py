"""Option decorators shared by the commands, so flags read the same everywhere."""
from __future__ import annotations

import click

device_option = click.option(
    "--device", "-d", default="auto", show_default=True,
    help="Compute device: auto (GPU if available), cpu, cuda or cuda:N; Topaz's -d N (GPU N) and -d -1 (CPU) work too.")
def _seed(ctx, param, value):
    """``--seed``: checked by the library's one validator (one-line error, exit 2)."""
    from ..checks import check_seed

    return None if value is None else check_seed(value)


seed_option = click.option("--seed", type=int, default=0, show_default=True, callback=_seed,
                           help="Random seed, 0 … 2**63-1 (reproducible on the same device).")
force_option = click.option("--force", is_flag=True, help="Overwrite existing output files.")
batch_size_option = click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True,
                                 help="Images per batch (memory stays bounded by this).")
project_dir_option = click.option(
    "--project-dir", type=click.Path(file_okay=False), default=None,
    help="Particle files: directory the stack paths are relative to, as in RELION "
         "(default: the current directory, then the STAR/.cs file's folder).")
stack_header_option = click.option(
    "--stack", "stack_header", is_flag=True,
    help="Read an MRC file as a particle stack whatever its header says (.mrc with ispg=1).")


def stack_model_options(f):
    """The options of a command that runs a model over particles of a stack (``evaluate
    equivariance``, ``evaluate real``): ``--stack``, ``--project-dir``, ``--seed``, ``--device``,
    ``--batch-size``, ``--force``, in that order in ``--help``."""
    for opt in (force_option, batch_size_option, device_option, seed_option, project_dir_option, stack_header_option):
        f = opt(f)
    return f


def pixel_size_callback(ctx, param, value):
    """Every ``--pixel-size``: the library's one validator (finite, > 0; one-line error, exit 2)."""
    from ..checks import check_pixel_size

    return check_pixel_size(value)


pixel_size_option = click.option(
    "--pixel-size", "--angpix", "pixel_size", type=float, default=None, callback=pixel_size_callback,
    help="Pixel size in Å/px (finite, > 0), overriding the file headers and the STAR/.cs metadata.")


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used.

    ``lazy_commands`` maps a command name to ``"module:attribute"`` (module relative to
    :mod:`cryoxplain.cli`); subclasses or ``cls=`` users set it to their own registry dict.
    """

    lazy_commands: dict[str, str] = {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            import importlib

            mod, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(f"{__package__}.{mod}"), attr)
        return super().get_command(ctx, name)


def input_files(*specs, project_dir=None) -> tuple:
    """:func:`cryoxplain.io.atomic.input_files` (imported when used, so ``--help`` stays fast)."""
    from ..io.atomic import input_files as _files

    return _files(*specs, project_dir=project_dir)
