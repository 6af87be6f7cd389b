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

from mirror.bundle.toc import FOOTER_TAG
from mirror.errors import IntegrityError, UsageError, VerificationError
from mirror.streams import Staged, read_small_file, refuse_special, temp_beside

MIN_PART = 64 * 1024
SUMS = ".parts.sha256"
MAX_SUMS = 4 * 1024 * 1024  # 50,000 parts; anything larger is not ours
_SUM_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>[^/\\]+)")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*$", re.IGNORECASE | re.ASCII)
MAX_SIZE = 1 << 62  # bytes; past any disk, and still an int every OS call takes


def parse_size(text: str, option: str = "--split-size", minimum: int = MIN_PART) -> int:
    """`4G`, `4GiB` (binary), `4GB` (decimal, as media are sold), `700M`, or plain bytes."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"{option} {text!r}: expected a size such as 700M, 4G or 4GB")
    number, unit, suffix = match.groups()
    base = 1000 if suffix.upper() == "B" and unit else 1024
    value = float(number) * base ** " KMGT".index(unit.upper() or " ")
    if not value < MAX_SIZE:  # 400 nines is float infinity
        raise UsageError(f"{option} {text!r}: larger than any disk")
    size = int(value)
    if size < minimum:
        raise UsageError(f"{option} {text!r}: parts must be at least {minimum} bytes")
    return size


SHA256_SIDECAR, SIG_SIDECAR = ".sha256", ".sig"  # FILE.sha256 and FILE.sig (signing.py)


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def part_path(path: Path, n: int) -> Path:
    return path.with_name(part_name(path, n))


def part_name(path: Path, n: int) -> str:
    return f"{path.name}.{n:03d}"


def parts_of(path: Path) -> list[Path]:
    """FILE itself when it exists, else FILE.001, FILE.002, ... up to the first gap."""
    if path.is_file():
        return [path]
    out: list[Path] = []
    while part_path(path, len(out) + 1).is_file():
        out.append(part_path(path, len(out) + 1))
    return out


def whole_of(path: Path) -> Path | None:
    """FILE when `path` is FILE.NNN, one of FILE's parts, and FILE itself is not there."""
    stem, dot, number = path.name.rpartition(".")
    if not dot or len(number) != 3 or not number.isdigit() or not stem:
        return None
    whole = path.with_name(stem)
    return whole if not whole.is_file() and path.is_file() else None


def sums_path(path: Path) -> Path:
    return path.with_name(path.name + SUMS)


def exists(path: Path) -> bool:
    """FILE, or any part of it: a set with its first part missing is refused by name later."""
    return path.is_file() or bool(_numbered(path))


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
    """FILE, or its parts read as one; a missing, stray or damaged part is named."""
    if path.is_file():
        return path.open("rb")
    parts, sums = checked_parts(path)
    return JoinedFile(parts, sums, sums_path(path).name)  # type: ignore[return-value]


def checked_parts(path: Path) -> tuple[list[Path], list[str] | None]:
    """The parts to read and, from FILE.parts.sha256 when present, each one's sha256.

    A gap would otherwise be read as the end of the bundle ("archive is truncated"), so
    the one line names the part to copy again instead.
    """
    found = _numbered(path)
    if not found:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    listed = read_sums(path)
    if listed is None:
        return _without_sums(path, found), None
    for n in range(1, len(listed) + 1):
        if n not in found:
            raise VerificationError(
                f"{part_path(path, n)}: missing; {sums_path(path).name} lists {len(listed)} parts"
            )
    if len(found) > len(listed):
        stray = found[min(set(found) - set(range(1, len(listed) + 1)))]
        raise VerificationError(
            f"{stray}: not listed in {sums_path(path).name}, which lists {len(listed)} parts"
        )
    return [found[n] for n in range(1, len(listed) + 1)], listed


def read_sums(path: Path) -> list[str] | None:
    """FILE.parts.sha256 (sha256sum's format, parts in order), or None when absent."""
    sums = sums_path(path)
    try:
        data = read_small_file(sums, MAX_SUMS, found=True)
    except OSError as exc:
        raise VerificationError(f"{sums}: not a list of parts ({exc.strerror or exc})") from None
    if data is None:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    if len(data) > MAX_SUMS or not lines:
        raise VerificationError(f"{sums}: not a list of parts")
    out = []
    for n, line in enumerate(lines, 1):
        match = _SUM_LINE.fullmatch(line)
        if match is None or match["name"] != part_name(path, n):
            raise VerificationError(f"{sums}: line {n}: expected '<sha256>  {part_name(path, n)}'")
        out.append(match["digest"].lower())
    return out


