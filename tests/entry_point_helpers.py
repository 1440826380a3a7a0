"""Helpers for the entry-point discovery tests (explainers and architectures)."""
import re
from pathlib import Path

from conftest import REPO


def install_distribution(tmp_path: Path, module: str, source: str, group: str, entries: dict,
                         version: str = "0.1") -> Path:
    """A minimal installed distribution under ``tmp_path/site``: ``module.py`` holding ``source``
    plus a dist-info whose ``entry_points.txt`` declares ``entries`` (name → value) in ``group``.
    Returns the site folder (put it on ``sys.path``)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return site


def doc_python_block(page: str, marker: str) -> str:
    """The one ```python block of ``docs/<page>`` that contains ``marker``."""
    text = (REPO / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    src = [b for b in blocks if marker in b]
    assert len(src) == 1, f"docs/{page}: {len(src)} python blocks contain {marker!r}, expected 1"
    return src[0]
