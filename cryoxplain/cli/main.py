"""The ``cryoxplain`` command group.

Each command lives in its own module (``cryoxplain/cli/<name>.py``) and is a thin wrapper:
parse options → call a documented library function → report.  Commands are imported lazily so
``cryoxplain --help`` stays fast.  User errors (:class:`CryoxplainError`) are printed on one line
and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CryoxplainError
from .common import LazyGroup

# command name -> "module:attribute" (module relative to this package)
COMMANDS: dict[str, str] = {
    "simulate": "simulate:simulate",
    "info": "info:info",
    "denoise": "denoise:denoise",
    "evaluate": "evaluate:evaluate",
    "train": "train:train",
    "classify": "classify:classify",
    "explain": "explain:explain",
    "plugins": "plugins:plugins",
}


class CryoxplainGroup(LazyGroup):
    """The top-level group: lazy commands, and user errors as one line with exit status 2."""

    lazy_commands = COMMANDS

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CryoxplainError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"cryoxplain: error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@click.group(cls=CryoxplainGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="cryoxplain")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx, debug):
    """cryoxplain: rotation-equivariant denoising and explanations for cryo-EM particle images."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _terminate(signum, frame):  # pragma: no cover - exercised through a subprocess test
    # turn SIGTERM (batch schedulers, `timeout`) into SystemExit so atomic writers clean up
    raise SystemExit(128 + signum)


def main(argv=None):
    """Console-script entry point."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="cryoxplain", standalone_mode=True)
    except CryoxplainError as exc:  # raised outside a command (e.g. while loading one)
        click.echo(f"cryoxplain: error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
