"""The ``cryoxplain`` command group.

Each command lives in its own module (``cryoxplain/cli/<name>.py``) and is a thin wrapper:
parse options → call a documented library function → report.  Commands are imported lazily so
``cryoxplain --help`` stays fast.  User errors (:class:`CryoxplainError`) are printed on one line
and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import click

from .. import __version__
from ..errors import CryoxplainError
from .common import LazyGroup

_PACKAGE = Path(__file__).resolve().parent.parent
_default_format = warnings.formatwarning

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
    "relion-external": "relion_external:relion_external",
}


class CryoxplainGroup(LazyGroup):
    """The top-level group: lazy commands, and user errors as one line with exit status 2."""

    lazy_commands = COMMANDS

    def invoke(self, ctx):
        try:
            out = super().invoke(ctx)
        except click.UsageError as exc:  # one line, not click's usage block
            _drop_pending_warnings()
            where = exc.ctx.command_path if exc.ctx is not None else "cryoxplain"
            click.echo(f"cryoxplain: error: {' '.join(exc.format_message().split())} "
                       f"(see {where} --help)", err=True)
            ctx.exit(exc.exit_code)
        except (CryoxplainError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(exc, OSError):  # a write failure the library did not name: full disk, read-only
                from ..io.atomic import translate_os_error

                exc = translate_os_error(exc, Path(getattr(exc, "filename", None) or "."))
                if not isinstance(exc, CryoxplainError):
                    raise
            _drop_pending_warnings()  # the error says it; warnings that led to it would only repeat it
            name = ctx.invoked_subcommand
            cmd = self.get_command(ctx, name) if name else None
            click.echo(f"cryoxplain: error: {_one_line(exc, cmd)}", err=True)
            ctx.exit(exc.exit_code)
        flush_warnings()
        return out


def _one_line(exc: BaseException, command: click.Command | None = None) -> str:
    """The error on one line; parameters the library names as ``name=value`` become the command's
    flags (``force=True`` → ``--force``, ``pixel_size=...`` → ``--pixel-size``, ``device=cpu`` →
    ``--device cpu``), so library messages name parameters and CLI users read flags."""
    text = " ".join(str(exc).split())
    flags = _option_flags(command) if command is not None else {}
    if not flags:
        return text

    def repl(m):
        opt = flags.get(m.group(1))
        if opt is None:
            return m.group(0)
        value = m.group(2) or ""
        return opt if value in ("", "True", "...") else f"{opt} {value}"

    return re.sub(r"\b([a-z_][a-z0-9_]*)=(True|\.\.\.|[^\s,;()]+)?", repl, text)


def _option_flags(command: click.Command) -> dict[str, str]:
    """Parameter name → longest flag, over ``command`` (and, for a group, its loaded subcommands)."""
    out: dict[str, str] = {}
    cmds = [command]
    if isinstance(command, click.Group):
        names = list(getattr(command, "lazy_commands", {})) + list(command.commands)
        cmds += [c for c in (command.get_command(None, n) for n in names) if c is not None]
    for c in cmds:
        for p in c.params:
            if isinstance(p, click.Option) and p.name and p.name not in out:
                out[p.name] = max(p.opts, key=len)
    return out


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


def _format_warning(message, category, filename, lineno, line=None):
    """Warnings the library raises for the user (quirks of input files, fallbacks) as one line."""
    if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(_PACKAGE):
        return f"cryoxplain: warning: {' '.join(str(message).split())}\n"
    return _default_format(message, category, filename, lineno, line)


_SHOWN: set[str] = set()
_default_show = warnings.showwarning


_PENDING: list = []


def _show_once(message, category, filename, lineno, file=None, line=None):
    """Say each distinct warning once per run (a file's quirk is found by several readers).

    Warnings are held back until the command starts writing its first output (or ends), so that a
    bad input gives one error line, not the warnings leading up to it."""
    key = f"{category.__name__}:{message}"
    if key in _SHOWN:
        return
    _SHOWN.add(key)
    _PENDING.append((message, category, filename, lineno, file, line))


def flush_warnings() -> None:
    """Print the warnings held back so far (see :func:`_show_once`)."""
    while _PENDING:
        _default_show(*_PENDING.pop(0))


def _drop_pending_warnings() -> None:
    for message, category, *_ in _PENDING:
        _SHOWN.discard(f"{category.__name__}:{message}")
    _PENDING.clear()


def main(argv=None):
    """Console-script entry point."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    warnings.formatwarning = _format_warning
    warnings.showwarning = _show_once
    from ..hooks import WRITE_STARTED

    if flush_warnings not in WRITE_STARTED:
        WRITE_STARTED.append(flush_warnings)
    try:
        cli.main(args=argv, prog_name="cryoxplain", standalone_mode=True)
    except CryoxplainError as exc:  # raised outside a command (e.g. while loading one)
        _drop_pending_warnings()
        click.echo(f"cryoxplain: error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    finally:
        flush_warnings()
