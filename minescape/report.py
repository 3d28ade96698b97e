"""Figures (functions return a matplotlib Figure) and quicklooks; :func:`save_figure` writes PNGs atomically.

Figures are built with matplotlib's object API (:func:`new_figure`), never through :mod:`matplotlib.pyplot`:
importing or calling this module leaves the user's backend (Jupyter's inline backend, QGIS's Qt backend) as it
was, and a returned figure is not registered with pyplot, so it is freed when the caller drops it (a loop over
sites does not pile figures up). :func:`save_figure` draws through Agg whatever the session's backend. In a
notebook, IPython shows a returned Figure through the PNG formatter its matplotlib integration registers for
every :class:`~matplotlib.figure.Figure` (``%matplotlib inline``, on by default in a Jupyter kernel once pyplot is
imported) and otherwise through :meth:`ReportFigure._repr_png_`; ``fig.savefig(...)`` works anywhere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minescape.atomic import atomic_path
from minescape.legend import Legend


class ReportFigure(Figure):
    """A matplotlib Figure that IPython can show on its own.

    matplotlib's Figure has no PNG representation: IPython displays one only through the formatter its
    matplotlib integration registers (``%matplotlib inline``, or a Jupyter kernel's inline backend once pyplot is
    imported). That formatter, where registered, still takes precedence (it honours the user's
    ``InlineBackend.figure_formats``); :meth:`_repr_png_` covers a session where it is not.
    """

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes at its own dpi, cropped as the inline backend crops (``bbox_inches="tight"``)."""
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def new_figure(*, figsize: tuple[float, float]) -> ReportFigure:
    """A Figure of ``figsize`` inches (the rcParams dpi), on its own Agg canvas, unknown to pyplot.

    The one way minescape creates a figure: no backend is chosen or changed, and nothing keeps the figure
    alive but the caller's reference.
    """
    fig = ReportFigure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: draws and saves without any pyplot backend
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG atomically (drawn through Agg). PNG metadata carries no timestamp (reproducible).

    Nothing is closed: minescape's figures (:func:`new_figure`) are not registered with pyplot and are freed with
    the caller's last reference; a pyplot figure of the caller's stays the caller's to close.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", metadata={"Software": None})
    return path


def confusion_matrix_figure(matrix: np.ndarray, names: Sequence[str], *, title: str = "Confusion matrix",
                            normalize: bool = True) -> Figure:
    """Heat map of a confusion matrix (rows reference, columns map), counts annotated."""
    cm = np.asarray(matrix, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(names)
    fig = new_figure(figsize=(1.1 * n + 3, 1.0 * n + 2.5))
    ax = fig.subplots()
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
    fig = new_figure(figsize=(11, 5.2))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
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
