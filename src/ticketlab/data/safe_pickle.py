"""A pickle loader for CIFAR's python batches that cannot run code.

Unpickling calls whatever global a file names, so an unrestricted pickle.load
on a downloaded file is arbitrary code execution. CIFAR batches only need
plain containers plus the three numpy globals that rebuild an ndarray; every
other global is refused before it is ever resolved.
"""

import io
import pickle
from pathlib import Path

import numpy as np

from ticketlab.data.rawfile import read_file_bytes
from ticketlab.errors import TicketlabError

# numpy's array rebuilder, found from a live array so it works on numpy 1 and 2 alike.
_RECONSTRUCT = np.empty(0).__reduce__()[0]

# Exactly the globals that a pickled ndarray references (numpy 1 and numpy 2 module names).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the ndarray-rebuilding globals and refuses everything else."""

    def __init__(self, file, path: Path):
        # encoding="bytes": CIFAR was pickled by Python 2, whose str must stay bytes for numpy.
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise TicketlabError(
                f"{self.path}: refusing to unpickle global {module}.{name}; "
                "a CIFAR batch never contains it, so replace the file with a fresh download"
            )
        return allowed

    def persistent_load(self, pid):
        raise TicketlabError(
            f"{self.path}: refusing a persistent id in a pickle; replace the file with a fresh download"
        )


def load_restricted_pickle(path: Path):
    """Unpickle a file allowing only plain containers and numpy arrays; any failure names the file."""
    content = read_file_bytes(path)
    try:
        return NumpyOnlyUnpickler(io.BytesIO(content), path).load()
    except TicketlabError:
        raise
    except Exception as exc:  # any parse failure of an untrusted file is a bad file, not a bug
        raise TicketlabError(
            f"{path} is not a readable pickle ({type(exc).__name__}: {exc}); replace it with a fresh download"
        ) from None
