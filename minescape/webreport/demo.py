"""Demo stage: the offline report of everything the demo wrote (``demo-output/report.html``)."""

from __future__ import annotations


def run(ctx) -> list[str]:
    """Write ``ctx.out/report.html`` over every stage's outputs; returns the lines to print."""
    from minescape.webreport.write import write_report

    res = write_report(ctx.out)
    ctx.outputs["report"] = res.path
    lines = [
        f"{res.path}: one offline page (Leaflet map of the {res.sites} site polygons of the LULC runs, class "
        "maps, change mask and probability, release polygons, the map product tiles; area, year, failure, "
        "product and accuracy panels); "
        "open it in any browser"
    ]
    lines += [f"listed as missing: {m.what}: {m.why}" for m in res.missing]
    return lines
