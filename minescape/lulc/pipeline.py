"""The per-site mining LULC chain and its multi-site, training and whole-scene entry points.

Per site (:func:`classify_site`): year from the DCM -> clearest scene of that year -> Sentinel-2 stack and DEM
change clipped to the site on its 10 m UTM grid -> features -> knowledge-based rules or a LightGBM model ->
majority filter / minimum mapping unit -> ``OUT/maps/<site_id>.tif`` (uint8 MINING_LULC codes, nodata 0 outside
the polygon, legend colour table, tags ``SITE_ID``, ``YEAR``, ``YEAR_RULE``) and a quicklook PNG.

:func:`classify_sites` runs that over every site through :func:`minescape.runner.run_units` (one bad site is
reported, the others go on) and writes ``OUT/sites.json`` and ``OUT/report/``. :func:`train_from_sites` trains a
model from labels or the rules' confident pixels (weak labels) on chosen sites. :func:`classify_scene` classifies
a whole scene window by window with bounded memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely

from minescape.atomic import atomic_write_text, prepare_output, prune
from minescape.dcm.index import dcm_index
from minescape.dcm.mosaic import read_dcm_on_grid
from minescape.dcm.options import DcmOptions
from minescape.dcm.site import SiteDcm, is_delivery, read_site_dcm
from minescape.errors import ConfigError, InputError, MissingInputError, check_choice
from minescape.geo.pixel_area import code_areas_m2
from minescape.geo.raster import Raster, write_raster
from minescape.geo.vector import FeatureNote
from minescape.imagery.composite import Composite, annual_composite
from minescape.imagery.local_scenes import SceneRef, discover_scenes
from minescape.imagery.settings import ImagerySettings, make_source, resolve_method
from minescape.imagery.sources import ImagerySource, LocalSource, StacSource
from minescape.imagery.stac_search import StacQuery
from minescape.legend import MINING_LULC
from minescape.lulc.features import DEFAULT_WINDOW, FEATURES, SPECTRAL_BANDS, compute_features, feature_matrix
from minescape.lulc.inputs import dh_on_grid, fill_same_date, load_dh, load_stack, rank_scenes, used_cloud_share
from minescape.lulc.model import LulcModel, load_model, sample_pixels, train_model
from minescape.lulc.postprocess import postprocess
from minescape.lulc.rules import classify_rules, load_rules
from minescape.runner import Executor, RunSummary, Unit, run_units, unit_path
from minescape.runstate import fingerprint
from minescape.sites import Site, SiteYear, check_site_size, make_site, read_sites, site_year
from minescape.unfinished import running

DEFAULT_CONFIG: dict = {
    "window": DEFAULT_WINDOW,  # neighbourhood statistics, pixels
    "mmu_m2": 300.0,  # minimum mapping unit in m² (0 = off)
    "majority": 1,  # majority filter window in pixels (1 = off)
    "rules": {},  # overrides of minescape/config/lulc_rules.json
    "quicklook": True,  # write report/quicklooks/<site>.png
    "dcm_map": "last",  # DLR delivery: LAST or FIRST change map (minescape.dcm)
    "dcm_max_hai": 5.0,  # DLR delivery: mask pixels whose HAI exceeds this (m)
    "dcm_keep_cim": [1, 4],  # DLR delivery: CIM classes kept
    "method": "default",  # "default" or "published" (minescape.lulc.published)
    "composite": "auto",  # median | clearest | medoid; auto: median from a STAC catalogue, clearest local scene
    "imagery": {},  # minescape.imagery.settings.ImagerySettings overrides (max_cloud, scl_mask, min_clear, ...)
}


def make_config(config: dict | None = None) -> dict:
    """:data:`DEFAULT_CONFIG` updated with ``config`` (unknown keys raise ConfigError listing the valid ones)."""
    out = json.loads(json.dumps(DEFAULT_CONFIG))
    for key, value in (config or {}).items():
        if key not in out:
            raise ConfigError(f"unknown LULC option {key!r}; choose one of: {', '.join(DEFAULT_CONFIG)}")
        out[key] = value
    if int(out["window"]) < 1 or int(out["window"]) % 2 == 0:
        raise ConfigError(f"window must be an odd number of pixels >= 1 (got {out['window']})")
    load_rules(out["rules"])  # validate
    DcmOptions.from_config(out)  # validate
    check_choice(out["method"], ("default", "published"), what="LULC method")
    resolve_method(out["composite"], from_catalogue=False)  # validate
    ImagerySettings.from_dict(out["imagery"])
    return out


@dataclass
class SiteInputs:
    """Everything the chain has for one site before classification."""

    site: Site
    year: SiteYear
    scene: SceneRef | None  # the clearest local scene; None for a composite
    # share of the polygon's pixels that are cloud-masked (SCL, else the spectral test) in the scene each pixel
    # was taken from, pixels without imagery not counted (see nodata_share); where the chosen scene covers the
    # polygon whole, its ranking share (NaN: the only scene of the year covering the site, nothing read); for a
    # composite, the share without a clear observation
    cloud_share: float
    stack: Raster
    features: Raster
    mask: np.ndarray  # inside the polygon and every feature valid
    composite: Composite | None = None  # the annual composite the stack comes from
    dcm: SiteDcm | None = None  # read from a DLR delivery (None for the two-raster form)
    notes: tuple[str, ...] = ()  # what reading the imagery decided (e.g. a catalogue offset the pixels contradict)
    filled_from: tuple[str, ...] = ()  # same-date scenes that filled what the clearest scene left empty
    nodata_share: float = 0.0  # share of the polygon's pixels without imagery in the stack (nodata in the map)

    @property
    def scene_name(self) -> str:
        """The scene file's name, or ``<method> composite of N scenes``."""
        if self.composite is not None:
            return f"{self.composite.method} composite of {self.composite.n_scenes} scenes"
        return self.scene.source.name  # type: ignore[union-attr]

    @property
    def scene_date(self) -> str:
        """The scene's date, or the composite's year."""
        return str(self.year.year) if self.composite is not None else self.scene.date.isoformat()  # type: ignore


