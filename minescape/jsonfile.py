"""Reading a user's JSON file: one-line errors naming the file (missing, unreadable, not JSON, not an object)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minescape.errors import InputError, MissingInputError


def read_json(path: str | Path, what: str = "JSON file") -> dict[str, Any]:
    """The JSON object in ``path`` (every minescape JSON input is an object at its top level).

    Raises:
        MissingInputError: ``"<what> not found"`` when there is no such file.
        InputError: ``"<what> is not valid JSON (...)"`` for a folder, undecodable bytes or a syntax error
            (with its line and column); ``"<what> is not a JSON object (...)"`` for a list, a string or a number.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{what} not found", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", path=path) from None
    except OSError as exc:
        raise InputError(f"{what} cannot be read ({exc.strerror or exc})", path=path) from None
    if not isinstance(data, dict):
        raise InputError(f"{what} is not a JSON object (its top level is a {type(data).__name__})", path=path)
    return data
