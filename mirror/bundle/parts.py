"""A bundle on disk: one file, or the same bytes split into FILE.001, FILE.002, ...

`export --split-size` cuts the archive into parts that fit the media that carry it across
(`cat FILE.0* > FILE` joins them, as `split` would have). FILE.sha256 and FILE.sig cover
the joined bytes; FILE.parts.sha256 checks each part on its own, to find a damaged one.
Nothing joins the parts on disk: `JoinedFile` reads and seeks across them, so verify,
inspect and import take FILE whether it is whole or split.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mirror.errors import UsageError
from mirror.streams import atomic_file, fsync_dir, temp_beside

MIN_PART = 64 * 1024
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`4G`, `4GiB` (binary), `4GB` (decimal, as media are sold), `700M`, or plain bytes."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--split-size {text!r}: expected a size such as 700M, 4G or 4GB")
    number, unit, suffix = match.groups()
    base = 1000 if suffix.upper() == "B" and unit else 1024
    size = int(float(number) * base ** " KMGT".index(unit.upper() or " "))
    if size < MIN_PART:
        raise UsageError(f"--split-size {text!r}: parts must be at least {MIN_PART} bytes")
    return size


def part_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n:03d}")


def parts_of(path: Path) -> list[Path]:
    """FILE itself when it exists, else FILE.001, FILE.002, ... up to the first gap."""
    if path.is_file():
        return [path]
    out: list[Path] = []
    while part_path(path, len(out) + 1).is_file():
        out.append(part_path(path, len(out) + 1))
    return out


def exists(path: Path) -> bool:
    return bool(parts_of(path))


def total_size(path: Path) -> int:
    return sum(p.stat().st_size for p in parts_of(path))


def stamp(path: Path) -> tuple[int, ...]:
    """Device, inode, size, mtime and ctime of every part: any change to any part shows."""
    out: list[int] = []
    for p in parts_of(path):
        st = p.stat()
        out += [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return tuple(out)


def open_bundle(path: Path) -> BinaryIO:
    parts = parts_of(path)
    if not parts:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if parts == [path]:
        return path.open("rb")
    return JoinedFile(parts)  # type: ignore[return-value]


class JoinedFile(io.RawIOBase):
    """Several files read as one, seekable; one part open at a time."""

    def __init__(self, parts: list[Path]) -> None:
        super().__init__()
        self._parts = parts
        self._sizes = [p.stat().st_size for p in parts]
        self._pos = 0
        self._open: tuple[int, BinaryIO] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: sum(self._sizes)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill the buffer across part boundaries; short only at the end of the last part."""
        view, filled = memoryview(buffer), 0
        while filled < len(view):
            index, offset = self._locate(self._pos)
            if index is None:
                break
            fh = self._file(index)
            fh.seek(offset)
            want = min(len(view) - filled, self._sizes[index] - offset)
            got = int(fh.readinto(view[filled : filled + want]))  # type: ignore[attr-defined]
            if got <= 0:
                break  # a part shorter than when it was measured: a truncated bundle
            filled += got
            self._pos += got
        return filled

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None
        super().close()

    def _locate(self, pos: int) -> tuple[int | None, int]:
        for index, size in enumerate(self._sizes):
            if pos < size:
                return index, pos
            pos -= size
        return None, 0

    def _file(self, index: int) -> BinaryIO:
        if self._open is None or self._open[0] != index:
            if self._open is not None:
                self._open[1].close()
            self._open = (index, self._parts[index].open("rb"))
        return self._open[1]


class _SplitWriter:
    """Writes consecutive parts of at most `size` bytes as temp files, hashing each."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.temps: list[Path] = []
        self.hashes: list[str] = []
        self._fh: BinaryIO | None = None
        self._left = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._left == 0:
                self._roll()
            assert self._fh is not None
            chunk = view[: self._left]
            self._fh.write(chunk)
            self._hash.update(chunk)
            self._left -= len(chunk)
            view = view[len(chunk) :]
        return len(data)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def finish(self) -> None:
        self._close_part()

    def _roll(self) -> None:
        self._close_part()
        fd, name = temp_beside(self.path, ".part")
        self.temps.append(Path(name))
        self._fh = os.fdopen(fd, "wb")
        self._left = self.size
        self._hash = hashlib.sha256()

    def _close_part(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self.hashes.append(self._hash.hexdigest())


@contextmanager
def split_output(path: Path, size: int) -> Iterator[BinaryIO]:
    """Like streams.atomic_file, for parts: all appear at the end, or none do."""
    writer = _SplitWriter(path, size)
    try:
        yield writer  # type: ignore[misc]
        writer.finish()
        for n, temp in enumerate(writer.temps, 1):
            os.chmod(temp, 0o644)
            os.replace(temp, part_path(path, n))
    except BaseException:
        writer.finish()
        for temp in writer.temps:
            temp.unlink(missing_ok=True)
        raise
    _remove_stale(path, len(writer.temps))
    with atomic_file(path.with_name(path.name + ".parts.sha256")) as fh:
        for n, digest in enumerate(writer.hashes, 1):
            fh.write(f"{digest}  {part_path(path, n).name}\n".encode())
    fsync_dir(path.parent)


def _remove_stale(path: Path, count: int) -> None:
    """A whole FILE or parts left by an earlier export would be read as part of this one."""
    path.unlink(missing_ok=True)
    n = count + 1
    while part_path(path, n).is_file():
        part_path(path, n).unlink()
        n += 1
