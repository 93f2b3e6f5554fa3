"""Where dataset files live: the data root, and finding files in the layouts other tools use.

The root comes from the caller (`--data-root`), else $TICKETLAB_DATA_ROOT, else
./data. Each format reader lists the folders worth trying under that root (the
names torchvision, Keras, the original archives and Debian packages use) so
existing downloads are found instead of fetched again.
"""

import os
from collections.abc import Sequence
from pathlib import Path

DATA_ROOT_ENV = "TICKETLAB_DATA_ROOT"
DEFAULT_DATA_ROOT = "data"
WHERE_TO_SET_ROOT = f"set the folder with --data-root or {DATA_ROOT_ENV}"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """The data root to search: the argument, else $TICKETLAB_DATA_ROOT, else ./data."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    from_env = os.environ.get(DATA_ROOT_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return Path(DEFAULT_DATA_ROOT)


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of `names` (each also tried with .gz appended) that exists in `folder`.

    Plain files come before gzipped ones because they are faster to read.
    """
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def find_all(folder: Path, wanted: dict[str, Sequence[str]]) -> tuple[dict[str, Path], list[str]]:
    """Look for every wanted file in `folder`: (found role -> path, roles not found)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, names in wanted.items():
        path = find_file(folder, names)
        if path is None:
            missing.append(role)
        else:
            found[role] = path
    return found, missing


def format_folders(folders: Sequence[Path]) -> str:
    """Folders as one comma-separated list for an error message."""
    return ", ".join(str(folder) for folder in folders)
