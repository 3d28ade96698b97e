"""Signed asset URLs: Planetary Computer's blob URLs need a SAS token appended before they can be read.

A signer is any ``Callable[[str], str]`` turning an href into a readable URL. :func:`default_signer` picks the
``planetary-computer`` package's ``sign`` for a Planetary Computer catalogue (imported only then; install it with
``pip install planetary-computer``) and no signing otherwise. Cache keys and run records use the unsigned href,
so a token that changes between runs does not invalidate cached windows.
"""

from __future__ import annotations

from collections.abc import Callable

from minescape.errors import InputError

Signer = Callable[[str], str]
PLANETARY_COMPUTER = "planetarycomputer.microsoft.com"


def no_signing(href: str) -> str:
    """The href unchanged."""
    return href


def default_signer(catalogue: str) -> Signer:
    """The signer a catalogue needs: ``planetary_computer.sign`` for Planetary Computer, else none.

    Raises:
        InputError: for a Planetary Computer URL when the ``planetary-computer`` package is not installed.
    """
    if PLANETARY_COMPUTER not in catalogue:
        return no_signing
    try:
        import planetary_computer
    except ModuleNotFoundError:
        raise InputError(f"{catalogue}: Planetary Computer assets must be signed; install the "
                         "'planetary-computer' package (pip install planetary-computer)") from None
    return planetary_computer.sign
