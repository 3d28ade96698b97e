"""The raw scratch grid: windows written by any process read back exactly; the file never outlives its run."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from minescape.errors import OutputError
from minescape.geo.scratch import ScratchGrid, scratch_grid
from minescape.parallel import ordered_map


def _write_block(item: tuple[ScratchGrid, Window, np.ndarray]) -> int:
    scratch, window, values = item
    scratch.write(values, window)
    return 1


def test_windows_written_by_two_processes_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(70, 93)).astype(np.float32)
    full[5:9, 40:60] = np.nan
    with scratch_grid(tmp_path / "out" / "difference.raw", 70, 93) as scratch:
        assert scratch.path.parent == tmp_path / "out" and scratch.path.name.startswith(".tmp-")
        assert scratch.path.stat().st_size == 70 * 93 * 4
        assert not scratch.read(Window(0, 0, 93, 70)).any()  # sized up front, zero-filled before writing
        windows = [Window(c, r, min(32, 93 - c), min(32, 70 - r)) for r in range(0, 70, 32) for c in range(0, 93, 32)]
        items = [(scratch, w, full[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]) for w in windows]
        assert sum(ordered_map(_write_block, items, workers=2)) == len(windows)
        np.testing.assert_array_equal(scratch.read(Window(0, 0, 93, 70)), full)
        for w in (Window(17, 3, 50, 61), Window(92, 69, 1, 1), Window(0, 31, 93, 2)):  # across written windows
            np.testing.assert_array_equal(scratch.read(w), full[w.row_off:w.row_off + w.height,
                                                                 w.col_off:w.col_off + w.width])
        path = scratch.path
    assert not path.exists()


def test_windows_outside_the_grid_or_misfit_blocks_are_refused(tmp_path):
    with pytest.raises(RuntimeError), scratch_grid(tmp_path / "x.raw", 10, 10) as scratch:
        with pytest.raises(ValueError, match="outside"):
            scratch.read(Window(5, 5, 6, 5))
        with pytest.raises(ValueError, match="outside"):
            scratch.write(np.zeros((2, 2), np.float32), Window(-1, 0, 2, 2))
        with pytest.raises(ValueError, match="does not fit"):
            scratch.write(np.zeros((3, 2), np.float32), Window(0, 0, 2, 2))
        raise RuntimeError("the block fails: the file must still go")
    assert list(tmp_path.iterdir()) == []


def test_a_grid_larger_than_the_free_space_is_refused_before_anything_is_written(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    side = int((free // 4) ** 0.5) + 1000  # more float32 values than the disk can hold
    with pytest.raises(OutputError, match="MiB of scratch space") as err:
        with scratch_grid(tmp_path / "big.raw", side, side):
            pass
    assert str(tmp_path) in str(err.value) and list(tmp_path.iterdir()) == []
