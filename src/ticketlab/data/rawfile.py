"""Reading a dataset file's bytes: gunzip when it is gzipped, and name the file in every error.

Whether a file is compressed is decided by its first bytes, not its name, so
`x`, `x.gz` and a mislabelled copy all read the same.
"""

import gzip
import zlib
from pathlib import Path

from ticketlab.errors import TicketlabError

GZIP_MAGIC = b"\x1f\x8b"


def read_file_bytes(path: Path) -> bytes:
    """The file's content, transparently gunzipped when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TicketlabError(f"cannot read {path}: {exc.strerror or exc}; check the file and its permissions") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise TicketlabError(
            f"{path} is a damaged gzip file ({exc}); download it again or replace it with the uncompressed file"
        ) from None
