"""``cryoxplain plugins``: the installed explainers (parameters, defaults, references) and model
architectures (thin wrapper over :func:`cryoxplain.explain.registry.describe_plugins` and
:func:`cryoxplain.models.registry.describe_architectures`)."""
from __future__ import annotations

import click


def describe_plugins() -> str:
    """Deprecated location: :func:`cryoxplain.explain.registry.describe_plugins`."""
    from ..explain.registry import describe_plugins as _describe

    return _describe()


@click.command("plugins")
def plugins():
    """List the installed explainer plugins (parameters, defaults, paper references) and the
    installed model architectures."""
    from ..explain.registry import describe_plugins as explainers
    from ..models.registry import describe_architectures

    click.echo("explainers (entry-point group cryoxplain.explainers):")
    click.echo(explainers())
    click.echo("\narchitectures (entry-point group cryoxplain.architectures):")
    click.echo(describe_architectures())
