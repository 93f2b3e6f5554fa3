"""Where ticketlab keeps what it derives and can always derive again (prepared datasets, the command line's
help): $TICKETLAB_CACHE_DIR, else $XDG_CACHE_HOME/ticketlab, else ~/.cache/ticketlab. Nothing here
imports torch, so the command line can read it before loading anything heavy."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TICKETLAB_CACHE_DIR"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ticketlab"
