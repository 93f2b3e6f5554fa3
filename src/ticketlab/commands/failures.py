"""One line for each failure a user can act on: bad input, the file system refusing, memory running out."""

from __future__ import annotations

import errno

from ticketlab.errors import TicketlabError

OS_HINTS = {errno.ENOSPC: "the disk is full; free some space or write elsewhere",
            errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
            errno.EACCES: "permission denied; check the permissions or write elsewhere",
            errno.EPERM: "operation not permitted; check the permissions or write elsewhere",
            errno.EROFS: "the file system is read-only; write elsewhere",
            errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
            errno.EISDIR: "it is a folder; give a file",
            errno.ENOENT: "no such file or folder; check the path",
            errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
            errno.EEXIST: "it already exists; choose another path"}
OUT_OF_MEMORY = "out of memory; use smaller sizes (model, batch size, data subset) or a machine with more memory"
# What torch's allocators (CPU and CUDA) say in the RuntimeError they raise when memory runs out.
ALLOCATOR_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "Cannot allocate memory")


def one_line(message: str) -> str:
    return " ".join(message.split())


def describe_os_error(exc: OSError, where: str | None = None) -> str:
    """'<path>: <reason>; <what to do>' in one line. A failed write on an open file names no path: then
    `where` (the runs directory or output the command writes to) is named."""
    path = exc.filename if exc.filename is not None else (f"a file under {where}" if where else "a file")
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = OS_HINTS.get(exc.errno)
    return one_line(f"cannot use {path}: {reason}" + (f" ({hint})" if hint else ""))


def describe(exc: BaseException, where: str | None = None) -> str | None:
    """The one-line message of a failure the user can fix, or None for anything else (a bug: let it raise)."""
    if isinstance(exc, TicketlabError):
        return one_line(str(exc))
    if isinstance(exc, OSError):
        return describe_os_error(exc, where)
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(exc, RuntimeError) and any(text in str(exc) for text in ALLOCATOR_OUT_OF_MEMORY):
        return f"{OUT_OF_MEMORY} ({one_line(str(exc))[:200]})"
    return None
