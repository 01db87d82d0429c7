"""Where memlab finds its settings: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

#: Default memory folder, relative to the working directory.
DEFAULT_MEMORY_PATH = Path("data") / "mem_knowledge"

MEMORY_PATH_ENV = "MEM_MEMORY_PATH"
ENCRYPTION_KEY_ENV = "MEM_ENCRYPTION_KEY"


def memory_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the memory folder: ``path`` if given, else ``$MEM_MEMORY_PATH``, else
    ``data/mem_knowledge/``.

    >>> memory_path("/tmp/mem")
    PosixPath('/tmp/mem')
    """
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(MEMORY_PATH_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return DEFAULT_MEMORY_PATH
