"""Reading a user's CSV table: one-line errors naming the file (missing, not a regular file, too large, empty,
not UTF-8, malformed), the companion of :mod:`minescape.jsonfile`."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

from minescape.errors import InputError, MissingInputError

if TYPE_CHECKING:
    import pandas as pd

#: Largest CSV read (bytes): point samples and area tables are far smaller; larger files are refused unread.
MAX_CSV_BYTES = 512 * 1024 * 1024


def read_csv(path: str | Path, what: str, *, expected: str = "", max_bytes: int = MAX_CSV_BYTES) -> pd.DataFrame:
    """The table in the CSV file ``path`` (UTF-8, a header row).

    Args:
        path: the file.
        what: what it is, for the messages (``points CSV``, ``reference area table``).
        expected: what its header should hold, added to the message for an empty file.
        max_bytes: larger files are refused before they are read.

    Raises:
        MissingInputError: no such file.
        InputError: one line naming the file: not a regular file, larger than ``max_bytes``, empty, not UTF-8
            text, or not parseable as CSV.
    """
    import pandas as pd

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingInputError(f"{what} not found", path=path) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} is not a regular file", path=path)
    if st.st_size > max_bytes:
        raise InputError(f"{what} is larger than the limit of {max_bytes:,} bytes", path=path)
    try:
        return pd.read_csv(path, encoding="utf-8", encoding_errors="strict")
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} is empty" + (f" (expected {expected})" if expected else ""), path=path) from None
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        why = "not UTF-8 text (a binary file?)" if isinstance(exc, UnicodeDecodeError) else \
            " ".join(str(exc).split())[:120]
        raise InputError(f"{what} cannot be read ({why})", path=path) from None
