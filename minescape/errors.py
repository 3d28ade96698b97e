"""One exception root for minescape.

Every error a user can cause derives from :class:`InputError`; the CLI prints its message on one
line and exits with code 2. Subclasses also inherit the matching builtin so callers may catch
``ValueError`` or ``FileNotFoundError`` as usual.
"""

from __future__ import annotations

from pathlib import Path


class MinescapeError(Exception):
    """Root of all minescape errors."""


class InputError(MinescapeError, ValueError):
    """Bad user input: a file, a value or a configuration that cannot be used.

    The message names the file (when there is one), the problem and, where possible, the fix.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{path}: {message}" if path is not None else message)


class MissingInputError(InputError, FileNotFoundError):
    """A required file or folder does not exist."""


class CRSMismatchError(InputError):
    """Coordinate reference systems or grids that cannot be combined."""


class NoOverlapError(InputError):
    """Inputs whose extents do not overlap."""


class ConfigError(InputError):
    """An invalid configuration value (the message lists the valid choices)."""


class OutputError(MinescapeError, OSError):
    """An output that cannot be written: disk full, read-only file system, no permission, a file where a
    folder is expected or a folder where a file is expected. The message names the user's path (never an
    internal temporary name) and the cause."""

    def __init__(self, message: str, *, path: str | Path | None = None, errno: int | None = None) -> None:
        self.path = None if path is None else Path(path)
        text = f"{path}: {message}" if path is not None else message
        super().__init__(text)
        self.errno = errno
        self.strerror = text

    def __str__(self) -> str:
        return self.strerror


class ResourceLimitError(InputError):
    """A size the user asked for (pixels, bytes, patches) above the limit the machine can hold or the run
    can finish; the message gives the size, the limit and how to go past it where one may."""


class UnitFailed(MinescapeError, RuntimeError):
    """One unit (site, tile, city) of a multi-unit run failed; the run goes on."""


class MainGuardError(MinescapeError, RuntimeError):
    """Worker processes cannot start: the caller's script has no ``if __name__ == "__main__":`` guard
    (:func:`minescape.parallel.process_pool`)."""


def check_choice(value: str, choices: list[str] | tuple[str, ...], *, what: str) -> str:
    """Return ``value`` if it is one of ``choices`` else raise a ConfigError listing them."""
    if value not in choices:
        raise ConfigError(f"invalid {what} {value!r}; choose one of: {', '.join(map(str, choices))}")
    return value
