"""A site's DCM from a DLR delivery: change on the site grid, the site year from ``DATE`` and the share of
DCM pixels that were void or masked by the quality layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.dcm.index import DcmIndex, dcm_index
from minescape.dcm.mosaic import MASKED_CIM, MASKED_HAI, NO_DATE, OUTSIDE, VALID, VOID, cells_of, read_dcm_on_grid
from minescape.dcm.options import DcmOptions
from minescape.dcm.tiles import TileName
from minescape.errors import InputError
from minescape.geo.raster import Raster
from minescape.sites import Site, SiteYear, site_year_from_grid


@dataclass(frozen=True)
class SiteDcm:
    """The DCM of one site on its 10 m grid.

    Attributes:
        dh: elevation change (m, float32), NaN outside the site and where void or masked.
        date: acquisition date YYYYMMDD (int32, 0 = none) on the site grid.
        year: the site year (DATE's year at the centroid, else the nearest dated pixel inside).
        date_used: the YYYYMMDD of the pixel that gave the year.
        void_share: share of the site's pixels without DCM data: void (-32767), undated (DATE <= 0) or
            outside every delivered tile.
        masked_share: share masked by the quality layers (HAI above the limit or an excluded CIM class).
        masked_hai_share, masked_cim_share: the two parts of ``masked_share``.
        tiles: labels of the tiles read.
        outside_share: the part of ``void_share`` outside every delivered tile of the map kind read.
        missing_tiles: the 1° tiles holding those pixels (not delivered for that kind).
        notes: what the reader found that a run should report (one line each, naming the missing tiles).
    """

    dh: Raster
    date: np.ndarray
    year: SiteYear
    date_used: int
    void_share: float
    masked_share: float
    masked_hai_share: float
    masked_cim_share: float
    tiles: tuple[str, ...]
    outside_share: float = 0.0
    missing_tiles: tuple[TileName, ...] = ()
    notes: tuple[str, ...] = ()

    def report(self) -> dict:
        """JSON-ready figures for the per-site report."""
        return {"dcm_date": self.date_used, "dcm_void_share": round(self.void_share, 4),
                "dcm_masked_share": round(self.masked_share, 4),
                "dcm_masked_hai_share": round(self.masked_hai_share, 4),
                "dcm_masked_cim_share": round(self.masked_cim_share, 4), "dcm_tiles": list(self.tiles),
                "dcm_outside_share": round(self.outside_share, 4),
                **({"dcm_missing_tiles": [t.name for t in self.missing_tiles]} if self.missing_tiles else {}),
                **({"dcm_notes": list(self.notes)} if self.notes else {})}


def is_delivery(path: str | Path | None) -> bool:
    """True for a DLR delivery (a folder, or a ZIP) rather than a prepared change raster."""
    if path is None:
        return False
    p = Path(path)
    return p.is_dir() or p.suffix.lower() == ".zip"


def read_site_dcm(dcm: str | Path | DcmIndex, site: Site, options: DcmOptions | None = None) -> SiteDcm:
    """Read the site's DCM from a delivery (folder, ZIP or a built index); InputError names the site/tile."""
    options = options or DcmOptions()
    index = dcm if isinstance(dcm, DcmIndex) else dcm_index(dcm)
    what = f"site {site.id}"
    win = read_dcm_on_grid(index, site.grid, options, what=what)
    inside = site.mask()
    if not inside.any():
        raise InputError(f"{what}: polygon covers no pixel centre of its 10 m grid")
    st = win.state[inside]
    n = st.size
    if not (st != OUTSIDE).any():
        raise InputError(f"{what} lies outside every DCM tile it touches ({', '.join(win.tiles) or 'none read'})")
    counts = np.bincount(st, minlength=6)
    outside = counts[OUTSIDE]
    void, hai, cim = counts[VOID] + counts[NO_DATE] + outside, counts[MASKED_HAI], counts[MASKED_CIM]
    missing: tuple[TileName, ...] = ()
    notes: tuple[str, ...] = ()
    if outside:
        missing = tuple(cells_of(site.grid, inside & (win.state == OUTSIDE)))
        names = ", ".join(t.name for t in missing)
        notes = (f"{what}: {outside / n:.1%} of the site lies outside every delivered {options.kind.value} DCM "
                 f"tile (not delivered: {names}); counted as void",)
    dated = win.date[inside] > 0
    if not dated.any():
        if counts[NO_DATE]:
            raise InputError(f"{what}: DATE is 0 (no acquisition date) at every DCM pixel under the site in "
                             f"{', '.join(win.tiles)}; the change cannot be dated")
        raise InputError(f"{what}: no DCM pixel inside the site has data (all void -32767) in "
                         f"{', '.join(win.tiles)}")
    if not counts[VALID]:
        raise InputError(f"{what}: no valid DCM pixel inside the site ({void / n:.0%} void, {hai / n:.0%} with HAI "
                         f"above the limit, {cim / n:.0%} in an excluded CIM class) in {', '.join(win.tiles)}")
    years = np.where(win.date > 0, win.date // 10000, 0).astype(np.int32)
    year = site_year_from_grid(site, years)
    dh = win.dh.data.copy()
    dh[:, ~inside] = np.nan
    return SiteDcm(win.dh.with_data(dh), win.date, year, int(win.date[year.row, year.col]), float(void / n),
                   float((hai + cim) / n), float(hai / n), float(cim / n), win.tiles, float(outside / n), missing,
                   notes)
