"""Retries of STAC API calls see the network error under pystac's wrapping: a link whose fetch fails raises
``STACError("HREF ... does not resolve to a STAC object")`` with the requests error as its cause, and a server
killed mid-run must read "unreachable", not the wrapper's text."""

from __future__ import annotations

import socket

import pystac
import pytest

from minescape.imagery.stac_search import CatalogueUnreachable, _retrying


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("io", ["pystac", "pystac-client"])
def test_link_to_a_dead_server_is_retried_then_unreachable(io):
    from pystac_client.stac_api_io import StacApiIO

    url = _dead_url()
    calls = []
    owner = pystac.Catalog("owner", "a catalogue whose root link points at a dead server")
    if io == "pystac-client":  # requests under it, as in a run
        owner._stac_io = StacApiIO(timeout=5)

    def resolve():
        calls.append(1)
        link = pystac.Link("root", url)
        link.owner = owner
        return link.resolve_stac_object()

    with pytest.raises(pystac.STACError) as raw:  # what pystac raises on its own
        resolve()
    assert "does not resolve to a STAC object" in str(raw.value)
    calls.clear()
    with pytest.raises(CatalogueUnreachable) as exc:
        _retrying(url, resolve, retries=3, base_delay=0.0)
    assert len(calls) == 3
    text = str(exc.value)
    assert "unreachable after 3 tries" in text and "127.0.0.1" in text


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("not a network problem")

    with pytest.raises(ValueError):
        _retrying("x", broken, retries=3, base_delay=0.0)
    assert len(calls) == 1
