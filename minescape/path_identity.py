"""Paths recognised by what they name on disk, not by how they are spelled, and the one check every command
makes before it writes: an output must not be one of its own inputs (``map predict IMAGE MODEL IMAGE`` would
replace the imagery; ``change patches`` into the folder of its pair would delete it), nor may an output folder
that a command replaces or prunes hold one. A symlink, a ``..`` or a hard link is the same file
(:class:`PathSet`); :func:`minescape.atomic.prune` and the scene discovery use the same comparison.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path

from minescape.errors import InputError


def _identity(path: str | Path) -> tuple[int, int] | None:
    """``(device, inode)`` of what ``path`` names (symlinks followed), or None when it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class PathSet:
    """Paths recognised by what they name on disk, never by how they are spelled: a symlink to one of them, a
    ``..`` through it, another relative spelling or a hard link is one of them. With ``within``, a path inside
    one of them (a folder) is too.

    An existing path is compared by file identity (device and inode, as ``os.path.samefile``); a path not yet
    written by its real path (the part that exists with its symlinks resolved, the rest normalised), so an output
    about to be created still matches an input spelled another way. Built once for checking many paths (the files
    of a folder: one ``stat`` and one ``lstat`` each, the folder resolved once).
    """

    def __init__(self, paths: Iterable[str | Path], *, within: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.within = within
        self._ids: dict[tuple[int, int], Path] = {}
        for p in self.paths:
            i = _identity(p)
            if i is not None:
                self._ids.setdefault(i, p)
        self._folders: dict[str, Path] = {}

    @cached_property
    def _reals(self) -> list[tuple[Path, Path]]:
        return [(Path(os.path.realpath(p)), p) for p in self.paths]

    def _real(self, path: Path) -> Path:
        if path.name in ("", "..") or path.is_symlink():
            return Path(os.path.realpath(path))
        key = str(path.parent)
        folder = self._folders.get(key)
        if folder is None:
            folder = self._folders[key] = Path(os.path.realpath(path.parent))
        return folder / path.name

    def match(self, path: str | Path) -> Path | None:
        """The path of the set (as given) that ``path`` is (or, ``within``, lies in); None when there is none."""
        path = Path(path)
        i = _identity(path)
        if i is not None:
            found = self._ids.get(i)
            if found is not None or not self.within:
                return found  # an existing file is one of them by identity, or none of them
        real = self._real(path)
        for r, p in self._reals:
            if real == r or (self.within and real.is_relative_to(r)):
                return p
        return None


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder, however spelled (:class:`PathSet`)."""
    return PathSet([b]).match(a) is not None


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, however either is spelled (:class:`PathSet`)."""
    return PathSet([folder], within=True).match(path) is not None


#: Inputs of a command by what the message calls them (``{"the input IMAGE": path}``); a value may be a list of
#: paths (a repeated option) or None (an option not given).
Inputs = Mapping[str, str | Path | Iterable[str | Path] | None]


def _input_items(inputs: Inputs) -> list[tuple[str, Path]]:
    items = []
    for role, value in inputs.items():
        if value is None:
            continue
        for p in [value] if isinstance(value, str | Path) else value:
            items.append((role, Path(p)))
    return items


def _spelled(path: Path, given: Path) -> str:
    """`` (<path>, by another name)`` when ``path`` spells the input otherwise than the output ``given`` does (a
    symlink, another relative spelling)."""
    return "" if os.path.abspath(path) == os.path.abspath(given) else f" ({path}, by another name)"


def check_not_input(out: str | Path, inputs: Inputs, *, what: str) -> None:
    """Refuse an output path that names one of the command's inputs, however spelled (:func:`same_path`): writing
    it would replace that input. Called by every command before any work starts.

    Args:
        out: the output file or folder (one file of an output folder: ``OUT/change_mask.tif``).
        inputs: the command's inputs by what the message calls them (:data:`Inputs`).
        what: the output as the user gave it (``OUT``, ``--errors``).

    Raises:
        InputError: ``<out>: <what> would overwrite <input>[ (<path>, by another name)]; choose another path``
            (or folder).
    """
    out = Path(out)
    for role, p in _input_items(inputs):
        if same_path(out, p):
            kind = "folder" if p.is_dir() else "path"
            raise InputError(f"{what} would overwrite {role}{_spelled(p, out)}; choose another {kind}", path=out)


def check_not_within(folder: str | Path, inputs: Inputs, *, what: str) -> None:
    """Refuse an output folder that a command replaces whole (``change patches``, ``publish``), or whose files it
    names after its units and prunes (``lulc classify``'s ``maps/``), when it is or holds one of the command's
    inputs, however spelled (:func:`is_within`): writing it would replace or delete that input.

    Raises:
        InputError: ``<folder>: <what> holds <input> (<path>), which writing this folder would replace or delete;
            choose another folder``.
    """
    folder = Path(folder)
    for role, p in _input_items(inputs):
        if is_within(p, folder):
            verb = "is" if same_path(p, folder) else "holds"
            raise InputError(f"{what} {verb} {role} ({p}), which writing this folder would replace or delete; "
                             "choose another folder", path=folder)


def check_not_in_folder(out: str | Path, folders: Inputs, *, what: str, because: str) -> None:
    """Refuse an output that is or lies in one of the command's input folders, however spelled (:func:`is_within`),
    when what is there is read as input (``lulc train --scenes DIR ... DIR/model.json``: the next run would read the
    model as a STAC item). Inputs that are files are not folders and never match.

    Raises:
        InputError: ``<out>: <what> lies in <input> (<folder>), <because>; choose a path outside it``.
    """
    out = Path(out)
    for role, p in _input_items(folders):
        if p.is_dir() and is_within(out, p):
            raise InputError(f"{what} lies in {role} ({p}), {because}; choose a path outside it", path=out)


def check_separate_outputs(outputs: Inputs, *, replaced: Iterable[str] = ()) -> None:
    """Refuse two outputs of one command that name the same file or folder, however spelled (:func:`same_path`:
    one would overwrite the other), and an output that lies in an output folder the command replaces whole or
    prunes (``replaced``: those keys of ``outputs``), which writing that folder would delete. Called by every
    command that takes two or more output paths, before any work starts; an output nested in another output
    folder that the command only adds files to is allowed.

    Args:
        outputs: the command's outputs by what the message calls them (``{"--out": path, "--errors": path}``,
            :data:`Inputs`: None for an option not given), in the order the command names them.
        replaced: the keys of ``outputs`` that are folders the command replaces or prunes.

    Raises:
        InputError: ``<b>: <what b> is also <what a> (<a>); give each output its own path``, or ``<b>: <what b>
            lies in <what a> (<a>), which this command replaces or prunes; choose a path outside it``.
    """
    items = _input_items(outputs)
    folders = set(replaced)
    for i, (role_b, b) in enumerate(items):
        for role_a, a in items[:i]:
            if same_path(b, a):
                raise InputError(f"{role_b} is also {role_a} ({a}); give each output its own path", path=b)
        for role_a, a in items:
            if role_a in folders and role_a != role_b and is_within(b, a) and not same_path(b, a):
                raise InputError(f"{role_b} lies in {role_a} ({a}), which this command replaces or prunes; "
                                 "choose a path outside it", path=b)
