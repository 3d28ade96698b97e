"""The end-to-end demo on the built-in synthetic region.

Each pipeline contributes one stage module with ``run(ctx: DemoContext) -> list[str]`` (lines that say
what it wrote and what it shows). Stages run in order; later stages find earlier outputs in
``ctx.outputs``. A stage whose module is not present is skipped.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from minescape.synthetic import RegionConfig, RegionFiles, generate

# (title, module) in pipeline order
STAGES: tuple[tuple[str, str], ...] = (
    ("mining land use/land cover", "minescape.lulc.demo"),
    ("publish and inspect the release", "minescape.publish.demo"),
    ("index change detection", "minescape.change.demo"),
    ("deep change detection", "minescape.change.deep.demo"),
    ("large-area map", "minescape.maps.demo"),
    ("executor and resume", "minescape.runner_demo"),
    ("offline report", "minescape.webreport.demo"),
)


@dataclass
class DemoContext:
    """What a stage gets: the region's files, its own output folder and earlier stages' outputs."""

    region: RegionFiles
    out: Path
    seed: int
    console: Console
    outputs: dict[str, object] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        """``out/<name>``, created."""
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def run_demo(out: str | Path, *, seed: int = 42, console: Console, config: RegionConfig | None = None,
             stages: tuple[tuple[str, str], ...] | None = None) -> dict:
    """Run every available stage (or only ``stages``); returns ``{stage: {"seconds": s, "lines": [...]}}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    t0 = time.perf_counter()
    with console.status("generating the synthetic region"):
        region = generate(out / "region", config or RegionConfig(seed=seed))
    report["synthetic region"] = {
        "seconds": time.perf_counter() - t0,
        "lines": [f"{region.root}: 6 sites (sites.gpkg), Sentinel-2 scenes (scenes/), DEM change (dcm_dh.tif, "
                  f"dcm_year.tif) and the known truth (truth/) in EPSG:32750"],
    }
    console.print(f"[bold]synthetic region[/] {report['synthetic region']['lines'][0]}")
    ctx = DemoContext(region=region, out=out, seed=seed, console=console)
    for title, module in stages or STAGES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        t0 = time.perf_counter()
        lines = mod.run(ctx)
        report[title] = {"seconds": time.perf_counter() - t0, "lines": lines}
        console.print(f"[bold]{title}[/] ({report[title]['seconds']:.1f} s)")
        for line in lines:
            console.print(f"  {line}")
    return report
