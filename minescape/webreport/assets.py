"""The files a report loads beside ``report.html``: the vendored Leaflet and the page's own script and style.

Leaflet comes from the npm registry (``leaflet@LEAFLET_VERSION``, BSD-2-Clause; see
``vendor/leaflet/README.md``)
and ships as package data, so a report needs no network when it is written or viewed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

LEAFLET_VERSION = "1.9.4"
PACKAGE_DIR = Path(__file__).parent
LEAFLET_DIR = PACKAGE_DIR / "vendor" / "leaflet"
STATIC_DIR = PACKAGE_DIR / "static"
LEAFLET_FILES = ("leaflet.js", "leaflet.css", "LICENSE", "README.md")


def copy_assets(files_dir: Path) -> None:
    """Copy Leaflet (``leaflet/``, images, licence) and ``report.js``/``report.css`` into ``files_dir``.

    Raises:
        FileNotFoundError: the package data is missing (a broken install).
    """
    (files_dir / "leaflet" / "images").mkdir(parents=True, exist_ok=True)
    for name in LEAFLET_FILES:
        shutil.copyfile(LEAFLET_DIR / name, files_dir / "leaflet" / name)
    for png in sorted((LEAFLET_DIR / "images").glob("*.png")):
        shutil.copyfile(png, files_dir / "leaflet" / "images" / png.name)
    for name in ("report.js", "report.css"):
        shutil.copyfile(STATIC_DIR / name, files_dir / name)
