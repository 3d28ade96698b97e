"""Figures (functions return a matplotlib Figure) and quicklooks; :func:`save_figure` writes PNGs atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from minescape.atomic import atomic_path  # noqa: E402
from minescape.legend import Legend  # noqa: E402


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG atomically and close it. PNG metadata carries no timestamp (reproducible)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def confusion_matrix_figure(matrix: np.ndarray, names: Sequence[str], *, title: str = "Confusion matrix",
                            normalize: bool = True) -> Figure:
    """Heat map of a confusion matrix (rows reference, columns map), counts annotated."""
    cm = np.asarray(matrix, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.1 * n + 3, 1.0 * n + 2.5))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), names, rotation=40, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("mapped")
    ax.set_ylabel("reference")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of reference row" if normalize else "count")
    return fig


def rgb_composite(stack: np.ndarray, *, percentiles: tuple[float, float] = (2, 98)) -> np.ndarray:
    """``(3, rows, cols)`` reflectance -> ``(rows, cols, 3)`` float image in [0, 1], stretched per band."""
    out = np.zeros((*stack.shape[1:], 3), dtype=np.float32)
    for i in range(3):
        band = stack[i]
        ok = np.isfinite(band)
        if ok.any():
            lo, hi = np.percentile(band[ok], percentiles)
            out[..., i] = np.clip((np.nan_to_num(band, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    return out


def legend_handles(legend: Legend, present: Sequence[int] | None = None) -> list[Patch]:
    """Matplotlib legend patches with the legend's colours and names."""
    codes = legend.codes if present is None else [c for c in legend.codes if c in set(present)]
    return [Patch(facecolor=np.array(legend.by_code(c).color) / 255, edgecolor="0.3", label=legend.name_of(c))
            for c in codes]


def class_map_image(classes: np.ndarray, legend: Legend) -> np.ndarray:
    """Class codes -> RGBA float image with the legend's colours (nodata transparent)."""
    lut = np.zeros((max(max(legend.codes), legend.nodata, int(classes.max(initial=0))) + 1, 4), np.float32)
    for c in legend:
        lut[c.code] = (*np.array(c.color) / 255, 1)
    return lut[classes]


def quicklook(rgb_stack: np.ndarray, classes: np.ndarray, legend: Legend, *, title: str = "",
              extent: tuple[float, float, float, float] | None = None, outline: np.ndarray | None = None) -> Figure:
    """Imagery (true colour) beside the class map, with the legend's colours and names.

    Args:
        rgb_stack: ``(3, rows, cols)`` reflectance (red, green, blue).
        classes: ``(rows, cols)`` class codes.
        legend: legend for colours and names.
        title: figure title.
        extent: ``(left, right, bottom, top)`` in map units for axis labels.
        outline: optional bool mask drawn as a contour (e.g. the site polygon).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharex=True, sharey=True)
    axes[0].imshow(rgb_composite(rgb_stack), extent=extent, interpolation="nearest")
    axes[0].set_title("Sentinel-2 true colour")
    axes[1].imshow(class_map_image(classes, legend), extent=extent, interpolation="nearest")
    axes[1].set_title("class map")
    if outline is not None:
        for ax in axes:
            ax.contour(outline.astype(float), levels=[0.5], colors="yellow", linewidths=0.8,
                       extent=None if extent is None else (extent[0], extent[1], extent[3], extent[2]))
    present = np.unique(classes)
    axes[1].legend(handles=legend_handles(legend, present), loc="center left", bbox_to_anchor=(1.01, 0.5),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig
