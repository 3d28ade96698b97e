"""Find DCM tiles in what DLR delivers: a folder searched recursively for tile ZIPs or unzipped tile
folders, or one tile ZIP. Tiles are read in place (GDAL ``/vsizip/`` for ZIPs): nothing is unpacked.

Each tile product found becomes a :class:`TileSource` (its layers as GDAL paths). A tile lacking a required
layer is kept with a ``problem`` (so the sites that need it are reported with the reason); a file that is not
a DCM tile at all (a ZIP without DCM layers, an unreadable ZIP) becomes a :class:`SourceProblem`.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from minescape.dcm.layers import REQUIRED_LAYERS, Layer, MapKind, parse_layer_name
from minescape.dcm.tiles import TileName
from minescape.errors import MissingInputError

MAX_ZIP_MEMBERS = 10_000  # a DLR tile ZIP holds tens of files; more is not a tile


@dataclass(frozen=True)
class TileSource:
    """One DCM tile product (one tile, one map kind) found on disk.

    Attributes:
        tile: the 1° tile.
        kind: LAST or FIRST.
        source: the ZIP file or the product folder it was found in.
        layers: ``(layer, GDAL path)`` pairs (``/vsizip/...`` inside ZIPs), sorted.
        problem: why the tile cannot be used (e.g. a missing DATE layer), or None.
    """

    tile: TileName
    kind: MapKind
    source: Path
    layers: tuple[tuple[Layer, str], ...]
    problem: str | None = None

    def path(self, layer: Layer) -> str:
        """GDAL path of ``layer`` (KeyError when absent: check :attr:`problem` first)."""
        return dict(self.layers)[layer]

    @property
    def label(self) -> str:
        """``S23E116 LAST (file.zip)`` for messages."""
        return f"tile {self.tile.name} {self.kind.value} ({self.source.name})"


@dataclass(frozen=True)
class SourceProblem:
    """A file found in the delivery that is not a usable DCM tile, and why."""

    path: Path
    reason: str

    def line(self) -> str:
        """One line naming the file and the problem."""
        return f"{self.path}: {self.reason}"


def _unsafe(member: str) -> bool:
    r"""Whether a ZIP member's name would escape the tile's folder: absolute (``/x``, ``\x``, a UNC
    ``//server/x``), a drive letter (``C:``) or a ``..`` part, with either separator."""
    p = PurePosixPath(member.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(member) > 1 and member[1] == ":")


def vsizip_member(member: str) -> str | None:
    r"""The name under which GDAL's ``/vsizip/`` finds a ZIP member, or None where it finds none.

    GDAL lists a member under its stored name with one leading ``./`` removed, then ``\`` written ``/`` (so
    ``.\a\b.tif`` is ``./a/b.tif`` while ``./a/./b.tif`` is ``a/./b.tif``: the name is not compacted further), and
    leaves out every member whose listed name is empty, starts with ``/`` or repeats a separator (``a//b.tif``):
    no ``/vsizip/`` path opens those (GDAL ``cpl_vsil_abstract_archive.cpp``, ``GetStrippedFilename`` and
    ``GetContentOfArchive``; checked with GDAL 3.10). The one mapping from a member to its GDAL path: a name
    normalised any other way (``posixpath.normpath``) names a member GDAL does not have.

    >>> vsizip_member("./TDM1_X\\DCM\\a.tif"), vsizip_member("TDM1_X/./DCM/a.tif"), vsizip_member("TDM1_X//DCM/a.tif")
    ('TDM1_X/DCM/a.tif', 'TDM1_X/./DCM/a.tif', None)
    """
    name = (member[2:] if member.startswith("./") else member).replace("\\", "/").removesuffix("/")
    return None if not name or name.startswith("/") or "//" in name else name


#: The product version at the end of a layer's name (``..._LAST1622_V01_C.tif`` -> ``V01_C``).
_VERSION = re.compile(r"1622_(?P<version>[^/\\]*?)\.tiff?$", re.IGNORECASE)


def _version(gdal_path: str) -> str:
    m = _VERSION.search(gdal_path)
    return m["version"].upper() if m else ""


def _group(found: list[tuple[TileName, MapKind, Layer, str]], source: Path) -> list[TileSource]:
    """The tile products among ``found`` layers: one per tile, map kind and product version (layers of two
    versions in one folder, a flattened copy, are two products, never one of mixed layers)."""
    groups: dict[tuple[TileName, MapKind, str], dict[Layer, str]] = {}
    for tile, kind, layer, gdal_path in sorted(found, key=lambda t: (t[0], t[1].value, t[2].value, t[3])):
        groups.setdefault((tile, kind, _version(gdal_path)), {}).setdefault(layer, gdal_path)
    out = []
    for (tile, kind, _), layers in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].value, kv[0][2])):
        missing = [lay.value.rstrip("_") for lay in REQUIRED_LAYERS if lay not in layers]
        problem = None
        if missing:
            problem = (f"tile {tile.name} {kind.value} has no {' / '.join(missing)} layer "
                       f"(expected TDM1_DCM__10_{tile.name}_<{'|'.join(missing)}>*{kind.value}1622_*.tif)")
        out.append(TileSource(tile, kind, source, tuple(sorted(layers.items(), key=lambda kv: kv[0].value)),
                              problem))
    return out


def scan_zip(path: Path) -> tuple[list[TileSource], list[SourceProblem]]:
    """The tile products inside one ZIP (read through ``/vsizip/``), or the problem with the file."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        return [], [SourceProblem(path, f"not a readable ZIP ({exc})")]
    if len(infos) > MAX_ZIP_MEMBERS:
        return [], [SourceProblem(path, f"not a DCM tile: {len(infos)} members (a tile ZIP holds tens)")]
    bad = [i.filename for i in infos if _unsafe(i.filename)]
    if bad:
        return [], [SourceProblem(path, f"unsafe member path {bad[0]!r} (absolute or with '..'); not read")]
    found = []
    for info in infos:
        if info.is_dir():
            continue
        parsed = parse_layer_name(PurePosixPath(info.filename.replace("\\", "/")).name)  # Windows zippers: '\\'
        if parsed is None:
            continue
        name = vsizip_member(info.filename)  # the member as GDAL finds it
        if name is None:
            return [], [SourceProblem(path, f"member {info.filename!r} repeats a path separator ('//'): GDAL cannot "
                                            "read it inside the ZIP; unzip the tile or zip it again")]
        found.append((*parsed, f"/vsizip/{path.resolve().as_posix()}/{name}"))
    if not found:
        return [], [SourceProblem(path, "not a TanDEM-X DCM tile: no TDM1_DCM__10_<tile>_<DCM_|DATE|HAI_|CIM_>*"
                                        "<FIRST|LAST>1622_*.tif inside")]
    return _group(found, path), []


def _product_root(file: Path, tile: TileName) -> Path:
    """The product folder of an unzipped layer: the nearest ancestor named ``TDM1_DCM__10_<tile>_...``, else
    the layer's folder (its parent when that is ``DCM`` or ``DCM_AUXFILES``)."""
    for parent in file.parents:
        if parent.name.upper().startswith(f"TDM1_DCM__10_{tile.name}_"):
            return parent
    parent = file.parent
    return parent.parent if parent.name.upper() in ("DCM", "DCM_AUXFILES") else parent


def walk_delivery(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` for ``folder`` and every folder below it, in a stable order; names starting
    with a dot (hidden files and folders) are left out and symbolic links to folders are not followed. The one
    walk of a delivery: :func:`discover_tiles` reads what it yields, and the index cache keys on it."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def discover_tiles(path: str | Path) -> tuple[list[TileSource], list[SourceProblem]]:
    """All tile products under ``path`` (a folder searched recursively, or one ZIP), in a stable order.

    Returns:
        ``(tiles, problems)``: the tiles (some may carry a ``problem``) and the files that are not tiles.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError("DCM delivery not found", path=path)
    if path.is_file():
        return scan_zip(path)
    tiles: list[TileSource] = []
    problems: list[SourceProblem] = []
    loose: dict[Path, list[tuple[TileName, MapKind, Layer, str]]] = {}
    for dirpath, filenames in walk_delivery(path):
        for fname in filenames:
            f = dirpath / fname
            if fname.lower().endswith(".zip"):
                t, p = scan_zip(f)
                tiles.extend(t)
                problems.extend(p)
                continue
            parsed = parse_layer_name(fname)
            if parsed is not None:
                loose.setdefault(_product_root(f, parsed[0]), []).append((*parsed, str(f)))
    for root, found in sorted(loose.items()):
        tiles.extend(_group(found, root))
    return tiles, problems
