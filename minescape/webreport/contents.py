"""What a report shows, as plain values: collected from a run folder, rendered without reading files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minescape.webreport.overlay import Overlay


@dataclass(frozen=True)
class Missing:
    """Something the report expected and could not show, and why (e.g. ``"sites.json", "not valid JSON"``)."""

    what: str
    why: str


@dataclass(frozen=True)
class Table:
    """A summary table: ``rows`` hold plain values (str, int, float or None), one per column."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG the run already drew (confusion matrix, OA per unit, ...)."""

    title: str
    path: Path


@dataclass(frozen=True)
class FeatureLayer:
    """Polygons for the map, in EPSG:4326.

    Attributes:
        name: layer name in the layer switcher.
        features: GeoJSON Feature dicts (coordinates rounded to 1e-6 degrees, about 0.1 m); ``properties``
            hold what a click shows (``id``, ``status``, ``color``, ...).
        kind: ``sites`` (one polygon per mining site, a click shows the site) or ``classes`` (class polygons
            of a release, a click shows class, area and year).
        site_overlays: per-site class maps ``{site id: Overlay}``, drawn when the site is in view.
        note: how the polygons were obtained when not from the run's own source (shown under the map).
    """

    name: str
    features: list[dict]
    kind: str = "sites"
    site_overlays: dict[str, Overlay] = field(default_factory=dict)
    note: str = ""


@dataclass
class Section:
    """One part of a run (an LULC run, a change run, a release, a validation) and what it contributes."""

    title: str
    kind: str
    folder: Path
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)
    layers: list[FeatureLayer] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)


@dataclass
class RunContents:
    """Everything a report of ``run_dir`` shows; ``missing`` lists what it could not (the run as a whole)."""

    run_dir: Path
    title: str
    sections: list[Section] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    @property
    def all_missing(self) -> list[Missing]:
        """The run's and every section's missing items."""
        return self.missing + [m for s in self.sections for m in s.missing]

    @property
    def n_site_features(self) -> int:
        """Site polygons on the map (all sections)."""
        return sum(len(layer.features) for s in self.sections for layer in s.layers if layer.kind == "sites")
