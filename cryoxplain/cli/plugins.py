"""``cryoxplain plugins``: the installed explainers, their parameters and references
(thin wrapper over :func:`cryoxplain.explain.registry.list_plugins`)."""
from __future__ import annotations

import click


def describe_plugins() -> str:
    """Human-readable listing of every registered explainer (broken ones with their error)."""
    from ..explain.registry import GROUP, list_plugins

    lines = []
    records = list_plugins()
    if not records:
        return f"no explainers installed (entry-point group {GROUP})"
    for rec in records:
        dist = getattr(getattr(rec.entry_point, "dist", None), "name", None) or "?"
        if not rec.ok:
            lines.append(f"{rec.name}  [BROKEN]  ({rec.entry_point.value}, from {dist})")
            lines.append(f"    error: {rec.error}")
            continue
        cls = rec.cls
        lines.append(f"{rec.name}  ({rec.entry_point.value}, from {dist})")
        if cls.reference:
            lines.append(f"    reference: {cls.reference}")
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            lines.append(f"    {doc[0]}")
        html = " · HTML viewer" if callable(getattr(cls, "write_html", None)) else ""
        lines.append(f"    parameters{html}:" if cls.params else f"    parameters: none{html}")
        for p in cls.params:
            extra = []
            if p.choices:
                extra.append("one of " + "|".join(map(str, p.choices)))
            if p.min is not None:
                extra.append(f"≥ {p.min:g}")
            if p.max is not None:
                extra.append(f"≤ {p.max:g}")
            rng = f" [{', '.join(extra)}]" if extra else ""
            lines.append(f"      {p.name + '=' + str(p.default):<34} {p.type.__name__:<6} {p.help}{rng}")
    return "\n".join(lines)


@click.command("plugins")
def plugins():
    """List the installed explainer plugins with parameters, defaults and paper references."""
    click.echo(describe_plugins())