def site_dcm_year(site: Site, dcm_dh: str | Path | None, dcm_year: str | Path | None, *,
                  config: dict) -> tuple[SiteYear, SiteDcm | None]:
    """The site's year (the DCM's later acquisition, :func:`minescape.sites.site_year` rules) and, from a DLR
    delivery, its DCM layers read on the site grid (None for the two-raster form). InputError = one-line reason."""
    sdcm = None
    if dcm_year is None and is_delivery(dcm_dh):  # DLR tiles: change, DATE and quality layers together
        sdcm = read_site_dcm(dcm_dh, site, DcmOptions.from_config(config))
    elif dcm_year is None:
        raise InputError(f"site {site.id}: no DCM year raster given")
    if dcm_dh is None:
        raise InputError(f"site {site.id}: no DEM-change raster given")
    return (sdcm.year if sdcm is not None else site_year(site, dcm_year)), sdcm


def prepare_site(site: Site, scenes: Sequence[SceneRef], dcm_dh: str | Path | None, dcm_year: str | Path | None,
                 *, config: dict, source: ImagerySource | None = None) -> SiteInputs:
    """Year, imagery (clearest scene or annual composite), clipped stack and DEM change, features for one site
    (InputError = one-line reason).

    ``source`` (a STAC catalogue) gives the imagery; without it ``scenes`` (local) do. ``config["composite"]``
    picks the method (``auto``: median from a catalogue, the clearest local scene otherwise). A site whose grid
    the chain could not hold in memory is refused first (:func:`minescape.sites.check_site_size`).
    """
    check_site_size(site, bytes_per_px=SITE_BYTES_PER_PX)  # before anything grid-sized (DCM, mask, imagery)
    year, sdcm = site_dcm_year(site, dcm_dh, dcm_year, config=config)
    inside = site.mask()
    method = resolve_method(config.get("composite", "auto"), from_catalogue=isinstance(source, StacSource))
    comp = None
    settings = ImagerySettings.from_dict(config.get("imagery"))
    if method == "clearest" and source is None:
        ranked = rank_scenes(scenes, site, year.year, scl_classes=settings.scl_mask)
        ref, share = ranked[0]
        stack, notes = load_stack(ref, site, bands=SPECTRAL_BANDS)
        # a site across a tile edge: the clearest scene's gaps come from the same pass's other tiles
        fill = fill_same_date(stack, ref, ranked, site, inside, bands=SPECTRAL_BANDS)
        notes += fill.notes
        filled = fill.filled_from
        if (fill.source[inside] != 0).any():  # the chosen scene alone leaves part of the polygon empty
            share = used_cloud_share(fill, stack, site.grid, inside, scl_classes=settings.scl_mask)
        label = ref.source.name + (f" and {len(filled)} same-date scene(s)" if filled else "")
    else:
        comp = annual_composite(source or LocalSource(scenes, scl_classes=settings.scl_mask), site.grid, year.year,
                                bands=SPECTRAL_BANDS, method=method, mask=inside, min_clear=settings.min_clear,
                                what=f"site {site.id}")
        stack = comp.raster
        stack.data[:, ~inside] = np.nan
        ref, share, label = None, 1.0 - comp.clear_fraction(inside), f"the {year.year} composite"
        notes, filled = comp.notes, ()
    if not inside.any():
        raise InputError(f"site {site.id}: polygon covers no pixel centre of its 10 m grid")
    valid = np.isfinite(stack.data).all(axis=0) & inside
    if not valid.any():
        raise InputError(f"site {site.id}: all pixels are nodata in {label}")
    dh = sdcm.dh if sdcm is not None else load_dh(dcm_dh, site)
    if not np.isfinite(dh.data[0][inside]).any():
        raise InputError(f"site {site.id}: the DEM-change map has no data inside the site")
    nodata_share = 1.0 - float(valid.sum()) / float(inside.sum())
    features = compute_features(stack, dh, window=int(config["window"]))
    mask = inside & np.isfinite(features.data).all(axis=0)
    return SiteInputs(site, year, ref, share, stack, features, mask, composite=comp, dcm=sdcm, notes=notes,
                      filled_from=tuple(filled), nodata_share=nodata_share)


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, mtime: float, shown: str) -> LulcModel:
    from minescape.lulc.forest import FORMAT as FOREST_FORMAT
    from minescape.lulc.forest import load_forest, model_format

    # errors name the path the user gave
    return load_forest(shown) if model_format(shown) == FOREST_FORMAT else load_model(shown)


def get_classifier(classifier: str | Path | LulcModel) -> str | LulcModel:
    """``"rules"`` or a loaded model (from a model path; cached per process)."""
    if isinstance(classifier, LulcModel):
        return classifier
    if str(classifier) == "rules":
        return "rules"
    path = Path(classifier)
    if not path.exists():
        raise InputError("model file not found (give 'rules' or a model JSON from 'minescape lulc train')",
                         path=path)
    model = _cached_model(str(path.resolve()), path.stat().st_mtime, str(path))
    unknown = [f for f in model.features if f not in FEATURES]
    if unknown:
        raise InputError(f"the model needs features {unknown} that this version does not compute (it computes "
                         f"{', '.join(FEATURES)})", path=path)
    return model


