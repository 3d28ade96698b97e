"""Validate a release: schema, feature cap, ids, geometries, areas, classes and years.

A release is a folder (made by :func:`minescape.publish.release.publish` or laid out like the published
dataset: GeoPackages, possibly inside ZIP files, optionally a ``manifest.json``) or one or more ZIP or
GPKG files. Every violation is reported with its file, fid and problem; nothing stops at the first.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import CRS

from minescape.errors import InputError, MissingInputError
from minescape.geo.vector import geodesic_area
from minescape.jsonfile import read_json
from minescape.legend import MINING_LULC, Legend
from minescape.publish.release import MANIFEST, README, sha256_file

REQUIRED = {"index_n": "integer", "class_name": "text", "area_m2": "real", "year": "integer"}
_KIND = {"integer": ("int",), "text": ("object", "str"), "real": ("float",)}


@dataclass(frozen=True)
class Violation:
    """One problem: the file (``zip/member`` for files inside ZIPs), the fid (None: whole file)."""

    file: str
    fid: int | None
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {'fid ' + str(self.fid) + ': ' if self.fid is not None else ''}{self.problem}"


@dataclass
class InspectReport:
    """Result of :func:`inspect_release`."""

    files: list[str] = field(default_factory=list)
    features: int = 0
    violations: list[Violation] = field(default_factory=list)
    by_class_year: dict[tuple[str, int], list] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.violations


def _gpkg_sources(paths: list[Path], tmp: Path) -> Iterator[tuple[str, Path]]:
    """(label, local path) of every GeoPackage in folders, ZIPs and GPKG files (ZIP members extracted)."""
    files: list[tuple[Path, str]] = []  # (file, its label: the path below the folder given, as the manifest)
    for p in paths:
        if p.is_dir():
            files += [(q, q.relative_to(p).as_posix()) for q in sorted(p.rglob("*"))
                      if q.suffix.lower() in (".zip", ".gpkg") and not q.name.startswith(".")]
        elif p.exists():
            files.append((p, p.name))
        else:
            raise MissingInputError("release not found", path=p)
    for f, name in files:
        if f.suffix.lower() == ".gpkg":
            yield name, f
        elif zipfile.is_zipfile(f):
            try:
                with zipfile.ZipFile(f) as zf:
                    members = sorted((i for i in zf.infolist() if i.filename.lower().endswith(".gpkg")),
                                     key=lambda i: i.filename)
                    names = [i.filename for i in members]
                    twice = sorted({n for n in names if names.count(n) > 1})
                    if twice:  # unzipping keeps one of them: the release would not be what was checked
                        raise InputError(f"member {twice[0]} is in the ZIP more than once", path=f)
                    for info in members:
                        check_member(f, info, tmp)  # before a byte is extracted
                        target = tmp / "x.gpkg"
                        with zf.open(info) as src, open(target, "wb") as dst:
                            written = 0
                            while chunk := src.read(1 << 20):
                                written += len(chunk)
                                if written > info.file_size:  # zipfile stops at the declared size; be sure
                                    raise InputError(f"member {info.filename} holds more than it declares",
                                                     path=f)
                                dst.write(chunk)
                        yield f"{name}/{info.filename}", target
                        target.unlink()
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InputError(f"damaged ZIP file ({exc})", path=f) from None
        else:
            raise InputError("not a ZIP or GeoPackage file", path=f)


#: Largest GeoPackage inside a ZIP that ``inspect`` extracts (declared uncompressed bytes). A shard of 5,000
#: features is a few MB; larger members are refused before anything is extracted.
MAX_MEMBER_BYTES = 4 * 1024**3
#: Largest compression ratio (uncompressed / compressed) accepted for a member: GeoPackage shards compress
#: about 5-10 times; DEFLATE bombs reach ~1000.
MAX_RATIO = 200


def check_member(zip_path: Path, info: zipfile.ZipInfo, tmp: Path) -> None:
    """Refuse a ZIP member before extracting it: a declared size above :data:`MAX_MEMBER_BYTES`, a
    compression ratio above :data:`MAX_RATIO` (a ZIP bomb), or more bytes than the extraction folder has free.
    """
    import shutil

    name = f"member {info.filename}"
    if info.flag_bits & 0x1:
        raise InputError(f"{name} is encrypted (a release's shards are not); not extracted", path=zip_path)
    if info.file_size > MAX_MEMBER_BYTES:
        raise InputError(f"{name} declares {info.file_size:,} bytes uncompressed, above the limit of "
                         f"{MAX_MEMBER_BYTES:,} bytes; not extracted", path=zip_path)
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > (1 << 20) and ratio > MAX_RATIO:
        raise InputError(f"{name} expands {ratio:,.0f} times ({info.compress_size:,} -> {info.file_size:,} bytes), "
                         f"above the limit of {MAX_RATIO} (a ZIP bomb?); not extracted", path=zip_path)
    free = shutil.disk_usage(tmp).free
    if info.file_size > free:
        raise InputError(f"{name} needs {info.file_size:,} bytes to check, the temporary folder {tmp} has "
                         f"{free:,} free; not extracted", path=zip_path)


def _manifest(paths: list[Path]) -> tuple[dict | None, Path | None]:
    for p in paths:
        if p.is_dir() and (p / MANIFEST).exists():
            return check_manifest(read_json(p / MANIFEST, "release manifest"), p / MANIFEST), p
    return None, None


def check_manifest(manifest: dict, path: Path) -> dict:
    """The manifest if the fields ``inspect`` reads have their published types (InputError naming the field
    otherwise): ``max_features_per_file`` an integer >= 1, ``extra_columns`` a list of names, ``sha256`` an
    object of relative file names (inside the release; no ``..``, no absolute path) to 64-hex digests."""
    def bad(what: str) -> InputError:
        return InputError(f"malformed release manifest: {what}", path=path)

    cap = manifest.get("max_features_per_file")
    if cap is not None and (type(cap) is not int or cap < 1):
        raise bad(f"'max_features_per_file' must be an integer >= 1 (got {cap!r})")
    extra = manifest.get("extra_columns", [])
    if not isinstance(extra, list) or not all(isinstance(c, str) for c in extra):
        raise bad("'extra_columns' must be a list of column names")
    digests = manifest.get("sha256", {})
    if not isinstance(digests, dict):
        raise bad("'sha256' must be an object of file name -> SHA-256")
    for name, digest in digests.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise bad(f"file name {name!r} in 'sha256' leaves the release folder")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise bad(f"'sha256' of {name!r} is not a 64-digit hex digest")
    return manifest


def inspect_release(
    release: str | Path | list[str | Path],
    *,
    max_features: int | None = None,
    area_rtol: float = 1e-4,
    years: tuple[int, int] = (1984, 2100),
    allow_extra_columns: bool = False,
    legend: Legend = MINING_LULC,
) -> InspectReport:
    """Check a release and summarise it.

    Args:
        release: a release folder, or ZIP/GPKG files (or a list of them).
        max_features: features allowed per GPKG (default: the manifest's value, else 5,000).
        area_rtol: allowed relative difference between ``area_m2`` and the geometry's area on the
            WGS84 ellipsoid (``pyproj.Geod``).
        years: inclusive range of plausible years.
        allow_extra_columns: accept columns beyond the five published ones (the manifest's
            ``extra_columns`` are always accepted).
        legend: the legend whose names ``class_name`` must use.

    Returns:
        An :class:`InspectReport` (violations, features, area per class and year).
    """
    paths = [Path(p) for p in (release if isinstance(release, list) else [release])]
    manifest, root = _manifest(paths)
    cap = max_features or (manifest or {}).get("max_features_per_file") or 5000
    extras = set((manifest or {}).get("extra_columns", []))
    report = InspectReport()
    seen_index: dict[int, tuple[str, int]] = {}
    names = set(legend.names)
    members = _check_hashes(manifest, root, report) if manifest is not None else set()
    with tempfile.TemporaryDirectory(prefix="minescape-inspect-") as tmp:
        for label, path in _gpkg_sources(paths, Path(tmp)):
            report.files.append(label)
            if label in members:
                members.discard(label)
                if sha256_file(path) != manifest["sha256"][label]:
                    report.violations.append(Violation(label, None, "SHA-256 differs from manifest.json"))
            _check_file(label, path, report, cap=cap, rtol=area_rtol, years=years, names=names,
                        extras=extras, allow_extra=allow_extra_columns, seen_index=seen_index)
    if root is not None and root in paths:  # members the manifest lists that no ZIP holds
        report.violations += [Violation(m, None, "listed in manifest.json but missing") for m in sorted(members)]
    if not report.files:
        raise InputError("no GeoPackage files found", path=paths[0])
    return report


def _check_hashes(manifest: dict, root: Path, report: InspectReport) -> set[str]:
    """Check the files the manifest lists (any depth below ``root``); return the keys that are members of a ZIP
    (``zips/a.zip/s.gpkg``), which are checked as they are read."""
    members: set[str] = set()
    for rel, digest in manifest.get("sha256", {}).items():
        f = root / rel
        parts = rel.split("/")
        in_zip = next((i for i in range(1, len(parts)) if "/".join(parts[:i]).lower().endswith(".zip")
                       and (root / "/".join(parts[:i])).is_file()), None)
        if in_zip is not None and not f.is_file():
            members.add(rel)
        elif not f.is_file():
            report.violations.append(Violation(rel, None, "listed in manifest.json but missing"))
        elif sha256_file(f) != digest:
            report.violations.append(Violation(rel, None, "SHA-256 differs from manifest.json"))
    if not (root / README).exists():
        report.violations.append(Violation(README, None, "missing"))
    return members


def _check_file(label, path, report, *, cap, rtol, years, names, extras, allow_extra, seen_index) -> None:
    bad = report.violations.append
    try:
        layers = [(n, g) for n, g in pyogrio.list_layers(path)]
    except Exception as exc:  # unreadable file
        bad(Violation(label, None, f"not a readable GeoPackage ({str(exc).splitlines()[0][:100]})"))
        return
    spatial = [n for n, g in layers if g is not None]
    if not spatial:
        bad(Violation(label, None, "no polygon layer"))
        return
    if len(spatial) > 1:  # the cap is per file: layers side by side would hold more features than it
        bad(Violation(label, None, f"{len(spatial)} polygon layers ({', '.join(spatial)}); published files "
                                   "hold one"))
    before = report.features
    for layer in spatial:
        where = label if len(spatial) == 1 else f"{label}:{layer}"
        meta, fids, wkb, data = pyogrio.raw.read(path, layer=layer, return_fids=True)
        fields = list(meta["fields"])
        dtypes = [str(d) for d in meta["dtypes"]]
        col = dict(zip(fields, data, strict=True))
        n = len(fids)
        report.features += n
        if not meta.get("crs"):
            bad(Violation(where, None, "layer has no CRS"))
        for fname, kind in REQUIRED.items():
            if fname not in col:
                bad(Violation(where, None, f"missing field {fname!r} ({kind})"))
            elif not dtypes[fields.index(fname)].startswith(_KIND[kind]):
                found = dtypes[fields.index(fname)]
                bad(Violation(where, None, f"field {fname!r} is {found}, expected {kind}"))
        for fname in fields:
            if fname not in REQUIRED and fname != "fid" and fname not in extras and not allow_extra:
                bad(Violation(where, None, f"unexpected field {fname!r} (published files have exactly "
                                           f"fid, {', '.join(REQUIRED)})"))
        if n > cap:
            bad(Violation(where, None, f"{n} features, more than the cap of {cap}"))
        elif len(spatial) > 1 and layer == spatial[-1] and report.features - before > cap:
            bad(Violation(label, None, f"{report.features - before} features in the file's layers together, "
                                       f"more than the cap of {cap}"))
        fids = np.asarray(fids, dtype=np.int64)
        for label_fid, values in (("fid", fids), ("fid column", col.get("fid"))):
            if values is None:
                continue
            uniq, counts = np.unique(np.asarray(values), return_counts=True)
            for v in uniq[counts > 1]:
                times = counts[uniq == v][0]
                bad(Violation(where, int(v), f"{label_fid} {int(v)} is not unique in the file ({times}x)"))
        geoms = shapely.from_wkb(wkb)
        _check_geometries(where, fids, geoms, col, meta, report, rtol=rtol)
        if "index_n" in col:
            idx = col["index_n"]
            for fid, raw, v in zip(fids.tolist(), np.asarray(idx).tolist(), _numbers(idx).tolist(), strict=True):
                if raw is None or (isinstance(raw, float) and np.isnan(raw)):
                    bad(Violation(where, fid, "index_n is null"))
                    continue
                if not np.isfinite(v) or not v.is_integer():
                    bad(Violation(where, fid, f"index_n {raw!r} is not an integer"))
                    continue
                v = int(v)
                if v in seen_index:
                    f0, fid0 = seen_index[v]
                    bad(Violation(where, fid, f"index_n {v} already used by {f0} fid {fid0}"))
                else:
                    seen_index[v] = (where, fid)
        cls = col.get("class_name")
        if cls is not None:
            for fid, v in zip(fids.tolist(), cls.tolist(), strict=True):
                if v not in names:
                    valid = ", ".join(sorted(names))
                    bad(Violation(where, fid, f"class_name {v!r} is not in the legend ({valid})"))
        yr = col.get("year")
        year_nums = _numbers(yr) if yr is not None else None
        if yr is not None:
            for fid, raw, v in zip(fids.tolist(), np.asarray(yr).tolist(), year_nums.tolist(), strict=True):
                if not np.isfinite(v) or not v.is_integer() or not years[0] <= int(v) <= years[1]:
                    bad(Violation(where, fid, f"year {raw!r} is not an integer in {years[0]}..{years[1]}"))
        if cls is not None and yr is not None and "area_m2" in col:
            area = _numbers(col["area_m2"])
            for c, y, a in zip(cls.tolist(), year_nums.tolist(), area.tolist(), strict=True):
                year = int(y) if np.isfinite(y) and y.is_integer() else -1
                entry = report.by_class_year[(str(c), year)]
                entry[0] += 1
                entry[1] += a if np.isfinite(a) else 0.0


def _numbers(values) -> np.ndarray:
    """``values`` of a field as float64, NaN where missing or not a number (a text year or area: its field type
    is reported as a violation, and its values are reported one by one instead of stopping the inspection)."""
    import pandas as pd

    return pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(dtype=np.float64)


def _check_geometries(where, fids, geoms, col, meta, report, *, rtol) -> None:
    bad = report.violations.append
    is_null = shapely.is_missing(geoms)
    empty = ~is_null & shapely.is_empty(geoms)
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (3, 6))
    valid = np.zeros(len(geoms), dtype=bool)
    ok = ~is_null & ~empty & polygonal
    valid[ok] = shapely.is_valid(geoms[ok])
    for i in np.nonzero(~ok | ~valid)[0]:
        if is_null[i]:
            why = "geometry is null"
        elif empty[i]:
            why = "geometry is empty"
        elif not polygonal[i]:
            why = f"geometry is a {shapely.get_type_id(geoms[i])} type, not a polygon"
        else:
            why = f"invalid geometry ({shapely.is_valid_reason(geoms[i])})"
        bad(Violation(where, int(fids[i]), why))
    if "area_m2" not in col or not meta.get("crs"):
        return
    try:
        crs = CRS.from_user_input(meta["crs"])
    except Exception:
        bad(Violation(where, None, f"unreadable CRS {meta['crs']!r}"))
        return
    good = ok & valid
    truth = np.full(len(geoms), np.nan)
    if good.any():
        truth[good] = geodesic_area(geoms[good], crs)
    raw = np.asarray(col["area_m2"])
    area = _numbers(raw)
    for i in np.nonzero(good & ~np.isfinite(area))[0]:
        bad(Violation(where, int(fids[i]), f"area_m2 {raw[i]!r} is not a number"))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(area - truth) / truth
    for i in np.nonzero(good & np.isfinite(area) & ~(rel <= rtol))[0]:
        bad(Violation(where, int(fids[i]), f"area_m2 {area[i]:.3f} differs from the geometry's ellipsoidal "
                                           f"area {truth[i]:.3f} m² (relative {rel[i]:.2e} > {rtol:g})"))


def summary_table(report: InspectReport, title: str = "release"):
    """A Rich table: features and area (km²) per class and year, with a total row."""
    from rich.table import Table

    table = Table(title=f"{title}: {len(report.files)} files, {report.features:,} features")
    table.add_column("class_name")
    for name in ("year", "features", "area km²"):
        table.add_column(name, justify="right")
    total_n, total_a = 0, 0.0
    for (cls, year), (n, area) in sorted(report.by_class_year.items()):
        table.add_row(cls, str(year), f"{n:,}", f"{area / 1e6:,.3f}")
        total_n, total_a = total_n + n, total_a + area
    table.add_row("[bold]total[/]", "", f"[bold]{total_n:,}[/]", f"[bold]{total_a / 1e6:,.3f}[/]")
    return table
