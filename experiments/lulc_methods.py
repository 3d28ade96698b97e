"""Published-method preset vs our default on the synthetic region's held-out sites (docs/lulc.md table).

Generates the default synthetic region (1000 x 800 px, 6 sites, DCM as DLR tile ZIPs), trains both methods on
the truth of sites S01-S03 and scores S04-S06 (a split by site), through the DLR tile path. Prints the Markdown
table and writes ``OUT/comparison.json``.

Run: ``python experiments/lulc_methods.py [OUT]`` (default /tmp/minescape-lulc-methods).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: Path) -> None:
    from minescape.lulc.demo import split_sites
    from minescape.lulc.method_comparison import compare_methods, comparison_table
    from minescape.sites import read_sites
    from minescape.synthetic import generate, load_region_files

    root = out / "region"
    region = load_region_files(root) if (root / "region.json").exists() else generate(root)
    sites, _ = read_sites(region.sites)
    train, test = split_sites([s.id for s in sites])
    res = compare_methods(region.sites, [region.scene_dir], region.dcm, region.truth_lulc, out / "runs",
                          train_ids=train, test_ids=test, seed=0)
    print(f"train {train}, held out {test}; pixels scored: default {res['default']['n']}, "
          f"published {res['published']['n']}")
    print(f"published samples after the thresholds: {res['published']['samples']}")
    print(comparison_table(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/minescape-lulc-methods"))
