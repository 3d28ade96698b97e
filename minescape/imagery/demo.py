"""Demo stage: mining LULC through the loopback STAC path (``minescape demo --stac``).

The synthetic region is written in the STAC layout (4 scenes a year with planted clouds and shadows, Earth
Search- and Planetary Computer-style items), served on 127.0.0.1 by ``rustac serve`` and a range-request file
server, and every site is classified from median composites searched and read over HTTP; the same is done with
the clearest scene, and both are scored against the region's truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from minescape.atomic import atomic_write_text


def run(ctx) -> list[str]:
    """Write the STAC layout, serve it, classify all sites (median and clearest), score both."""
    from minescape.imagery.loopback import serve_catalogue
    from minescape.imagery.stac_search import StacQuery
    from minescape.lulc.evaluate import evaluate_maps
    from minescape.lulc.pipeline import classify_sites
    from minescape.synthetic import RegionConfig, make_region
    from minescape.synthetic_stac import write_stac_region

    out = Path(ctx.stage_dir("stac"))
    cfg = json.loads(ctx.region.manifest.read_text())["config"]  # the demo region's own config, redrawn
    region = make_region(RegionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))
    stac = write_stac_region(region, out / "catalogue", scenes_per_year=4, years=tuple(region.config.dcm_years))
    files = ctx.region
    scores = {}
    with serve_catalogue(stac.earth_search, stac.assets, out, log=out / "requests.jsonl") as lb:
        query = StacQuery(lb.stac_url, "sentinel-2-l2a", 20.0)
        runs = {}
        for method in ("median", "clearest"):
            runs[method] = classify_sites(files.sites, [], files.dcm_dh, files.dcm_year, out / method,
                                          config={"composite": method, "quicklook": method == "median"}, stac=query)
            ev = evaluate_maps(out / method, files.truth_lulc, out_dir=out / method / "report",
                               title=f"Rules from the {method} composite (loopback STAC)")
            scores[method] = {"overall_accuracy": ev["overall_accuracy"], "kappa": ev["kappa"]}
    nbytes = sum(json.loads(line)["bytes"] for line in (out / "requests.jsonl").read_text().splitlines())
    size = sum(p.stat().st_size for p in stac.assets.rglob("*.tif"))
    atomic_write_text(out / "summary.json", json.dumps({"scores": scores, "bytes_transferred": nbytes,
                                                        "assets_bytes": size}, indent=1))
    return [
        f"{stac.root}: the region as a STAC catalogue (per-band COGs + SCL, 4 scenes a year with clouds and "
        f"shadows; {stac.earth_search.relative_to(out)} and {stac.planetary_computer.relative_to(out)})",
        f"{out / 'median' / 'maps'}: {len(runs['median'].results)} site maps from median composites searched "
        f"(rustac serve) and read by HTTP range requests on 127.0.0.1; per-pixel clear counts in "
        f"{out / 'median' / 'clear_count'}",
        f"rules OA {scores['median']['overall_accuracy']:.3f} from median composites vs "
        f"{scores['clearest']['overall_accuracy']:.3f} from the clearest scene; "
        f"{nbytes / 1e6:.1f} MB transferred for both runs of {size / 1e6:.1f} MB of assets",
    ]
