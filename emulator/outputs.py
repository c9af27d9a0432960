"""Output paths checked before a command does its work: a run of hours must not end in a traceback because its
plot, recording or report cannot be written. Shared by ``flatsat run``, ``demo``, ``orbit``, ``plot``, ``test``
and ``campaign``; each problem names the option and what would do."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def plot_formats() -> list[str]:
    """The image formats matplotlib writes (by file suffix). Imports matplotlib: call it only for a plot."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def file_problem(flag: str, value: str | os.PathLike[str], *, image: bool = False, example: str = "out") -> str | None:
    """What is wrong with ``value`` as the file of option ``flag`` (None: nothing): a folder, a folder that cannot
    be made, a file that cannot be written; ``image``: a suffix matplotlib cannot write. ``example``: the file name
    a message suggests. Missing folders above it are made; a new file is not left behind."""
    path = Path(value)
    if image and path.suffix:
        formats = plot_formats()
        if path.suffix[1:].lower() not in formats:
            return (f"{flag} {value}: cannot write a {path.suffix} image; give a file ending in one of "
                    f"{', '.join('.' + f for f in formats)} (e.g. {path.with_suffix('.png')})")
    if path.is_dir():
        return f"{flag} {value}: is a folder; give a file name (e.g. {path / ('plot.png' if image else example)})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a", encoding="utf-8"):  # writable (written at the end of the work)
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        return f"{flag} {value}: cannot be written: {exc.strerror or exc}"
    return None


def folder_problem(flag: str, value: str | os.PathLike[str], *, keep: bool = True) -> str | None:
    """What is wrong with ``value`` as the folder of option ``flag`` (None: nothing): a file, or a folder that
    cannot be made or written in. A missing folder is made (``keep=False``: made to see that it can be, then
    removed again, for a command that makes it only once its input is checked)."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        return f"{flag} {value}: is a file; give a folder (it is made if missing)"
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{flag} {value}: cannot be written: {exc.strerror or exc}"
    try:
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{flag} {value}: cannot be written: the folder is not writable"
    finally:
        if not keep:
            for p in made:  # deepest first
                with contextlib.suppress(OSError):
                    p.rmdir()
    return None
