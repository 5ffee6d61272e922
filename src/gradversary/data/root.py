"""Where datasets live, and the checks made before a file is read.

The data root is, in order: an explicit ``--data-root`` / ``data.root``, the environment
variable ``GRADVERSARY_DATA_ROOT``, then ``../shared/data`` (relative to the working
directory) when that folder exists.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import DataError

__all__ = ["ENV_VAR", "LazyRoot", "resolve_data_root", "require_file", "sha256sum"]

ENV_VAR = "GRADVERSARY_DATA_ROOT"
_DEFAULTS = (Path("..") / "shared" / "data",)
_verified: dict[tuple[str, int, int], str] = {}


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root to read from, or a DataError saying how to set one."""
    if root:
        p = Path(root).expanduser()
        if not p.is_dir():
            raise DataError(f"data root {str(p)!r} (from --data-root / data.root) is not a directory")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(f"data root {str(p)!r} (from ${ENV_VAR}) is not a directory")
        return p
    for cand in _DEFAULTS:
        if cand.is_dir():
            return cand
    raise DataError(
        f"no data root found: pass --data-root DIR, set ${ENV_VAR}, or run from a folder "
        f"beside ../shared/data"
    )


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_file(root: Path, relpath: str, sha256: str | None, source: str) -> Path:
    """Return ``root / relpath`` after checking it exists and (once per process) its checksum.

    Args:
        root: data root.
        relpath: file path inside the root.
        sha256: expected hex digest, or ``None`` to skip the check.
        source: where the file can be obtained, quoted in the error.

    Raises:
        DataError: naming the file, its expected checksum and its source.
    """
    path = Path(root) / relpath
    want = f" (expected sha256 {sha256})" if sha256 else ""
    if not path.is_file():
        raise DataError(f"missing data file {str(path)!r}{want}; obtain it from {source}")
    if sha256:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        got = _verified.get(key) or sha256sum(path)
        if got != sha256:
            raise DataError(
                f"corrupt data file {str(path)!r}: sha256 {got} but expected {sha256}; "
                f"obtain a fresh copy from {source}"
            )
        _verified[key] = got
    return path


class LazyRoot:
    """Resolves the data root on first use, so embedded datasets need none."""

    def __init__(self, explicit: str | None):
        self.explicit = explicit
        self._path: Path | None = None

    def __fspath__(self) -> str:
        if self._path is None:
            self._path = resolve_data_root(self.explicit)
        return str(self._path)

    def __truediv__(self, other: str) -> Path:
        return Path(self.__fspath__()) / other
