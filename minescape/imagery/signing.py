"""Signed asset URLs: Planetary Computer's blob URLs need a SAS token appended before they can be read.

A signer is any ``Callable[[str], str]`` turning an href into a readable URL. :func:`default_signer` picks the
``planetary-computer`` package's ``sign`` for a Planetary Computer catalogue (imported only then; install it with
``pip install planetary-computer``), :func:`sign_azure_blobs` for a saved ItemCollection (a file: whether its
items come from Planetary Computer shows only in their asset hrefs, on Azure blob storage) and no signing
otherwise. Cache keys and run records use the unsigned href, so a token that changes between runs does not
invalidate cached windows.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlparse

from minescape.errors import InputError

Signer = Callable[[str], str]
PLANETARY_COMPUTER = "planetarycomputer.microsoft.com"
#: Host suffix of Azure blob storage, where Planetary Computer keeps its assets (``sentinel2l2a01.blob...``).
AZURE_BLOB_HOST = ".blob.core.windows.net"


def no_signing(href: str) -> str:
    """The href unchanged."""
    return href


def _planetary_computer_sign(what: str) -> Signer:
    """``planetary_computer.sign``; InputError naming ``what`` (a catalogue or an asset) when it is not installed."""
    try:
        import planetary_computer
    except ModuleNotFoundError:
        raise InputError(f"{what}: Planetary Computer assets must be signed; install the "
                         "'planetary-computer' package (pip install planetary-computer)") from None
    return planetary_computer.sign


def on_azure_blob(href: str) -> bool:
    """True for an http(s) URL on Azure blob storage (``https://<account>.blob.core.windows.net/...``)."""
    url = urlparse(href)
    return url.scheme in ("http", "https") and (url.hostname or "").endswith(AZURE_BLOB_HOST)


def sign_azure_blobs(href: str) -> str:
    """``href`` signed by ``planetary_computer.sign`` when it is on Azure blob storage (:func:`on_azure_blob`),
    else unchanged: the signer of a saved ItemCollection, whose file path does not say where its items come from.

    Raises:
        InputError: for a blob href when the ``planetary-computer`` package is not installed (naming its host).
    """
    if not on_azure_blob(href):
        return href
    return _planetary_computer_sign(f"asset on {urlparse(href).hostname}")(href)


def default_signer(catalogue: str) -> Signer:
    """The signer a catalogue needs: ``planetary_computer.sign`` for Planetary Computer's API,
    :func:`sign_azure_blobs` for a saved ItemCollection (a file), else none.

    Raises:
        InputError: for a Planetary Computer URL when the ``planetary-computer`` package is not installed.
    """
    if PLANETARY_COMPUTER in catalogue:
        return _planetary_computer_sign(catalogue)
    if not catalogue.startswith(("http://", "https://")):
        return sign_azure_blobs
    return no_signing
