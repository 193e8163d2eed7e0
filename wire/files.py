"""One way to write a file that holds a key, a keyring or an enrollment: mode 0600 from
the first byte, fsynced, then renamed over the old one, so a reader sees the old file or
the new one and never half of either. Each write has a temp file of its own (mkstemp,
O_EXCL), so two writers at once cannot trip over each other; the last rename wins."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
