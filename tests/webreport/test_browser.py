"""The report in a real browser: headless Chromium (Debian's package) through Selenium and chromedriver.

Each test first proves what it checks is there (features drawn, a site under the pointer), then checks it:
no console error, as many features as the run has sites, a click shows the site's attributes, a screenshot.
"""

from __future__ import annotations

import json
import time

import numpy as np
import shapely
from PIL import Image
from shapely.geometry import shape


def open_report(driver, path):
    """Load ``path`` and return the browser console entries (severe ones fail the tests)."""
    driver.get_log("browser")  # drop entries of earlier pages
    url = path.resolve().as_uri()
    driver.get(url)
    deadline = time.time() + 10
    probe = ("return [document.URL, document.readyState,"
             " !!(window.minescapeReport && window.minescapeReport.ready)]")
    state = driver.execute_script(probe)
    while state != [url, "complete", True] and time.time() < deadline:
        time.sleep(0.05)
        state = driver.execute_script(probe)
    assert state == [url, "complete", True], state
    return driver.get_log("browser")


def severe(logs):
    return [e for e in logs if e.get("level") == "SEVERE"]


def click_site(driver, site_id):
    """Click the site's polygon where the map canvas (not a control) is under the pointer; returns it."""
    from selenium.webdriver.common.action_chains import ActionChains

    geo = driver.execute_script(
        "var out = null; window.minescapeReport.layers.forEach(function (g) { g.eachLayer(function (l) {"
        " if (l.feature.properties.id === arguments[0]) out = l.toGeoJSON(); }); }); return out;".replace(
            "arguments[0]", json.dumps(site_id)
        )
    )
    assert geo is not None, f"site {site_id} not on the map"
    poly = shape(geo["geometry"])
    candidates = [poly.representative_point()] + list(
        shapely.points(
            np.array(poly.exterior.coords if poly.geom_type == "Polygon" else poly.geoms[0].exterior.coords)
        )
    )
    map_el = driver.find_element("id", "map")
    rect = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", map_el)
    for pt in candidates:
        if not poly.buffer(-1e-5).contains(pt) and pt is not candidates[0]:
            continue
        xy = driver.execute_script(
            "var p = window.minescapeReport.map.latLngToContainerPoint([arguments[0], arguments[1]]);"
            "return [p.x, p.y];",
            pt.y,
            pt.x,
        )
        hit = driver.execute_script(
            "var e = document.elementFromPoint(arguments[0], arguments[1]);return e ? e.tagName : null;",
            rect["left"] + xy[0],
            rect["top"] + xy[1],
        )
        if hit == "CANVAS":
            ActionChains(driver).move_to_element_with_offset(
                map_el, int(xy[0] - rect["width"] / 2), int(xy[1] - rect["height"] / 2)
            ).click().perform()
            return xy
    raise AssertionError(f"no clickable point of site {site_id} in view")


