"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or plain.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values. We only
need unsigned bytes: 0x00000803 for image stacks (N, rows, cols) and
0x00000801 for label vectors (N,). Every structural problem becomes a
TicketlabError naming the file, because a bad download is a user-fixable problem.
"""

from pathlib import Path

import numpy as np

from ticketlab.data.rawfile import read_file_bytes
from ticketlab.errors import TicketlabError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def parse_idx(content: bytes, expected_magic: int, path: Path) -> np.ndarray:
    """Decode IDX bytes into a read-only uint8 array, checking header and size exactly."""
    if len(content) < 4:
        raise TicketlabError(f"{path} is too short to be an IDX file ({len(content)} bytes); download it again")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise TicketlabError(
            f"{path} has IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}; "
            "it is not the right file (images vs labels?) or is damaged"
        )
    num_dims = magic & 0xFF
    header_size = 4 + 4 * num_dims
    if len(content) < header_size:
        raise TicketlabError(f"{path} is truncated inside its IDX header; download it again")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims))
    expected_size = header_size + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected_size:
        problem = "truncated" if len(content) < expected_size else "longer than its header says"
        raise TicketlabError(
            f"{path} is {problem}: header {dims} needs {expected_size} bytes but it has {len(content)}; "
            "download it again"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image stack as a uint8 array of shape (N, rows, cols)."""
    return parse_idx(read_file_bytes(path), IMAGES_MAGIC, path)


def read_idx_labels(path: Path) -> np.ndarray:
    """An IDX label vector as a uint8 array of shape (N,)."""
    return parse_idx(read_file_bytes(path), LABELS_MAGIC, path)
