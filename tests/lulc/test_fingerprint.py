"""A rewritten input file invalidates the LULC units that read it (resume must not reuse stale maps)."""

import os

from minescape.imagery.local_scenes import discover_scenes
from minescape.lulc.pipeline import build_units
from minescape.sites import read_sites


def _fingerprints(region, tmp_path):
    sites, _ = read_sites(region.sites)
    scenes = discover_scenes([region.scene_dir])
    units = build_units(sites, scenes, region.dcm_dh, region.dcm_year, tmp_path, classifier="rules", config={})
    return {u.id: u.fingerprint for u in units}


def test_touching_the_dcm_changes_every_fingerprint(small_region, tmp_path):
    before = _fingerprints(small_region, tmp_path)
    assert before == _fingerprints(small_region, tmp_path)
    st = os.stat(small_region.dcm_year)
    try:
        os.utime(small_region.dcm_year, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        after = _fingerprints(small_region, tmp_path)
    finally:
        os.utime(small_region.dcm_year, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert set(after) == set(before) and all(after[k] != before[k] for k in before)