def test_lulc_report_in_browser(browser, lulc_run, tmp_path):
    rows = json.loads((lulc_run / "sites.json").read_text())
    run = json.loads((lulc_run / "report" / "run.json").read_text())
    logs = open_report(browser, lulc_run / "report.html")
    assert severe(logs) == [], logs
    n = browser.execute_script("return window.minescapeReport.featureCount('sites')")
    assert n == len(rows) == 2
    # every per-site class map and the quicklook-free page loaded its images (no broken file links)
    loaded = browser.execute_script(
        "return Array.from(document.querySelectorAll('img.leaflet-image-layer'))"
        ".filter(function (i) { return i.complete && i.naturalWidth > 0; }).length"
    )
    assert loaded >= len(rows)
    site = rows[0]["id"]
    res = run["results"][site]
    before = browser.find_element("id", "site-info").text
    assert f"Site {site}" not in before
    click_site(browser, site)
    info = browser.find_element("id", "site-info")
    deadline = time.time() + 5
    while f"Site {site}" not in info.text and time.time() < deadline:
        time.sleep(0.05)
    text = info.text
    assert f"Site {site}" in text
    assert str(res["year"]) in text and res["year_rule"] in text and res["scene"] in text
    assert "area (m²)" in text and "area (ha)" in text
    veg = res["area_m2"]["Vegetation"]
    assert f"{veg:,.1f}".rstrip("0").rstrip(".") in text.replace(",", ",") and f"{veg / 1e4:,.2f}" in text
    ql = browser.execute_script(
        "var i = document.querySelector('#site-info img.quicklook');"
        "return i ? [i.complete, i.naturalWidth] : null;"
    )
    deadline = time.time() + 5
    while (ql is None or not ql[0]) and time.time() < deadline:
        time.sleep(0.05)
        ql = browser.execute_script(
            "var i = document.querySelector('#site-info img.quicklook');"
            "return i ? [i.complete, i.naturalWidth] : null;"
        )
    assert ql is not None and ql[1] > 0, "quicklook not shown"
    assert severe(browser.get_log("browser")) == []
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    img = np.array(Image.open(shot).convert("RGB"))
    assert img.shape[0] > 500 and img.shape[1] > 800
    # the legend colours of the site maps are on screen (the overlays were drawn, not just loaded)
    drawn = {tuple(c.tolist()) for c in img.reshape(-1, 3)[::7]}
    assert (40, 150, 60) in drawn or (225, 205, 150) in drawn  # Vegetation or Bare soil


def test_failed_and_empty_reports_in_browser(browser, failed_run, tmp_path):
    logs = open_report(browser, failed_run / "report.html")
    assert severe(logs) == [], logs
    assert browser.execute_script("return window.minescapeReport.featureCount('sites')") == 2
    body = browser.find_element("tag name", "body").text
    assert "Failures" in body and "no_dcm.tif" in body
    from minescape.webreport.write import write_report

    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(empty)
    logs = open_report(browser, empty / "report.html")
    assert severe(logs) == [], logs
    assert "What is missing" in browser.find_element("id", "missing").text
    assert browser.execute_script("return window.minescapeReport.featureCount()") == 0


def test_release_region_page_in_browser(browser, lulc_run, tmp_path):
    from minescape.publish.release import publish
    from minescape.webreport.write import write_report

    publish(lulc_run / "maps", tmp_path / "release", max_features=40, progress=False)
    n = json.loads((tmp_path / "release" / "manifest.json").read_text())["features"]
    res = write_report(tmp_path / "release", max_page_features=10)  # one page per region
    logs = open_report(browser, res.path)
    assert severe(logs) == [], logs
    assert browser.execute_script("return window.minescapeReport.featureCount('classes')") == 0
    link = browser.find_element("css selector", "nav.pages a")
    page = tmp_path / "release" / link.get_attribute("href").rsplit("/", 1)[-1]
    logs = open_report(browser, page)
    assert severe(logs) == [], logs
    assert n > 10 and browser.execute_script("return window.minescapeReport.featureCount('classes')") == n


def test_text_of_a_run_cannot_break_the_page_script(browser, failed_run, tmp_path):
    """A failure reason (from a file name the user chose) holding ``<!--<script>``: inside the page's inline data
    it would make the browser read the rest of the page as script (no map, no legend). The page still loads and
    shows the text as text."""
    import shutil

    from minescape.webreport.write import write_report

    run = tmp_path / "run"
    shutil.copytree(failed_run, run)
    edited = 0
    for path in run.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        if "no_dcm.tif" in text:
            path.write_text(text.replace("no_dcm.tif", "no_dcm<!--<script>.tif"), encoding="utf-8")
            edited += 1
    assert edited >= 1  # the reason really travels in the run's JSON
    write_report(run)
    assert "<!--<script>" not in (run / "report.html").read_text(encoding="utf-8").split("<script", 1)[1]
    logs = open_report(browser, run / "report.html")
    assert severe(logs) == [], logs
    assert browser.execute_script("return window.minescapeReport.featureCount('sites')") == 2
    assert "no_dcm<!--<script>.tif" in browser.find_element("tag name", "body").text
