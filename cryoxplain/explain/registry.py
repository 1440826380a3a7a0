"""Explainer discovery: ONLY through the entry-point group ``cryoxplain.explainers``.

The core never imports ``cryoxplain_plugins`` directly; built-in plugins are registered in our
``pyproject.toml`` exactly as a third party would register theirs.  A plugin that fails to load
is reported (with its error) instead of breaking the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ..errors import PluginError
from .base import API_VERSION, Explainer

GROUP = "cryoxplain.explainers"


@dataclass
class PluginRecord:
    name: str
    entry_point: EntryPoint
    cls: type | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.cls is not None


def _entry_points() -> dict[str, EntryPoint]:
    eps = {}
    for ep in entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)  # first distribution on sys.path wins, as for imports
    return eps


def _load(ep: EntryPoint) -> PluginRecord:
    try:
        cls = ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the others
        return PluginRecord(ep.name, ep, None, f"{type(exc).__name__}: {exc}")
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        return PluginRecord(ep.name, ep, None, f"{ep.value} is not an Explainer subclass")
    if getattr(cls, "api_version", None) != API_VERSION:
        return PluginRecord(ep.name, ep, None, f"plugin API version {getattr(cls, 'api_version', None)} != {API_VERSION}")
    return PluginRecord(ep.name, ep, cls, None)


def list_plugins() -> list[PluginRecord]:
    """All registered explainers, loaded, including the ones that failed (with their error)."""
    return [_load(ep) for _, ep in sorted(_entry_points().items())]


def get_explainer(name: str) -> type[Explainer]:
    """The explainer class registered under ``name``."""
    eps = _entry_points()
    if name not in eps:
        raise PluginError(f"unknown explainer {name!r}; installed: {', '.join(sorted(eps)) or 'none'} (see `cryoxplain plugins`)")
    rec = _load(eps[name])
    if not rec.ok:
        raise PluginError(f"explainer {name!r} failed to load: {rec.error}")
    return rec.cls


def create_explainer(name: str, **params) -> Explainer:
    """Instantiate explainer ``name`` with parameters (strings are parsed by the declarations)."""
    return get_explainer(name)(**params)


def describe_plugins() -> str:
    """Human-readable listing of every registered explainer (broken ones with their error)."""
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
