"""The clearest-scene choice reads each band once: the chosen scene's probe bands are reused by load_stack."""

from __future__ import annotations

import numpy as np

from minescape.lulc import scene_index
from minescape.lulc.features import SPECTRAL_BANDS
from minescape.lulc.inputs import clearest_scene, discover_scenes, load_stack, read_stack_on
from minescape.sites import read_sites, site_year


def test_probe_bands_reused_with_the_same_values(small_region):
    refs = discover_scenes([small_region.scene_dir])
    sites, _ = read_sites(small_region.sites)
    checked = 0
    for site in sites:
        year = site_year(site, small_region.dcm_year).year
        ref, share, _ = clearest_scene(refs, site, year)
        if np.isnan(share):
            continue  # one scene of that year: nothing probed
        kept = scene_index._probe.value
        assert kept[0] == ref and set(kept[2].band_names) == {"B02", "B11"}  # the winner's probe is kept
        stack, _ = load_stack(ref, site, bands=SPECTRAL_BANDS)
        assert scene_index._probe.value is None  # used once, then forgotten
        fresh = read_stack_on(scene_index.describe(ref), site.grid, bands=SPECTRAL_BANDS)
        fresh.data[:, ~site.mask()] = np.nan
        assert stack.band_names == fresh.band_names
        assert np.isfinite(stack.data).sum() > 100
        np.testing.assert_array_equal(stack.data, fresh.data)  # NaN at the same places, same values
        checked += 1
    assert checked > 0  # the small region has a year with two scenes
    other = sites[0]
    assert scene_index.recall_probe(refs[0], other.grid) is None
