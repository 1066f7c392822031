"""Writes that fail for lack of disk space say so, name the place and the fix, and leave earlier work unchanged."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from tritonlab.errors import DiskFull

P = ParamSpec("P")
R = TypeVar("R")
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG, also inside the error list shutil.copytree raises."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list):
        return any(_names_no_space(str(why)) for *_, why in error.args[0])
    return isinstance(error, OSError) and (error.errno in NO_SPACE or _names_no_space(str(error)))


def _names_no_space(text: str) -> bool:
    return any(os.strerror(code) in text for code in NO_SPACE)


def disk_full(where: str | Path, what: str) -> DiskFull:
    where = Path(where)
    probe = next((p for p in (where, *where.parents) if p.exists()), Path("/"))
    free = "?"
    with contextlib.suppress(OSError):
        free = f"{shutil.disk_usage(probe).free / 2**20:.1f} MiB"
    return DiskFull(
        f"no space left on the disk that holds {where} ({free} free): could not write {what}. "
        "What was saved there before is unchanged.",
        fix=f"free some space on it (`df -h {probe}` shows how full it is, `du -sh {probe}/*` what takes the space), "
        "then run the same step again",
    )


@contextlib.contextmanager
def clear_when_full(where: str | Path, what: str) -> Iterator[None]:
    """Turn a disk-full OSError raised inside into a DiskFull naming ``where`` and ``what``."""
    try:
        yield
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(where, what) from None
        raise


def atomic_write_text(path: Path, text: str, what: str, tmp: Path | None = None) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a full disk or a crash
    never leaves half a file, and the temporary file is removed when the write fails."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with clear_when_full(path.parent, what):
            tmp.write_text(text)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def reports_disk_full(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function whose first argument is the folder it writes into: a full disk there is a DiskFull."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            where = args[0] if args else next(iter(kwargs.values()), ".")
            with clear_when_full(str(where), what):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
