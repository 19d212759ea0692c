"""Files other processes read while we rewrite them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` so a reader in another process sees the old content or the new, never a partial file.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "state.json"
    >>> write_atomically(target, "{}\\n", mode=0o600)
    >>> target.read_text(), oct(target.stat().st_mode & 0o777)
    ('{}\\n', '0o600')
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    if mode is not None:
        os.chmod(tmp, mode)
    tmp.replace(path)
