"""Progress bars: long names are cut, the bar and the counts stay on an 80-column terminal."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from minescape import progress


@pytest.mark.parametrize("width", [80, 160])
def test_long_names_do_not_squeeze_out_the_counts(monkeypatch, width):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(progress, "err_console", console)
    monkeypatch.delenv("MINESCAPE_PROGRESS", raising=False)
    long_unit = "Very-Long-Region-Name_Some-Province-With-A-Long-Name_And-A-City-Name-Too"
    with progress.make_progress() as bar:
        task = bar.add_task("predicting S2B_MSIL2A_20240101T033049_N0510_R018_T49QGF.tif", total=100,
                            extra=long_unit)
        bar.advance(task, 40)
        bar.refresh()
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", part) for part in console.file.getvalue().split("\r")]
    last = [ln.strip("\n") for ln in lines if "40/100" in ln]
    assert last, lines  # the count is there in full
    line = last[-1]
    assert len(line) <= width and "━" in line and "eta" in line
    assert "predicting S2B" in line and "Very-Long-Regio" in line  # both names shown, cut or whole
    assert "…" in line  # cut, not wrapped
