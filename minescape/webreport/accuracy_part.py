"""Accuracy tables from the metrics minescape writes: a confusion matrix with OA, kappa and per-class
PA/UA/F1 (``lulc evaluate``'s ``metrics.json``, the ``sample`` block of ``map validate``), and area-adjusted
estimates with 95 % intervals (the ``area_weighted`` block of ``map validate``'s ``validation.json``); also
the section of a validation folder. Confusion-matrix rows are the reference classes, columns the mapped ones.
"""

from __future__ import annotations

from pathlib import Path

from minescape.webreport.contents import Figure, Section, Table
from minescape.webreport.part_json import read_part_json


def _r(v, nd: int = 3):
    return None if v is None else round(float(v), nd)


def accuracy_tables(m: dict, *, title: str) -> list[Table]:
    """Tables of a confusion-matrix metrics dict.

    Keys read: ``classes``, ``confusion_matrix``, ``overall_accuracy``,
    ``kappa``, ``producers_accuracy``, ``users_accuracy``, ``f1``, ``n``); missing keys are left out.
    """
    out: list[Table] = []
    classes = [str(c) for c in m.get("classes") or []]
    summary = [
        (k, _r(m.get(key), 4))
        for k, key in (("overall accuracy", "overall_accuracy"), ("kappa", "kappa"))
        if m.get(key) is not None
    ]
    if m.get("n") is not None:
        summary.append(("n (pixels or points)", int(m["n"])))
    if summary:
        out.append(Table(title, ("measure", "value"), tuple(summary)))
    cm = m.get("confusion_matrix")
    if classes and isinstance(cm, list) and len(cm) == len(classes):
        out.append(
            Table(
                "Confusion matrix (rows: reference, columns: mapped)",
                ("reference \\ mapped", *classes),
                tuple((c, *row) for c, row in zip(classes, cm, strict=True)),
            )
        )
    per = [
        (
            c,
            _r((m.get("producers_accuracy") or {}).get(c)),
            _r((m.get("users_accuracy") or {}).get(c)),
            _r((m.get("f1") or {}).get(c)),
        )
        for c in classes
    ]
    if any(any(v is not None for v in row[1:]) for row in per):
        out.append(Table("Per class", ("class", "producer's accuracy", "user's accuracy", "F1"), tuple(per)))
    return out


def area_tables(aw: dict, *, unit: str) -> list[Table]:
    """Area-adjusted estimates (``map validate``'s ``area_weighted`` block), each with its 95 % interval."""
    out: list[Table] = []
    if aw.get("overall_accuracy") is not None:
        ci = aw.get("overall_accuracy_ci95")
        out.append(
            Table(
                "Area-weighted overall accuracy",
                ("measure", "value", "± 95 % CI"),
                (("overall accuracy", _r(aw["overall_accuracy"], 4), _r(ci, 4)),),
            )
        )
    est = aw.get("estimated_area") or {}
    if est:
        g = lambda key, c: (aw.get(key) or {}).get(c)  # noqa: E731
        rows = tuple(
            (
                c,
                g("n_per_stratum", c),
                _r(g("mapped_area", c), 6),
                _r(est[c], 6),
                _r(g("estimated_area_ci95", c), 6),
                _r(g("users_accuracy", c)),
                _r(g("users_accuracy_ci95", c)),
                _r(g("producers_accuracy", c)),
                _r(g("producers_accuracy_ci95", c)),
            )
            for c in est
        )
        out.append(
            Table(
                f"Area-adjusted estimates ({unit})",
                (
                    "class",
                    "n",
                    f"mapped ({unit})",
                    f"estimated ({unit})",
                    "± 95 % CI",
                    "user's acc.",
                    "± 95 % CI",
                    "producer's acc.",
                    "± 95 % CI",
                ),
                rows,
            )
        )
    return out


def collect_validation(folder: Path, *, title: str) -> Section:
    """The section of a ``map validate`` output folder (``validation.json`` and its figures)."""
    sec = Section(title=title, kind="validation", folder=folder)
    v = read_part_json(folder / "validation.json", str(folder / "validation.json"), sec.missing)
    if not isinstance(v, dict):
        v = {}
    if isinstance(v.get("sample"), dict):
        sec.tables += accuracy_tables(v["sample"], title="Sample accuracy (unweighted)")
    if isinstance(v.get("area_weighted"), dict):
        sec.tables += area_tables(v["area_weighted"], unit=str(v.get("area_unit", "km2")))
    if v.get("legend"):
        sec.facts.append(("legend", str(v["legend"])))
    sec.figures += [Figure(p.stem.replace("_", " "), p) for p in sorted(folder.glob("*.png"))]
    return sec