def _numbered(path: Path) -> dict[int, Path]:
    """Every FILE.NNN beside FILE, by number (names as part_path spells them)."""
    prefix = path.name + "."
    out: dict[int, Path] = {}
    try:
        with os.scandir(path.parent) as entries:  # file types without a stat per entry
            for entry in entries:
                suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
                n = int(suffix) if suffix.isdecimal() and suffix.isascii() else 0
                if n > 0 and part_name(path, n) == entry.name and entry.is_file():
                    out[n] = path.parent / entry.name
    except OSError:
        return {}
    return out


def _without_sums(path: Path, found: dict[int, Path]) -> list[Path]:
    """Without FILE.parts.sha256: a gap is named, and so is a set that stops short."""
    last = max(found)
    for n in range(1, last):
        if n not in found:
            after = found[min(k for k in found if k > n)]
            raise VerificationError(f"{part_path(path, n)}: missing; {after.name} follows it")
    parts = [found[n] for n in range(1, last + 1)]
    _check_end(path, parts)
    return parts


def _check_end(path: Path, parts: list[Path]) -> None:
    """Every bundle ends with its table of contents' footer; parts without it stop short."""
    with JoinedFile(parts) as joined:
        joined.seek(-len(FOOTER_TAG), os.SEEK_END)
        if joined.read() == FOOTER_TAG:
            return
    sizes = [p.stat().st_size for p in parts]
    if len(parts) == 1 or sizes[-1] == sizes[0]:  # a full last part: the next one is missing
        raise VerificationError(
            f"{part_path(path, len(parts) + 1)}: missing; the parts end at {parts[-1].name}, "
            "before the bundle does"
        )
    raise VerificationError(f"{parts[-1]}: cut short or damaged: the bundle does not end in it")


class JoinedFile(io.RawIOBase):
    """Several files read as one, seekable; one part open at a time.

    Given the parts' sha256 sums, a read from the start straight through (verify's pass)
    checks each part as it ends, so a damaged part is named, not just the bundle; the
    failure then repeats on every read, so it is the one reported. Random access (import's
    member reads) hashes nothing.
    """

    def __init__(
        self, parts: list[Path], sums: list[str] | None = None, sums_name: str = ""
    ) -> None:
        super().__init__()
        self._parts = parts
        self._sizes = [p.stat().st_size for p in parts]
        self._pos = 0
        self._open: tuple[int, BinaryIO] | None = None
        self._sums = sums
        self._sums_name = sums_name
        self._hashed = 0  # bytes hashed from the start, in order
        self._hash = hashlib.sha256()
        self._failure: IntegrityError | None = None

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
        if self._failure is not None:
            raise self._failure
        if self._pos != self._hashed:
            self._sums = None  # not a pass from the start: nothing to check
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
            self._check(index, offset + got, view[filled : filled + got])
            filled += got
            self._pos += got
        return filled

    def _check(self, index: int, end: int, chunk: memoryview) -> None:
        """Hash a chunk of part `index` ending at `end`; at the part's end, compare."""
        if self._sums is None:
            return
        self._hash.update(chunk)
        self._hashed += len(chunk)
        if end < self._sizes[index]:
            return
        if self._hash.hexdigest() != self._sums[index]:
            self._failure = IntegrityError(
                f"{self._parts[index]}: does not match {self._sums_name}; copy that part again"
            )
            raise self._failure
        self._hash = hashlib.sha256()

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
def split_output(path: Path, size: int, staged: Staged) -> Iterator[BinaryIO]:
    """Like Staged.file, for parts: the parts, the list of their sums and the removal of
    what the old set had more (a whole FILE, parts past the new count) publish together."""
    refuse_special(part_path(path, 1))
    writer = _SplitWriter(path, size)
    try:
        yield writer  # type: ignore[misc]
    finally:
        writer.finish()
        for n, temp in enumerate(writer.temps, 1):  # a failure: the caller discards them
            staged.add(temp, part_path(path, n))
    with staged.file(sums_path(path)) as fh:
        for n, digest in enumerate(writer.hashes, 1):
            fh.write(f"{digest}  {part_path(path, n).name}\n".encode())
    staged.remove(path)  # a whole FILE or parts left by an earlier export would be read
    n = len(writer.temps) + 1  # as part of this one
    while part_path(path, n).is_file():
        staged.remove(part_path(path, n))
        n += 1