def classify_features(features: Raster, mask: np.ndarray, classifier: str | LulcModel, *, rules: dict) -> np.ndarray:
    """uint8 MINING_LULC codes for the pixels in ``mask`` (0 elsewhere)."""
    if classifier == "rules":
        classes, _ = classify_rules(features, rules=rules)
        classes[~mask] = MINING_LULC.nodata
        return classes
    model: LulcModel = classifier  # type: ignore[assignment]
    missing = [f for f in model.features if f not in (features.band_names or ())]
    if missing:
        raise InputError(f"the model needs features {missing} that this version does not compute")
    x, keep = feature_matrix(features, mask, names=model.features)
    classes = np.zeros(features.shape, dtype=np.uint8)
    classes[keep] = model.predict(x)
    return classes


def site_to_args(site: Site) -> dict:
    """Picklable description of a site for a :class:`~minescape.runner.Unit`."""
    return {"id": site.id, "wkb": shapely.to_wkb(site.geometry, hex=True, output_dimension=2),
            "res": float(site.grid.res[0]), "attrs": site.attrs}


def site_from_args(args: dict) -> Site:
    """Inverse of :func:`site_to_args`."""
    return make_site(args["id"], shapely.from_wkb(args["wkb"]), res=args["res"], attrs=args.get("attrs"))


def map_path(out_dir: str | Path, site_id: str) -> Path:
    """``OUT/maps/<stem>.tif`` with the site's file stem (:func:`site_stem`)."""
    return Path(out_dir) / "maps" / f"{site_stem(site_id)}.tif"


