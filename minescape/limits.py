"""Limits on sizes users type or files declare, checked before anything is allocated or started.

Two checks, one message style (the size asked for, the limit, how to go past it where one may):

* :func:`check_alloc` -- an array the command would hold in memory (a patch, a tile, a synthetic region) must
  fit in :data:`MAX_ALLOC_BYTES` (half the machine's physical memory, at most 64 GiB); :func:`check_network`
  applies it to the weights of a network a file describes, counted on torch's meta device before it is built.
* :func:`plan_run` -- a raster whose pixels a command streams: memory stays flat, but time grows with the
  pixels. The plan states the size and the estimated time before the run starts, and refuses a run estimated
  above :data:`MAX_RUN_HOURS` unless the user passes ``--force``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minescape.errors import ConfigError, InputError, ResourceLimitError


def _physical_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not available on this system
        return 16 * 1024**3


#: Largest single allocation a user-typed size may ask for (bytes).
MAX_ALLOC_BYTES = min(_physical_bytes() // 2, 64 * 1024**3)
#: Longest estimated run started without ``--force`` (hours).
MAX_RUN_HOURS = 24.0


def _gib(n: float) -> str:
    return f"{n / 1024**3:,.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:,.1f} MiB"


def check_positive(value: int, what: str, *, minimum: int = 1) -> int:
    """``value`` if it is >= ``minimum`` (ConfigError naming the option otherwise)."""
    if value < minimum:
        raise ConfigError(f"{what} must be >= {minimum} (got {value})")
    return value


def check_alloc(n_bytes: float, what: str, *, limit: int | None = None, fix: str = "choose a smaller size") -> None:
    """Refuse an allocation of ``n_bytes`` above ``limit`` (default :data:`MAX_ALLOC_BYTES`) before it is made.

    ``fix`` ends the message: what the user can do (default ``choose a smaller size``, for sizes typed as options).

    Raises:
        ResourceLimitError: ``"<what> needs 372.5 GiB of memory, above the limit of 12.0 GiB (...); <fix>"``.
    """
    limit = MAX_ALLOC_BYTES if limit is None else limit
    if n_bytes > limit:
        raise ResourceLimitError(f"{what} needs {_gib(n_bytes)} of memory, above the limit of {_gib(limit)} "
                                 f"(half this machine's memory); {fix}")


def check_network(build, what: str, *, weights: Mapping[str, Any] | None = None) -> None:
    """Refuse a network whose float32 weights would not pass :func:`check_alloc`, before it is built: ``build()``
    runs on torch's meta device (shapes only, no memory, no initialisation), so a model file whose metadata asks
    for a network a million channels wide costs nothing to refuse.

    ``weights`` (the file's state dict, already read and bounded by the file's size): its names and shapes must be
    the network's, checked on the meta device too, so metadata declaring a network larger than the weights it
    carries (under the memory limit) is refused before that network's memory is allocated.

    Raises:
        ResourceLimitError: as :func:`check_alloc`, naming ``what``.
        InputError: ``"weights do not fit <what>: ..."`` (no path: the caller names the file).
    """
    import torch

    with torch.device("meta"):
        net = build()
    check_alloc(4.0 * sum(p.numel() for p in net.parameters()), what)
    problem = None if weights is None else weights_mismatch(weights, net.state_dict())
    if problem is not None:
        raise InputError(f"weights do not fit {what}: {problem}")


def weights_mismatch(weights: Any, like: Mapping[str, Any]) -> str | None:
    """The first way the state dict ``weights`` (from a file) differs from ``like`` (a network's state dict, real
    or on the meta device) in tensor names and shapes, or None when they match: ``"2 missing (e.g. head.bias)"``,
    ``"1 unexpected (e.g. x)"``, ``"stem.0.weight is (16, 3, 3, 3), the network has (512, 3, 3, 3)"``."""
    if not isinstance(weights, Mapping):
        return f"a {type(weights).__name__}, not a state dict"
    expected = {k: tuple(v.shape) for k, v in like.items()}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    shapes = {k: tuple(getattr(weights[k], "shape", ())) for k in expected if k in weights}
    wrong = [k for k, shape in shapes.items() if shape != expected[k]]
    if missing:
        return f"{len(missing)} missing (e.g. {missing[0]})"
    if extra:
        return f"{len(extra)} unexpected (e.g. {extra[0]})"
    if wrong:
        return f"{wrong[0]} is {shapes[wrong[0]]}, the network has {expected[wrong[0]]}"
    return None


@dataclass(frozen=True)
class RunPlan:
    """What a streamed run over ``width`` x ``height`` pixels will take (estimated on this kind of machine)."""

    width: int
    height: int
    seconds: float

    @property
    def pixels(self) -> int:
        """Pixels to process."""
        return self.width * self.height

    def line(self, name: str) -> str:
        """``name: 1,000,000 x 1,000,000 px (10^12 px), estimated 11.6 days``."""
        return f"{name}: {self.width:,} x {self.height:,} px ({self.pixels:.3g} px), estimated {duration(self.seconds)}"


def duration(seconds: float) -> str:
    """Seconds in the largest fitting unit (s, min, h, days, years)."""
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


def plan_run(width: int, height: int, *, px_per_second: float, name: str, force: bool = False,
             max_hours: float = MAX_RUN_HOURS) -> RunPlan:
    """The plan of a streamed run; ResourceLimitError when it is estimated above ``max_hours`` and not
    ``force``.

    Args:
        width, height: raster size in pixels (as the file declares it).
        px_per_second: the command's throughput on one CPU core, measured on a loaded 2-core machine
            (a rough, conservative figure: the estimate is an order of magnitude, not a promise).
        name: the input as the user named it (for the message).
        force: start whatever the estimate.
    """
    plan = RunPlan(int(width), int(height), width * height / px_per_second)
    if plan.seconds > max_hours * 3600 and not force:
        raise ResourceLimitError(f"{plan.line(name)}, above the limit of {max_hours:g} h; pass --force to run "
                                 "it anyway, or cut the raster into parts")
    return plan


def plan_raster(path, *, px_per_second: float, force: bool = False) -> RunPlan:
    """:func:`plan_run` for the raster file ``path`` from its declared size (only the header is read)."""
    from minescape.geo.raster import open_raster

    with open_raster(path) as src:
        return plan_run(src.width, src.height, px_per_second=px_per_second, name=str(path), force=force)
