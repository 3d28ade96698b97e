"""How a report part reads a run's JSON files: size-checked (a run folder is a user's), problems as Missing rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minescape.errors import InputError
from minescape.jsonfile import read_json_value
from minescape.webreport.contents import Missing


def read_part_json(path: Path, what: str, missing: list[Missing]) -> Any:
    """The parsed JSON at ``path`` (any top level: a run's ``sites.json`` is a list), or None with a Missing row
    ``what`` saying why: not found, not a regular file, larger than :data:`minescape.jsonfile.MAX_JSON_BYTES`,
    not JSON. The one way the report's parts read JSON."""
    if not path.exists():
        missing.append(Missing(what, "not found"))
        return None
    try:
        return read_json_value(path, path.name)
    except InputError as exc:
        missing.append(Missing(what, str(exc).splitlines()[0][:200]))
        return None
