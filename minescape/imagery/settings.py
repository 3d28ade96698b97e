"""Imagery settings a pipeline carries in its config (``config["imagery"]``), validated in one place, and the
source they describe.

Keys (defaults): ``max_cloud`` 20 (percent, ``eo:cloud_cover`` ceiling), ``scl_mask`` [0, 1, 3, 8, 9, 10],
``min_clear`` 0.3 (least share of a site's pixels with a clear observation; below it the site is reported),
``retries`` 4, ``timeout_s`` 30, ``cache_dir`` None (fetched windows; the pipelines default it to
``OUT/.window-cache``), ``threads`` None = auto (a scene's assets fetched at the same time, ``threads // 2``
scenes at a time; 1 = one request after the other). Auto is 8 for a remote catalogue, whose reads wait on the
network, and 1 for a catalogue on this host (127.0.0.1, localhost), where threads only compete for the CPU with
the server (measured in bench/bench_stac.py: 50 ms round trips 3.3 -> 13.1 sites/min with 8 threads; loopback
41.7 -> 15.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from minescape.errors import ConfigError
from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes
from minescape.imagery.composite import METHODS

COMPOSITE_CHOICES: tuple[str, ...] = ("auto", *METHODS)


@dataclass(frozen=True)
class ImagerySettings:
    """See the module docstring."""

    max_cloud: float = 20.0
    scl_mask: tuple[int, ...] = field(default=DEFAULT_SCL_MASK)
    min_clear: float = 0.3
    retries: int = 4
    timeout_s: float = 30.0
    cache_dir: str | None = None
    threads: int | None = None

    @property
    def scene_threads(self) -> int:
        """Scenes read at the same time (auto: 4)."""
        return max(1, (self.threads or 8) // 2)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ImagerySettings:
        """Defaults updated with ``data``; ConfigError naming an unknown key (valid ones listed) or a bad value."""
        names = [f.name for f in fields(cls)]
        data = dict(data or {})
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ConfigError(f"unknown imagery option {unknown[0]!r}; choose one of: {', '.join(names)}")
        s = cls(**{**asdict(cls()), **data})
        s = cls(float(s.max_cloud), check_scl_classes(s.scl_mask), float(s.min_clear), int(s.retries),
                float(s.timeout_s), None if s.cache_dir is None else str(s.cache_dir),
                None if s.threads is None else int(s.threads))
        if not 0 <= s.max_cloud <= 100:
            raise ConfigError(f"max_cloud must be within 0..100 percent (got {s.max_cloud})")
        if not 0 <= s.min_clear <= 1:
            raise ConfigError(f"min_clear must be a share within 0..1 (got {s.min_clear})")
        if s.retries < 1:
            raise ConfigError(f"retries must be >= 1 (got {s.retries})")
        if s.threads is not None and not 1 <= s.threads <= 64:
            raise ConfigError(f"threads must be within 1..64 (got {s.threads})")
        return s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        d = asdict(self)
        d["scl_mask"] = list(self.scl_mask)
        return d


def resolve_method(composite: str, *, from_catalogue: bool) -> str:
    """``auto`` -> ``median`` for a STAC catalogue, ``clearest`` for local scenes; other choices as given."""
    if composite not in COMPOSITE_CHOICES:
        raise ConfigError(f"invalid composite {composite!r}; choose one of: {', '.join(COMPOSITE_CHOICES)}")
    if composite == "auto":
        return "median" if from_catalogue else "clearest"
    return composite


def is_loopback(url: str) -> bool:
    """True for an http(s) URL on this host (127.0.0.1, localhost, ::1)."""
    from urllib.parse import urlparse

    return url.startswith(("http://", "https://")) and urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def make_source(stac: dict[str, Any] | None, refs: Sequence[Any], settings: ImagerySettings):
    """The :class:`~minescape.imagery.sources.StacSource` for ``stac`` (``{"source", "collection"}``) or the
    :class:`~minescape.imagery.sources.LocalSource` of ``refs``."""
    from minescape.imagery.sources import LocalSource, StacSource
    from minescape.imagery.stac_search import StacQuery
    from minescape.imagery.window_reader import ReadOptions

    if stac is None:
        return LocalSource(refs, scl_classes=settings.scl_mask)
    query = StacQuery(stac["source"], stac.get("collection"), settings.max_cloud, settings.retries,
                      settings.timeout_s)
    threads = settings.threads or (1 if is_loopback(query.source) else 8)
    read = ReadOptions(retries=settings.retries, timeout_s=settings.timeout_s,
                       cache_dir=Path(settings.cache_dir) if settings.cache_dir else None, threads=threads)
    return StacSource(query, scl_classes=settings.scl_mask, read=read)
