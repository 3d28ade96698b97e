"""Find the Sentinel-2 items of a year over an area: a STAC API (pystac-client) or a saved ItemCollection.

A :class:`StacQuery` names the catalogue (an API URL, or an ItemCollection JSON such as ``stac-client search ...
--save items.json`` writes, which works offline the same way), the collection and the ``eo:cloud_cover``
ceiling (20 % in the published method). :func:`search_scenes` returns the items of one year whose bbox meets
the area, as :class:`~minescape.imagery.conventions.StacScene` values sorted by (date, id).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minescape.errors import InputError
from minescape.imagery.conventions import StacScene, bbox_2d, scene_from_item
from minescape.jsonfile import read_json

MAX_FILE_BYTES = 512 * 2**20  # a saved ItemCollection larger than this is refused before it is read
MAX_ITEMS = 2000  # per search: a year of one site is ~150 items on Earth Search; more means a wrong bbox


class CatalogueUnreachable(InputError):
    """The STAC API did not answer (connection refused, timeout, 5xx after retries)."""


@dataclass(frozen=True)
class StacQuery:
    """Which catalogue to search.

    Attributes:
        source: STAC API root URL (``https://earth-search.aws.element84.com/v1``) or an ItemCollection JSON path.
        collection: collection id (``sentinel-2-l2a``); None for an ItemCollection (all its items).
        max_cloud: keep items with ``eo:cloud_cover`` <= this (percent); items without it are kept, except by an
            API with the query extension, which is given the ceiling and filters itself (:func:`_api_items`).
        retries: attempts per API request (connection errors, timeouts, 5xx) with exponential backoff.
        timeout_s: seconds per API request.
    """

    source: str
    collection: str | None = None
    max_cloud: float = 20.0
    retries: int = 4
    timeout_s: float = 30.0

    @property
    def is_api(self) -> bool:
        """True for an http(s) URL, False for a local ItemCollection file."""
        return self.source.startswith(("http://", "https://"))

    def to_json(self) -> dict[str, Any]:
        """Plain dict (unit arguments)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StacQuery:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Network errors worth another try: a server gone, too slow, or cut off mid-answer (5xx answers are judged by
    their status in :func:`_retrying`)."""
    import requests
    import urllib3

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _network_cause(exc: BaseException) -> BaseException:
    """The network error under ``exc``, or ``exc`` itself when there is none.

    pystac wraps a failed fetch of a link in ``STACError`` ("HREF ... does not resolve to a STAC object") with the
    requests / urllib3 error as its cause; a retry must see the cause."""
    import requests

    network = (requests.exceptions.RequestException, *_transient_errors())
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, network) or type(cur).__name__ == "APIError":
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return exc


def _retrying(what: str, func, *, retries: int, base_delay: float = 0.5):
    """Call ``func`` up to ``retries`` times on network errors, sleeping 0.5, 1, 2 ... s between tries."""
    import requests

    last: BaseException | None = None
    for attempt in range(max(1, retries)):
        try:
            return func()
        except Exception as raised:
            exc = _network_cause(raised)
            if isinstance(exc, requests.exceptions.HTTPError):
                status = exc.response.status_code if exc.response is not None else 0
                if status < 500:
                    raise InputError(f"{what}: HTTP {status} ({str(exc)[:120]})") from None
            elif type(exc).__name__ == "APIError":  # pystac-client wraps HTTP errors in APIError
                status = getattr(exc, "status_code", None) or 0
                if status and status < 500:
                    raise InputError(f"{what}: HTTP {status} ({' '.join(str(exc).split())[:120]})") from None
            elif not isinstance(exc, _transient_errors()):
                raise  # not the network: a bug or bad data, shown as such
            last = exc  # a server gone, cut off mid-answer or failing (5xx): try again
        if attempt + 1 < retries:
            time.sleep(base_delay * 2**attempt)
    reason = " ".join(str(last).split())[:160] if last else "no answer"
    raise CatalogueUnreachable(f"{what}: STAC API unreachable after {retries} tries ({type(last).__name__}: "
                               f"{reason})")


def _client(query: StacQuery):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    io = StacApiIO(timeout=query.timeout_s)
    return Client.open(query.source, stac_io=io)


def check_catalogue(query: StacQuery) -> str:
    """Open the catalogue once before a run (so an unreachable API or a bad file stops it before anything is
    written); returns a one-line description. Raises CatalogueUnreachable / InputError."""
    if not query.is_api:
        items = _file_items(query)
        return f"{query.source}: ItemCollection of {len(items)} items"
    client = _retrying(query.source, lambda: _client(query), retries=query.retries)
    if query.collection:
        ids = _retrying(query.source, lambda: [c.id for c in client.get_collections()], retries=query.retries)
        if query.collection not in ids:
            raise InputError(f"{query.source}: no collection {query.collection!r}; the API has {sorted(ids)[:10]}")
    return f"{query.source}: STAC API, collection {query.collection}"


def _file_items(query: StacQuery) -> list[dict[str, Any]]:
    path = Path(query.source)
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise InputError(f"ItemCollection is {path.stat().st_size / 2**20:.0f} MiB (> {MAX_FILE_BYTES // 2**20} MiB); "
                         "search a smaller area", path=path)
    data = read_json(path, "STAC ItemCollection")
    if data.get("type") == "Feature":
        features = [data]
    elif data.get("type") == "FeatureCollection" and isinstance(data.get("features"), list):
        features = data["features"]
    else:
        raise InputError(f"not a STAC ItemCollection (type {data.get('type')!r}; expected FeatureCollection)",
                         path=path)
    if len(features) > 100_000:
        raise InputError(f"ItemCollection holds {len(features)} items (> 100000); search a smaller area",
                         path=path)
    return features


def _lon_spans(west: float, east: float) -> list[tuple[float, float]]:
    """Longitude intervals of a bbox: one, or two for a bbox crossing the antimeridian (``west > east``)."""
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def bboxes_meet(a: tuple[float, float, float, float], b: tuple[float, float, float, float] | None) -> bool:
    """True when two ``(west, south, east, north)`` WGS84 bboxes share a point (edges included); either may cross
    the antimeridian (``west > east``, as STAC writes it). ``b`` None (an item without a bbox) meets everything."""
    if b is None:
        return True
    if a[3] < b[1] or a[1] > b[3]:
        return False
    return any(not (x1 < y0 or x0 > y1) for x0, x1 in _lon_spans(a[0], a[2]) for y0, y1 in _lon_spans(b[0], b[2]))


def _supports_query(client: Any) -> bool:
    """True when the STAC API states the query extension in its conformance (``eo:cloud_cover`` filtered by the
    server); False when it does not say so (the ceiling is then applied here, item by item)."""
    from pystac_client.conformance import ConformanceClasses

    return bool(client.conforms_to(ConformanceClasses.QUERY))


def _matched(search: Any) -> int | None:
    """The number of items the server says a search matches, or None when it does not say (one more request)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pystac-client warns when the server gives no count
            n = search.matched()
    except Exception:  # only the error message's count: the error itself must still be raised
        return None
    return int(n) if isinstance(n, int) else None


def search_scenes(query: StacQuery, bbox_lonlat: tuple[float, float, float, float], year: int) -> list[StacScene]:
    """Items of ``year`` whose bbox meets ``bbox_lonlat`` (WGS84 degrees) with cloud cover <= ``max_cloud``.

    Returns:
        :class:`StacScene` values sorted by (date, id); an empty list when none matches.

    Item bboxes may be 3D or cross the antimeridian (:func:`bboxes_meet`); dates are UTC.

    Raises:
        CatalogueUnreachable: the API did not answer after the retries.
        InputError: an item without ``proj:epsg`` or datetime, a file that is not an ItemCollection (named); an
            API search that finds more than :data:`MAX_ITEMS` items.
    """
    if query.is_api:
        raw = _api_items(query, bbox_lonlat, year)
        base = None
    else:
        raw = _file_items(query)
        base = str(Path(query.source).resolve().parent)
    scenes: dict[str, StacScene] = {}
    for item in raw:
        if not query.is_api:
            coll = item.get("collection")
            if query.collection and coll and coll != query.collection:
                continue
            if not bboxes_meet(bbox_lonlat, bbox_2d(item.get("bbox"))):
                continue
        try:
            scene = scene_from_item(item, base=base)
        except InputError as exc:
            where = query.source
            raise InputError(f"{where}: {exc}") from None
        if scene.date.year != year:
            continue
        if scene.cloud is not None and scene.cloud > query.max_cloud:
            continue
        scenes.setdefault(scene.id, scene)
    return sorted(scenes.values(), key=lambda s: (s.date, s.id))


def _api_items(query: StacQuery, bbox_lonlat: tuple[float, float, float, float], year: int) -> list[dict[str, Any]]:
    """The items of one year's search of the API (at most :data:`MAX_ITEMS`).

    The cloud ceiling goes to the server as a ``query`` on ``eo:cloud_cover`` when the API conforms to the query
    extension (cloudy items then neither travel nor count towards the limit; the server leaves out items without
    ``eo:cloud_cover``, which Earth Search and Planetary Computer give on every Sentinel-2 item); otherwise
    :func:`search_scenes` applies it to each item.

    Raises:
        InputError: the search finds more than :data:`MAX_ITEMS` items (naming the count where the server gives
            it): a search never stops silently part way through a year.
    """
    def run() -> tuple[list[dict[str, Any]], int | None, bool]:
        client = _client(query)
        by_server = query.max_cloud < 100 and _supports_query(client)
        extra = {"query": {"eo:cloud_cover": {"lte": query.max_cloud}}} if by_server else {}
        search = client.search(collections=[query.collection] if query.collection else None,
                               bbox=list(bbox_lonlat), datetime=f"{year}-01-01/{year}-12-31",
                               max_items=MAX_ITEMS + 1, **extra)  # one more than the limit: tells truncation
        items = [dict(f) for f in search.items_as_dicts()]
        return items, (_matched(search) if len(items) > MAX_ITEMS else None), by_server

    items, matched, by_server = _retrying(f"{query.source} (search {year})", run, retries=query.retries)
    if len(items) > MAX_ITEMS:
        count = f"{matched:,} items, more than the {MAX_ITEMS:,}" if matched else f"more than the {MAX_ITEMS:,} items"
        box = ",".join(f"{v:g}" for v in bbox_lonlat)
        cloudy = "" if by_server else " (cloudy items count too: this API cannot filter eo:cloud_cover)"
        raise InputError(f"{query.source}: the search of {year} over bbox {box} finds {count} read per search"
                         f"{cloudy}; a year of one site is ~150 items: narrow the bbox or the dates"
                         f"{'' if query.collection else ', or name the collection'}")
    return items
