"""Reading a user's JSON file: one-line errors naming the file (missing, not a regular file, too large,
unreadable, not JSON, not an object)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from minescape.errors import InputError, MissingInputError

#: Largest JSON file read (bytes). Rules, model cards, STAC and manifests are far smaller; a LightGBM model JSON
#: of thousands of trees stays under it. Larger files are refused before they are read.
MAX_JSON_BYTES = 256 * 1024 * 1024


def read_json(path: str | Path, what: str = "JSON file", *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in ``path`` (every minescape JSON input is an object at its top level): :func:`read_json_value`
    and ``InputError("<what> is not a JSON object (...)")`` for a list, a string or a number."""
    data = read_json_value(path, what, max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise InputError(f"{what} is not a JSON object (its top level is a {type(data).__name__})", path=path)
    return data


def read_json_value(path: str | Path, what: str = "JSON file", *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``, whatever its top level (a run's ``sites.json`` is a list).

    Only a regular file of at most ``max_bytes`` is read (``/dev/zero``, a FIFO or a huge file never is), and
    never more than ``max_bytes + 1`` bytes of it (a file growing while read is caught too).

    Raises:
        MissingInputError: ``"<what> not found"`` when there is no such file.
        InputError: ``"<what> is not a regular file"`` (a folder, a device, a pipe); ``"<what> is larger than
            ..."``; ``"<what> is not valid JSON (...)"`` for undecodable bytes or a syntax error (with its line
            and column).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingInputError(f"{what} not found", path=path) from None
    except OSError as exc:
        raise InputError(f"{what} cannot be read ({exc.strerror or exc})", path=path) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise InputError(f"{what} is not valid JSON (not a regular file: {kind})", path=path)
    if st.st_size > max_bytes:
        raise InputError(f"{what} is larger than the limit of {max_bytes:,} bytes ({st.st_size:,} bytes)", path=path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{what} cannot be read ({exc.strerror or exc})", path=path) from None
    if len(raw) > max_bytes:
        raise InputError(f"{what} is larger than the limit of {max_bytes:,} bytes", path=path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise InputError(f"{what} is not valid JSON ({why})", path=path) from None
    return data
