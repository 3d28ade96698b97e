"""A :class:`RunContents` as HTML: the map's data inline (one JSON object), tables, figures as images.

The page loads ``report_files/leaflet/leaflet.js``, ``report_files/report.js`` and the overlay PNGs by
relative paths, so it opens from disk (``file://``) with no network; nothing is fetched with XHR (browsers
refuse it on ``file://``), which is also why features are inline GeoJSON rather than FlatGeobuf read by range
requests.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from minescape import __version__
from minescape.legend import MINING_LULC
from minescape.webreport.contents import RunContents, Table


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def format_number(value: int | float) -> str:
    """Numbers in tables: thousands separated; floats of 1,000 or more to 0.1, smaller ones to 6 digits."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.6g}"


def _cell(value) -> str:
    if value is None:
        return '<td class="na">–</td>'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{format_number(value)}</td>'
    return f"<td>{_e(value)}</td>"


def render_table(t: Table) -> str:
    """One table with its title and note (values escaped)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in t.rows)
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    empty = '<p class="note">none</p>' if not t.rows else ""
    return (
        f'<div class="table"><h3>{_e(t.title)}</h3><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{empty}{note}</div>"
    )


def _rel(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(path, report_dir)).as_posix()


def page_data(contents: RunContents, overlay_src: dict[int, str]) -> dict:
    """The JSON the page script reads: feature layers, raster overlays (``id(overlay)`` -> file), legends."""
    layers, images = [], []
    legends = []
    kinds = {layer.kind for sec in contents.sections for layer in sec.layers if layer.features}
    if kinds:
        note = " (site colour: its largest class)" if "sites" in kinds else ""
        legends.append({"title": f"Mining LULC classes{note}", "items": [[c.name, c.hex] for c in MINING_LULC]})
    for sec in contents.sections:
        for ov in sec.overlays:
            images.append(
                {"name": ov.name, "src": overlay_src[id(ov)], "bounds": list(ov.bounds), "style": ov.style}
            )
            legends.append({"title": ov.name, "items": [list(k) for k in ov.legend]})
        for layer in sec.layers:
            layers.append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "note": layer.note,
                    "features": {"type": "FeatureCollection", "features": layer.features},
                    "overlays": {
                        sid: {"src": overlay_src[id(ov)], "bounds": list(ov.bounds)}
                        for sid, ov in layer.site_overlays.items()
                    },
                }
            )
    return {"layers": layers, "images": images, "legends": legends, "sites": contents.n_site_features}


def _script_json(value) -> str:
    """``value`` as JSON safe inside an inline ``<script>``: ``<``, ``>`` and ``&`` as unicode escapes (the same
    value to JSON), so no text of a run (a site id ``<!--<script>``, ``</script>``) can end the script or make the
    browser read the rest of the page as script; U+2028/2029 too, for older engines."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def render_page(
    contents: RunContents,
    report_dir: Path,
    overlay_src: dict[int, str],
    *,
    files_dir: str = "report_files",
    links: list[tuple[str, str]] | None = None,
) -> str:
    """The whole page. ``overlay_src`` maps ``id(overlay)`` to its PNG path relative to the page; ``links``
    (label, href) are listed at the top (the region pages of a large release).
    """
    data = _script_json(page_data(contents, overlay_src))
    missing = contents.all_missing
    parts = [
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(contents.title)}</title>
<link rel="stylesheet" href="{files_dir}/leaflet/leaflet.css">
<link rel="stylesheet" href="{files_dir}/report.css">
</head><body>
<header><h1>{_e(contents.title)}</h1>
<p class="note">minescape {_e(__version__)} · run folder <code>{_e(contents.run_dir)}</code> ·
{len(contents.sections)} part(s) · {contents.n_site_features} site(s) on the map · opens offline</p></header>
"""
    ]
    if links:
        parts.append(
            '<nav class="pages"><h2>Pages</h2><ul>'
            + "".join(f'<li><a href="{_e(h)}">{_e(label)}</a></li>' for label, h in links)
            + "</ul></nav>"
        )
    if missing:
        parts.append(
            '<section id="missing" class="missing"><h2>What is missing</h2><ul>'
            + "".join(f"<li><b>{_e(m.what)}</b>: {_e(m.why)}</li>" for m in missing)
            + "</ul></section>"
        )
    hint = ("Click a site on the map to see its attributes." if contents.n_site_features
            else "The map features are on the region pages listed above." if links
            else "No site polygons in this run; the map shows its raster layers.")
    parts.append('<div id="layout"><div id="map"></div><aside>'
                 f'<div id="site-info"><p class="note">{hint}</p></div>'
                 '<div id="legend"></div></aside></div>')
    for sec in contents.sections:
        parts.append(f'<section class="part" data-kind="{_e(sec.kind)}"><h2>{_e(sec.title)}</h2>')
        parts.append(f'<p class="note">folder <code>{_e(_rel(sec.folder, report_dir))}</code></p>')
        if sec.facts:
            parts.append(
                "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in sec.facts) + "</dl>"
            )
        parts += [render_table(t) for t in sec.tables]
        for layer in sec.layers:
            if layer.note:
                parts.append(f'<p class="note">{_e(layer.name)}: {_e(layer.note)}</p>')
        if sec.figures:
            parts.append(
                '<div class="figures">'
                + "".join(
                    f'<figure><img src="{_e(_rel(f.path, report_dir))}" alt="{_e(f.title)}" loading="lazy">'
                    f"<figcaption>{_e(f.title)}</figcaption></figure>"
                    for f in sec.figures
                )
                + "</div>"
            )
        parts.append("</section>")
    parts.append(f"""<script src="{files_dir}/leaflet/leaflet.js"></script>
<script>window.MINESCAPE_REPORT = {data};</script>
<script src="{files_dir}/report.js"></script>
</body></html>
""")
    return "".join(parts)
