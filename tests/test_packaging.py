"""Every package folder is listed in pyproject (the plugins live under a mapped directory)."""
import tomllib

from conftest import REPO


def test_all_packages_listed():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for root, prefix in (("cryoxplain", "cryoxplain"), ("plugins", "cryoxplain_plugins")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root)
            found.add(".".join((prefix,) + rel.parts))
    assert found - listed == set(), f"packages missing from pyproject: {sorted(found - listed)}"