def safe_name(text: str) -> str:
    """A file-name-safe version of an id (letters, digits, ``.``, ``_``, ``-``; other runs become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "site"


#: Longest site id used as a file stem as it is (characters); longer ids keep this many minus the hash suffix. File
#: names are limited to 255 bytes, and the stem also names ``<stem>.tif``, ``<stem>.png`` and their temporary files.
MAX_STEM = 120
#: Windows' reserved device names: a file ``NUL.tif`` (or ``nul.txt.tif``) cannot be made there.
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})


def site_stem(site_id: str) -> str:
    """The file stem of a site's outputs: the id itself when it is already file-name safe, at most
    :data:`MAX_STEM` characters and not a Windows device name (``CON``, ``NUL.txt``, ``com1``); else its safe name
    (cut to leave room) plus ``-`` and 8 hex digits of the id's SHA-256, so ids that differ only in unsafe
    characters (``a/b`` and ``a_b``, two CJK names) or past the cut never share a file. It depends on the id alone
    (stable across runs)."""
    text = str(site_id)
    safe = safe_name(text)
    reserved = safe.split(".")[0].upper() in WINDOWS_RESERVED
    if safe == text and not text.startswith(".") and len(text) <= MAX_STEM and not reserved:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    prefix = (safe.lstrip(".") or "site")[: MAX_STEM - len(digest) - 1]
    if prefix.split(".")[0].upper() in WINDOWS_RESERVED:  # "NUL.txt-<hash>" would still be NUL
        prefix = prefix.replace(".", "_")
    return f"{prefix}-{digest}"


def site_stems(site_ids: Sequence[str], *, path=None) -> dict[str, str]:
    """Site id -> file stem for one run; InputError (one line) when two stems would still name one file on a
    case-insensitive file system (``S1`` and ``s1``), listing the ids."""
    stems = {sid: site_stem(sid) for sid in site_ids}
    seen: dict[str, str] = {}
    for sid, stem in stems.items():
        other = seen.setdefault(stem.casefold(), sid)
        if other != sid:
            raise InputError(f"site ids {other!r} and {sid!r} would write the same file {stem}.tif (file names "
                             "ignore case on some systems); make the ids distinct", path=path)
    return stems


#: Bytes per pixel of a site grid that :func:`classify_site`'s chain holds at its peak: the stack read (uint16) and
#: as reflectance (float32, 10 bands), 25 float32 features and their windowed temporaries, the DEM change, masks
#: and the class map. Measured: a 10,077 x 168 px site peaked ~420 MB above the interpreter (~250 B/px).
SITE_BYTES_PER_PX = 256


def classify_site(unit: Unit) -> dict:
    """Classify one site (see module docstring); writes its map and quicklook atomically.

    ``unit.args``: ``site`` (:func:`site_to_args`), ``scenes`` (list of :meth:`SceneRef.to_json`), ``dcm_dh``,
    ``dcm_year`` (paths or None), ``out_dir``, ``classifier`` (``"rules"`` or a model path), ``config``.

    Returns:
        ``{site_id, year, year_rule, scene, path, pixels, classes, ...}`` (no wall time: the result goes into
        reproducible files; the run folder's journal and ``report/timings.json`` keep the times).
    """
    a = unit.args
    config = make_config(a.get("config"))
    rules = load_rules(config["rules"])
    site = site_from_args(a["site"])
    scenes = [SceneRef.from_json(s) for s in a["scenes"]]
    classifier = get_classifier(a.get("classifier", "rules"))
    source = make_source(a["stac"], scenes, ImagerySettings.from_dict(config["imagery"])) if a.get("stac") else None
    inputs = prepare_site(site, scenes, a.get("dcm_dh"), a.get("dcm_year"), config=config, source=source)
    classes = classify_features(inputs.features, inputs.mask, classifier, rules=rules)
    classes = postprocess(classes, mmu_m2=float(config["mmu_m2"]), pixel_area_m2=site.grid.pixel_area(),
                          majority=int(config["majority"]), nodata=MINING_LULC.nodata)
    classes[~inputs.mask] = MINING_LULC.nodata
    name = "rules" if classifier == "rules" else Path(str(a.get("classifier"))).name
    tags = {"SITE_ID": site.id, "YEAR": str(inputs.year.year), "YEAR_RULE": inputs.year.rule,
            "SCENE": inputs.scene_name, "SCENE_DATE": inputs.scene_date, "CLASSIFIER": name,
            "UNITS": "MINING_LULC class code"}
    if inputs.filled_from:  # only then: a site inside one scene keeps the same map bytes
        tags.update(FILLED_FROM=",".join(inputs.filled_from))
    if inputs.composite is not None:
        tags.update(COMPOSITE=inputs.composite.method, N_SCENES=str(inputs.composite.n_scenes),
                    SCENES=",".join(inputs.composite.scenes))
    path = write_raster(Raster(classes, site.crs, site.grid.transform, MINING_LULC.nodata),
                        map_path(a["out_dir"], site.id), legend=MINING_LULC, tags=tags)
    areas = code_areas_m2(classes, site.grid, n_codes=max(MINING_LULC.codes) + 1)  # m² on WGS84
    outputs = [str(path)]
    if inputs.composite is not None:  # per pixel, the clear observations the composite had
        cc = inputs.composite.clear_count
        outputs.append(str(write_raster(cc, Path(a["out_dir"]) / "clear_count" / f"{site_stem(site.id)}.tif",
                                        tags={"SITE_ID": site.id, "YEAR": str(inputs.year.year),
                                              "N_SCENES": str(inputs.composite.n_scenes),
                                              "UNITS": "clear observations per pixel"})))
    if config.get("quicklook", True):
        ql = write_quicklook(inputs, classes,
                             Path(a["out_dir"]) / "report" / "quicklooks" / f"{site_stem(site.id)}.png")
        outputs.append(str(ql))
    return {
        "site_id": site.id,
        "year": inputs.year.year,
        "year_rule": inputs.year.rule,
        "scene": inputs.scene_name,
        "scene_date": inputs.scene_date,
        "n_scenes": inputs.composite.n_scenes if inputs.composite is not None else 1,
        "cloud_share": None if np.isnan(inputs.cloud_share) else round(float(inputs.cloud_share), 4),
        "crs": site.crs.to_string(),
        "path": str(path),
        "pixels": int((classes > 0).sum()),
        "imagery_nodata_share": round(float(inputs.nodata_share), 4),
        **({"filled_from": list(inputs.filled_from)} if inputs.filled_from else {}),
        "area_m2": {MINING_LULC.name_of(c): round(float(areas[c]), 1) for c in MINING_LULC.codes},
        "outputs": outputs,
        **({"imagery_notes": list(inputs.notes)} if inputs.notes else {}),
        **(inputs.dcm.report() if inputs.dcm is not None else {}),
    }


def write_quicklook(inputs: SiteInputs, classes: np.ndarray, path: Path) -> Path:
    """Imagery beside the class map with legend colours and names (PNG, atomic)."""
    from minescape.report import quicklook, save_figure

    rgb = inputs.stack.select(["B04", "B03", "B02"]).data
    left, bottom, right, top = inputs.site.grid.bounds
    fig = quicklook(rgb, classes, MINING_LULC, extent=(left, right, bottom, top), outline=inputs.site.mask(),
                    title=f"{inputs.site.id} ({inputs.year.year}, {inputs.year.rule}; {inputs.scene_date})")
    return save_figure(fig, path, dpi=80)


def _fingerprint(args: dict, inputs: str) -> str:
    """A unit's fingerprint: its args plus ``inputs``, the fingerprint of every input file (scenes, DCM,
    model), so a file rewritten in place invalidates the sites that read it."""
    return hashlib.sha256((json.dumps(args, sort_keys=True, default=str) + inputs).encode()).hexdigest()[:16]


def _inputs_fingerprint(scenes: Sequence[SceneRef], dcm_dh, dcm_year, classifier) -> str:
    paths = [Path(s.source) for s in scenes] + [Path(f) for s in scenes for _, f, _ in (s.band_files or ())]
    paths += [Path(p) for p in (dcm_dh, dcm_year, classifier) if p is not None and str(p) != "rules"]
    return fingerprint([p for p in paths if p.exists()])


def build_units(sites: Sequence[Site], scenes: Sequence[SceneRef], dcm_dh, dcm_year, out_dir, *,
                classifier: str | Path, config: dict, stac: StacQuery | None = None) -> list[Unit]:
    """One :class:`~minescape.runner.Unit` per site (picklable args, fingerprint of inputs + config); with
    ``stac`` each unit searches the catalogue for its own site and year."""
    scene_json = [s.to_json() for s in scenes]
    inputs = _inputs_fingerprint(scenes, dcm_dh, dcm_year, classifier)
    if stac is not None and not stac.is_api:  # a saved ItemCollection rewritten in place reruns its sites
        inputs += fingerprint([Path(stac.source)])
    units = []
    for site in sites:
        args = {"site": site_to_args(site), "scenes": scene_json,
                "dcm_dh": None if dcm_dh is None else str(dcm_dh),
                "dcm_year": None if dcm_year is None else str(dcm_year), "out_dir": str(out_dir),
                "classifier": str(classifier), "config": config,
                "stac": None if stac is None else {"source": stac.source, "collection": stac.collection}}
        units.append(Unit(site.id, args, _fingerprint(args, inputs)))
    return units


def classify_sites(
    sites_path: str | Path,
    scenes: Sequence[str | Path],
    dcm_dh: str | Path | None,
    dcm_year: str | Path | None,
    out_dir: str | Path,
    *,
    classifier: str | Path = "rules",
    config: dict | None = None,
    executor: Executor | None = None,
    layer: str | None = None,
    id_field: str | None = None,
    site_ids: Sequence[str] | None = None,
    stac: StacQuery | None = None,
    point_buffer_m: float | None = None,
) -> RunSummary:
    """Classify every site of ``sites_path`` into ``out_dir`` (maps, sites.json, report).

    Features dropped while reading (empty or unrepairable geometry) and sites that fail are listed in
    ``summary.failed`` with one-line reasons; the others are classified.

    Args:
        sites_path: mining-area polygons (GPKG, GeoJSON, Shapefile).
        scenes: scene files, folders or STAC JSON files.
        dcm_dh: a DLR TanDEM-X DCM delivery (folder or ZIP of tiles, :mod:`minescape.dcm`; ``dcm_year`` None) or a
            prepared DEM-change raster (m) with ``dcm_year``, its later-acquisition-year raster.
        out_dir: output folder.
        classifier: ``"rules"`` or a model JSON path.
        config: options overriding :data:`DEFAULT_CONFIG`.
        executor: where units run (default in-process).
        layer, id_field, point_buffer_m: passed to :func:`minescape.sites.read_sites` (``point_buffer_m``: sites
            from point features, the disc of that radius in metres around each).
        site_ids: only these sites (InputError if one is unknown).
        stac: a STAC catalogue instead of ``scenes`` (per site, the items of its year; composites per
            ``config["composite"]``). It is opened once first: unreachable -> InputError, nothing written.
    """
    # units may run on a worker in another working folder: every path they carry is absolute
    out_dir = unit_path(out_dir)
    scenes = [s if "://" in str(s) else unit_path(s) for s in scenes]
    dcm_dh, dcm_year = (None if p is None else unit_path(p) for p in (dcm_dh, dcm_year))
    if str(classifier) != "rules":
        classifier = unit_path(classifier)
    if stac is not None and not stac.is_api:
        stac = replace(stac, source=str(unit_path(stac.source)))
    cfg = with_stac_defaults(make_config(config), stac, out_dir / ".window-cache")
    if classifier != "rules":
        get_classifier(classifier)  # fail early on a bad model
    check_dcm(dcm_dh, dcm_year)
    created = not out_dir.exists()
    out_dir = prepare_output(out_dir, folder=True)
    try:
        sites, notes, refs, _ = sites_and_imagery(sites_path, scenes, stac, cfg, layer=layer, id_field=id_field,
                                                  site_ids=site_ids, point_buffer_m=point_buffer_m,
                                                  exclude=run_outputs(out_dir))
        site_stems([s.id for s in sites], path=sites_path)  # refuse before any unit runs
        check_sites_meet(sites, dcm_year)
    except InputError:
        if created and not any(out_dir.iterdir()):  # refused before anything ran: no empty folder left behind
            out_dir.rmdir()
        raise
    units = build_units(sites, refs, dcm_dh, dcm_year, out_dir, classifier=classifier, config=cfg, stac=stac)
    with running(out_dir, "minescape lulc classify"):  # until sites.json lists this run's maps
        summary = run_units(units, classify_site, description="classify sites", executor=executor)
        warn_unmapped(summary)
        warn_dcm_voids(summary)
        for note in notes:
            if note.dropped:
                summary.failed[f"feature {note.feature}"] = note.what
        if dcm_year is None and is_delivery(dcm_dh):  # files in the DCM delivery that are not tiles
            for problem in dcm_index(dcm_dh).problems:
                summary.failed[f"dcm {problem.path.name}"] = problem.reason
        inputs = [Path(sites_path), *(Path(p) for p in scenes), *(Path(p) for p in (dcm_dh, dcm_year) if p)]
        if str(classifier) != "rules":
            inputs.append(Path(classifier))
        remove_stale(out_dir, summary, keep=inputs)
        write_run_files(out_dir, sites, summary, config=cfg, classifier=str(classifier), notes=notes,
                        source={"sites": str(Path(sites_path).resolve()), "layer": layer, "id_field": id_field,
                                **({"point_buffer_m": point_buffer_m} if point_buffer_m is not None else {})})
    return summary


#: Share of a site's polygon without imagery above which :func:`classify_sites` warns (0..1).
NODATA_WARN_SHARE = 0.01


def warn_unmapped(summary: RunSummary, *, above: float = NODATA_WARN_SHARE) -> None:
    """One warning per site whose polygon is more than ``above`` without imagery (no scene of its date, nor of
    the composite, has data there): those pixels are nodata in its class map and missing from its areas. Warned in
    the calling process, so sites classified on workers are warned alike."""
    import warnings

    for sid, res in sorted(summary.results.items()):
        share = res.get("imagery_nodata_share") or 0.0
        scenes = ", ".join([str(res.get("scene")), *res.get("filled_from", ())])
        if share > above:
            warnings.warn(f"site {sid}: {share:.1%} of the polygon has no imagery in {scenes} (no scene "
                          "of that date covers it or, in a composite, no clear observation); those pixels are "
                          "nodata in its class map and missing from its areas (sites.json imagery_nodata_share)",
                          stacklevel=2)


#: Share of a site's polygon without DCM change (void, undated or outside every delivered tile) above which
#: :func:`classify_sites` warns (0..1).
DCM_VOID_WARN_SHARE = 0.01


def warn_dcm_voids(summary: RunSummary, *, above: float = DCM_VOID_WARN_SHARE) -> None:
    """One warning per site whose polygon is more than ``above`` without DCM change (``dcm_void_share`` of a DLR
    delivery: void, undated or outside every delivered tile): the features fill those pixels from the nearest
    valid change (flagged ``DH_VOID``), so its map there rests on filled values. Warned in the calling process,
    like :func:`warn_unmapped`."""
    import warnings

    for sid, res in sorted(summary.results.items()):
        share = res.get("dcm_void_share") or 0.0
        if share > above:
            warnings.warn(f"site {sid}: {share:.1%} of the polygon has no DCM elevation change (void, undated or "
                          "outside every delivered tile); the features fill it from the nearest valid pixel, so "
                          "its class map there rests on filled change (sites.json dcm_void_share)", stacklevel=2)


def sites_and_imagery(sites_path: str | Path, scenes: Sequence[str | Path], stac: StacQuery | None, config: dict,
                      *, layer: str | None = None, id_field: str | None = None,
                      site_ids: Sequence[str] | None = None, point_buffer_m: float | None = None,
                      exclude: Sequence[Path] = (),
                      ) -> tuple[list[Site], list[FeatureNote], list[SceneRef], ImagerySource | None]:
    """The sites chosen from ``sites_path`` (with the notes of features changed or dropped while reading them),
    the local scenes (none with ``stac``; files under ``exclude``, a run's own outputs, are not scenes) and the
    catalogue source of ``stac`` under ``config``'s imagery settings (None for local scenes): what classifying,
    training and planning read before their per-site work."""
    sites, notes = read_sites(sites_path, layer=layer, id_field=id_field, point_buffer_m=point_buffer_m)
    sites = select_sites(sites, site_ids, path=sites_path)
    refs = discover_scenes(scenes, exclude=exclude) if stac is None else []
    source = None if stac is None else make_source({"source": stac.source, "collection": stac.collection}, [],
                                                   ImagerySettings.from_dict(config["imagery"]))
    return sites, notes, refs, source


def run_outputs(out_dir: Path) -> list[Path]:
    """What a ``classify_sites`` run owns in ``out_dir``: ``maps/``, ``report/``, ``sites.json``."""
    return [out_dir / "maps", out_dir / "report", out_dir / "sites.json"]


def remove_stale(out_dir: Path, summary: RunSummary, *, keep: Sequence[Path] = ()) -> list[Path]:
    """Remove the class maps and quicklooks in ``out_dir`` that this run did not produce (sites no longer in
    the layer, renamed, failed this time, or left out by ``--site``): the run owns its output folder, so
    ``maps/`` holds exactly the maps ``sites.json`` lists (:func:`minescape.atomic.prune`). Files in ``keep``
    (the run's inputs) are never touched, nor anything but ``maps/*.tif``, ``clear_count/*.tif`` (composites' clear
    observations), ``report/quicklooks/*.png`` and an earlier ``lulc evaluate``'s accuracy of the old maps
    (:data:`minescape.lulc.evaluate.EVALUATION_FILES` in ``report/``, which the HTML report would show as this
    run's)."""
    from minescape.lulc.evaluate import EVALUATION_FILES

    produced = {Path(p) for res in summary.results.values() for p in res.get("outputs", [])}
    evaluation = [out_dir / "report" / name for name in EVALUATION_FILES]
    gone = [p for p in evaluation if p.is_file() and p not in set(keep)]
    for p in gone:
        p.unlink()
    return (prune(out_dir / "maps", "*.tif", produced, protect=tuple(keep))
            + prune(out_dir / "clear_count", "*.tif", produced, protect=tuple(keep))
            + prune(out_dir / "report" / "quicklooks", "*.png", produced, protect=tuple(keep)) + gone)


def check_dcm(dcm_dh, dcm_year) -> None:
    """Fail early (InputError) on a DCM that is neither a DLR delivery nor a raster with its year raster."""
    if dcm_dh is None or dcm_year is not None:
        return
    if not is_delivery(dcm_dh):
        raise InputError("a prepared DEM-change raster needs --dcm-year; or give --dcm a DLR delivery (a folder "
                         "or ZIP of TanDEM-X DCM tiles)", path=dcm_dh)
    dcm_index(dcm_dh)  # index once here; raises when the delivery does not exist


def check_sites_meet(sites: Sequence[Site], year_raster: str | Path | None) -> None:
    """InputError (one line, before any unit runs) when no site's grid meets the prepared DCM year raster: every
    site would fail alike (real outlines on another continent), so the run says it once, with the raster's
    extent, instead of a failure per site. Sites are compared in their own CRS (one transform per CRS)."""
    if year_raster is None or not sites:
        return
    from minescape.geo.grid import bounds_in
    from minescape.geo.raster import open_raster

    with open_raster(year_raster) as src:
        crs, bounds = src.crs, tuple(src.bounds)
    if crs is None:
        return  # reported per site, with the file's own problem
    seen: dict[str, tuple[float, ...]] = {}
    for site in sites:
        key = site.grid.crs.to_string()
        if key not in seen:
            seen[key] = bounds_in(bounds, crs, site.grid.crs) if site.grid.crs != crs else bounds
        w, s, e, n = seen[key]
        sw, ss, se, sn = site.grid.bounds
        if not all(np.isfinite(seen[key])) or not (se < w or sw > e or sn < s or ss > n):
            return  # meets it (or cannot be told: left to the per-site check)
    lon_lat = ", ".join(f"{v:.3f}" for v in bounds_in(bounds, crs, "EPSG:4326"))
    raise InputError(f"none of the {len(sites)} sites meets the DCM year raster (its extent {lon_lat} in lon/lat "
                     "degrees): the sites and the DEM-change inputs cover different places", path=year_raster)


def with_stac_defaults(cfg: dict, stac: StacQuery | None, cache_dir: str | Path | None) -> dict:
    """``cfg`` with the catalogue's cloud ceiling and the window cache ``cache_dir`` (unless the config sets
    them) when reading from ``stac``; the catalogue is opened once (unreachable -> InputError before anything
    is written)."""
    if stac is None:
        return cfg
    from minescape.imagery.stac_search import check_catalogue

    imagery = dict(cfg.get("imagery") or {})
    imagery.setdefault("max_cloud", stac.max_cloud)
    if cache_dir is not None:
        imagery.setdefault("cache_dir", str(cache_dir))
    cfg = {**cfg, "imagery": ImagerySettings.from_dict(imagery).to_dict()}
    check_catalogue(stac)
    return cfg


def select_sites(sites: list[Site], site_ids: Sequence[str] | None, *, path) -> list[Site]:
    """The sites whose id is in ``site_ids`` (all when None); InputError naming unknown ids."""
    if site_ids is None:
        return sites
    known = {s.id for s in sites}
    unknown = [i for i in site_ids if i not in known]
    if unknown:
        raise InputError(f"unknown site ids {unknown[:5]}; the layer has {sorted(known)[:10]}...", path=path)
    wanted = set(site_ids)
    return [s for s in sites if s.id in wanted]


def write_run_files(out_dir: Path, sites: Sequence[Site], summary: RunSummary, *, config: dict, classifier: str,
                    notes: Sequence[FeatureNote], source: dict | None = None) -> None:
    """``OUT/sites.json`` (per site: id, year, rule, status, reason) and ``OUT/report/run.json``.

    ``source`` (``{"sites": path, "layer", "id_field"}``, and ``point_buffer_m`` for sites drawn around points)
    records where the site polygons were read, so that ``minescape report`` can draw them.
    """
    rows = []
    for site in sites:
        res = summary.results.get(site.id)
        if res is not None:
            rows.append({"id": site.id, "year": res["year"], "rule": res["year_rule"], "status": "ok",
                         "reason": None, "scene": res["scene"], "map": str(Path(res["path"]).relative_to(out_dir))
                         if Path(res["path"]).is_relative_to(out_dir) else res["path"]})
            if "imagery_nodata_share" in res:  # share of the polygon without imagery (nodata in the map)
                rows[-1].update(imagery_nodata_share=res["imagery_nodata_share"],
                                **({"filled_from": res["filled_from"]} if res.get("filled_from") else {}))
            if "dcm_masked_share" in res:  # DLR delivery: share of the site's DCM pixels void / masked
                rows[-1].update(dcm_void_share=res["dcm_void_share"], dcm_masked_share=res["dcm_masked_share"],
                                dcm_outside_share=res.get("dcm_outside_share", 0.0),
                                **({"dcm_missing_tiles": res["dcm_missing_tiles"]}
                                   if res.get("dcm_missing_tiles") else {}))
        elif site.id in summary.failed:
            rows.append({"id": site.id, "year": None, "rule": None, "status": "failed",
                         "reason": summary.failed[site.id], "scene": None, "map": None})
        elif site.id in summary.skipped:
            rows.append({"id": site.id, "year": None, "rule": None, "status": "skipped", "reason": None,
                         "scene": None, "map": None})
    for key, reason in summary.failed.items():
        if key.startswith(("feature ", "dcm ")):
            rows.append({"id": key, "year": None, "rule": None, "status": "failed", "reason": reason,
                         "scene": None, "map": None})
    atomic_write_text(out_dir / "sites.json", json.dumps(rows, indent=1))
    run = {"classifier": classifier, "config": config, "sites": len(rows),
           "ok": sum(r["status"] == "ok" for r in rows), "failed": {k: v for k, v in summary.failed.items()},
           "read_notes": [str(n) for n in notes], "source": source, "results": summary.results}
    atomic_write_text(out_dir / "report" / "run.json", json.dumps(run, indent=1, default=str))
    # wall time is not reproducible: it lives in its own log, never in sites.json or run.json
    atomic_write_text(out_dir / "report" / "timings.json",
                      json.dumps({"seconds": round(summary.seconds, 3), "sites": len(rows)}, indent=1))


# ------------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """A trained model and what went into it."""

    model: LulcModel
    sites_used: list[str]
    sites_failed: dict[str, str]


def train_from_sites(
    sites_path: str | Path,
    scenes: Sequence[str | Path],
    dcm_dh: str | Path,
    dcm_year: str | Path,
    *,
    labels: str | Path | None = None,
    class_field: str | None = None,
    labels_layer: str | None = None,
    site_ids: Sequence[str] | None = None,
    layer: str | None = None,
    id_field: str | None = None,
    per_class: int = 2000,
    rounds: int = 60,
    seed: int = 0,
    config: dict | None = None,
    stac: StacQuery | None = None,
    cache_dir: str | Path | None = None,
    point_buffer_m: float | None = None,
) -> TrainResult:
    """Train a LightGBM model on the sites ``site_ids`` (default all).

    Labels come from ``labels`` (a label raster, labelled polygons or points) or, when ``labels`` is None,
    from the knowledge-based rules' confident pixels (weak labels, :mod:`minescape.lulc.weak`). Up to
    ``per_class`` pixels per class and site are sampled (seeded). Sites that fail are skipped and reported.
    With ``stac`` the imagery comes from that catalogue (``scenes`` unused; fetched windows cached in
    ``cache_dir`` when given).
    """
    from minescape.lulc.labels import is_vector, labels_on, read_vector_labels
    from minescape.lulc.weak import weak_labels

    cfg = with_stac_defaults(make_config(config), stac, cache_dir)
    if rounds < 1 or per_class < 1:  # checked before any site is read
        raise ConfigError(f"--rounds and --per-class must be >= 1 (got {rounds} and {per_class})")
    rules = load_rules(cfg["rules"])
    check_dcm(dcm_dh, dcm_year)
    sites, _, refs, source = sites_and_imagery(sites_path, scenes, stac, cfg, layer=layer, id_field=id_field,
                                               site_ids=site_ids, point_buffer_m=point_buffer_m)
    label_src = None
    if labels is not None:
        if not Path(labels).exists():  # before any site is read
            raise MissingInputError("label file not found", path=labels)
        label_src = read_vector_labels(labels, class_field=class_field, layer=labels_layer) if is_vector(labels) \
            else Path(labels)
    rng = np.random.default_rng(seed)
    xs, ys, used, failed = [], [], [], {}
    from minescape.progress import track

    for site in track(sites, "training samples"):
        try:
            inputs = prepare_site(site, refs, dcm_dh, dcm_year, config=cfg, source=source)
            if label_src is None:
                lab = weak_labels(inputs.features, rules=rules)
            else:
                lab = labels_on(label_src, site.grid)
            lab = np.where(inputs.mask, lab, 0)
            if cfg["method"] == "published":  # keep only samples meeting the published thresholds
                from minescape.lulc.published import sample_mask

                lab = np.where(sample_mask(inputs.features, lab), lab, 0)
            if not (lab > 0).any():
                raise InputError(f"site {site.id}: no labelled pixel inside the site")
        except InputError as exc:
            failed[site.id] = " ".join(str(exc).split())
            continue
        idx = sample_pixels(lab, inputs.mask, per_class=per_class, rng=rng)
        data = inputs.features.data.reshape(len(FEATURES), -1)
        xs.append(data[:, idx].T)
        ys.append(lab.ravel()[idx])
        used.append(site.id)
    if not used:
        first = next(iter(failed.items()))
        raise InputError(f"none of the {len(failed)} training sites could be used; site {first[0]}: {first[1]}")
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    meta = {"sites": used, "labels": str(labels) if labels is not None else "weak (rules' confident pixels)",
            "per_class": per_class, "config": cfg}
    if cfg["method"] == "published":
        from minescape.lulc import published
        from minescape.lulc.forest import train_forest

        cols = [FEATURES.index(f) for f in published.FEATURES]
        model = train_forest(x[:, cols], y, features=published.FEATURES, n_trees=published.N_TREES,
                             max_features=published.MAX_FEATURES, seed=seed, meta=meta)
    else:
        model = train_model(x, y, features=FEATURES, rounds=rounds, seed=seed, meta=meta)
    return TrainResult(model, used, failed)


# ----------------------------------------------------------------------------------- whole scene


def classify_scene(
    scene: str | Path | SceneRef,
    dcm_dh: str | Path,
    out_path: str | Path,
    *,
    classifier: str | Path | LulcModel = "rules",
    config: dict | None = None,
    tile: int = 1024,
    progress: bool = True,
) -> dict:
    """Classify a whole scene window by window (memory follows ``tile``, not the scene).

    Each tile is read with a halo (neighbourhood statistics and the majority filter see past its edge) and
    only its core is written. The minimum mapping unit's sieve merges a small patch into its largest neighbour,
    whose size the tile may cut: with ``mmu_m2`` > 0, up to ~0.02 % of the pixels (synthetic 1000 x 800 scene,
    300 m², tiles of 64 vs 4096 px) can differ with the tile size; with ``mmu_m2`` 0 none do. Output is
    streamed into a tiled GeoTIFF on the scene's 10 m grid. The DCM is read per tile and warped when its grid
    differs. Returns ``{path, pixels, seconds, tiles}``.
    """
    from minescape.geo.grid import iter_tiles
    from minescape.geo.raster import open_writer
    from minescape.imagery.local_scenes import SceneRef as _Ref
    from minescape.lulc.inputs import read_stack_on
    from minescape.progress import make_progress

    t0 = time.perf_counter()
    cfg = make_config(config)
    rules = load_rules(cfg["rules"])
    clf = get_classifier(classifier)
    ref = scene if isinstance(scene, _Ref) else discover_scenes([scene])[0]
    sc = ref.open()
    grid = sc.grid
    halo = int(cfg["window"]) // 2 + int(cfg["majority"]) // 2 + 8
    tiles = list(iter_tiles(grid.width, grid.height, size=tile, overlap=halo))
    pixels = 0
    tags = {"SCENE": ref.source.name, "SCENE_DATE": ref.date.isoformat(),
            "CLASSIFIER": "rules" if clf == "rules" else "model"}
    with open_writer(out_path, grid, count=1, dtype="uint8", nodata=MINING_LULC.nodata, legend=MINING_LULC,
                     tags=tags) as dst, make_progress() as bar:
        task = bar.add_task("classify scene", total=len(tiles), extra="") if progress else None
        for t in tiles:
            tgrid = grid.window_grid(t.read)
            stack = read_stack_on(sc, tgrid, bands=SPECTRAL_BANDS)
            try:
                dh = read_dcm_on_grid(dcm_index(dcm_dh), tgrid, DcmOptions.from_config(cfg), what="tile").dh \
                    if is_delivery(dcm_dh) else dh_on_grid(dcm_dh, tgrid, what="tile")
            except InputError:
                dh = Raster(np.full((1, *tgrid.shape), np.nan, np.float32), tgrid.crs, tgrid.transform, np.nan)
            valid = np.isfinite(stack.data).all(axis=0)
            classes = np.zeros(tgrid.shape, dtype=np.uint8)
            if valid.any() and np.isfinite(dh.data).any():
                feats = compute_features(stack, dh, window=int(cfg["window"]))
                mask = valid & np.isfinite(feats.data).all(axis=0)
                classes = classify_features(feats, mask, clf, rules=rules)
                classes = postprocess(classes, mmu_m2=float(cfg["mmu_m2"]), pixel_area_m2=grid.pixel_area(),
                                      majority=int(cfg["majority"]), nodata=MINING_LULC.nodata)
                classes[~mask] = MINING_LULC.nodata
            c = t.core_in_read
            core = classes[int(c.row_off):int(c.row_off + c.height), int(c.col_off):int(c.col_off + c.width)]
            dst.write(core[np.newaxis], window=t.core)
            pixels += int((core > 0).sum())
            if task is not None:
                bar.advance(task)
    return {"path": str(out_path), "pixels": pixels, "tiles": len(tiles), "seconds": time.perf_counter() - t0,
            "width": grid.width, "height": grid.height}
