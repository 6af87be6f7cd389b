"""Readers that make "the writer verifies" cheap: bytes are checked while they flow."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from mirror.errors import IntegrityError, OperationError, UsageError
from mirror.formats import jsondoc
from mirror.oci.descriptor import Descriptor
from mirror.units import ascii_int, human

COPY_CHUNK = 1024 * 1024


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class VerifyingReader:
    """Pass bytes through while hashing; fail on overrun, short read, or wrong digest."""

    def __init__(self, raw: Readable, desc: Descriptor, where: str) -> None:
        self._raw = raw
        self._desc = desc
        self._where = where
        self._hash = hashlib.sha256()
        self._seen = 0
        self._done = False

    @property
    def proves(self) -> str:
        """The digest this stream proves by its end (it raises instead of ending otherwise)."""
        return self._desc.digest

    def __len__(self) -> int:
        return self._desc.size - self._seen

    def read(self, n: int = -1, /) -> bytes:
        if self._done:
            return b""
        want = self._desc.size - self._seen
        if n is None or n < 0 or n > want:
            n = want
        # Ask for one byte more than we expect at the end so an overlong source is caught.
        chunk = self._raw.read(n if n else 1)
        if not chunk:
            self._finish()
            return b""
        self._seen += len(chunk)
        if self._seen > self._desc.size:
            raise IntegrityError(f"{self._where}: more than the declared {self._desc.size} bytes")
        self._hash.update(chunk)
        if self._seen == self._desc.size:
            self._finish()
        return chunk

    def _finish(self) -> None:
        self._done = True
        if self._seen != self._desc.size:
            raise IntegrityError(
                f"{self._where}: got {self._seen} of {self._desc.size} bytes (truncated)"
            )
        if "sha256:" + self._hash.hexdigest() != self._desc.digest:
            raise IntegrityError(
                f"{self._where}: content does not match digest {self._desc.digest}"
            )
        extra = self._raw.read(1)
        if extra:
            raise IntegrityError(f"{self._where}: more than the declared {self._desc.size} bytes")


def verified(stream: Readable, desc: Descriptor, where: str) -> Readable:
    """`stream` checked against `desc`, hashed once: a stream that already proves `desc`
    (a registry download, a wrapper that forwards `proves`) is not hashed a second time."""
    if getattr(stream, "proves", None) == desc.digest:
        return stream
    return VerifyingReader(stream, desc, where)


class LimitedReader:
    """Exactly `size` bytes of a stream, with a length so HTTP sends Content-Length."""

    def __init__(self, raw: Readable, size: int) -> None:
        self._raw = raw
        self._left = size

    def __len__(self) -> int:
        return self._left

    def read(self, n: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        if n is None or n < 0 or n > self._left:
            n = self._left
        chunk = self._raw.read(min(n, COPY_CHUNK * 4))
        self._left -= len(chunk)
        return chunk


def drain(reader: Readable, sink: IO[bytes] | None = None, on_bytes: object = None) -> int:
    """Read to the end (into `sink` if given); returns the byte count."""
    total = 0
    while True:
        chunk = reader.read(COPY_CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if sink is not None:
            sink.write(chunk)
        if callable(on_bytes):
            on_bytes(len(chunk))


def refuse_special(path: Path) -> None:
    """A file mirror replaces must be a file (or a link, which is replaced, not followed):
    renaming over `/dev/null`, a FIFO or a socket would put our bytes where a device was."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a directory; give a file name")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise UsageError(f"{path}: not a regular file (a device, FIFO or socket); not replaced")


def check_writable(path: Path, *, folder: bool = False, probe: bool = True) -> None:
    """Whether `path` (a file, or with `folder` a folder mirror fills) can be written once
    the work is done, asked before the work: an import whose --receipt was /dev/null or
    under a regular file pushed and tagged everything, then failed. `probe` makes and
    removes a temp file where the first write will go (a read-only or /proc folder
    answers only that); a dry run checks the shapes alone, writing nothing."""
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{path}: not a folder")
    if not folder:
        refuse_special(path)
    base = path if folder else path.parent
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{base}: not a folder, so {path} cannot be written")
    if not probe:
        return
    try:
        fd, name = tempfile.mkstemp(dir=base, prefix=".mirror-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OperationError(f"{path}: cannot write in {base}: {exc.strerror or exc}") from None


@contextmanager
def atomic_file(path: Path, mode: int = 0o644, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """Write to a temp name beside `path`, fsync, rename; remove the temp on any failure.

    Readers see the old file or the new one, never half; the folder is fsynced too, so
    the rename survives a crash. Every atomic write in mirror goes through here: a set of
    one `Staged` file. A cache, whose entries are re-verified on use, passes
    `durable=False` and skips both fsyncs.
    """
    with Staged(durable=durable).publishing() as staged, staged.file(path, mode) as fh:
        yield fh


class Staged:
    """Files that must change together (a bundle and its FILE.sha256 and FILE.sig, or its
    parts): each written whole under a temp name, then all renamed into place in one
    uninterrupted step, `publish()`. Until then the old set stands untouched; a failure or
    an interruption before it leaves the old set and no temp (`discard()`).

    One atomic_file per file renamed each as soon as it was written: a stop between them
    left a new FILE beside the old FILE.sha256 and FILE.sig, which then failed to verify.
    """

    def __init__(self, *, durable: bool = True) -> None:
        self._durable = durable  # fsync each file and, after the renames, each folder
        self._moves: list[tuple[Path, Path, int]] = []  # temp, final path, mode
        self._gone: list[Path] = []  # removed when the set is published (stale sidecars)

    @contextmanager
    def file(self, path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
        """Write `path`'s new content; it replaces `path` at `publish()`."""
        refuse_special(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = temp_beside(path, ".tmp")
        self.add(Path(name), path, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if self._durable:
                os.fsync(fh.fileno())

    def add(self, temp: Path, path: Path, mode: int = 0o644) -> None:
        """A temp file written elsewhere (a part of a split bundle) that becomes `path`."""
        self._moves.append((temp, path, mode))

    def remove(self, path: Path) -> None:
        """`path` goes when the set is published: it would belong to the old set."""
        self._gone.append(path)

    def publish(self, *, lock: bool = False) -> None:
        """Rename every file into place and remove what the old set had more, as one step:
        signals wait for it. With `lock`, so do other runs publishing into the same folders
        (each folder flock'ed: two exports to one FILE never leave a mixed set); not where
        the caller may hold a folder's lock already (an import's records), since a second
        flock of it would wait on the first."""
        one = len(self._moves) + len(self._gone) == 1  # one rename: atomic as it is
        for _, path, _ in () if one else self._moves:  # file() checked; again before the
            refuse_special(path)  # first of several renames: all or none
        folders = {path.parent for _, path, _ in self._moves} | {p.parent for p in self._gone}
        with contextlib.ExitStack() as held, contextlib.nullcontext() if one else uninterrupted():
            for folder in sorted(folders) if lock else ():
                held.enter_context(locked_folder(folder))
            for temp, path, mode in self._moves:
                os.chmod(temp, mode)
                os.replace(temp, path)
            for path in self._gone:
                path.unlink(missing_ok=True)
        for folder in folders if self._durable else ():
            fsync_dir(folder)
        self._moves = []

    def discard(self) -> None:
        """Remove every temp not published (after a failure; a no-op after publish)."""
        for temp, _, _ in self._moves:
            temp.unlink(missing_ok=True)
        self._moves = []

    @contextmanager
    def publishing(self, *, lock: bool = False) -> Iterator[Staged]:
        """Stage inside the block; published at its end (see `publish`), discarded if it
        raises."""
        try:
            yield self
            self.publish(lock=lock)
        finally:
            self.discard()


@contextmanager
def locked_folder(folder: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock on the folder itself, for a short read-modify-write or a set of
    renames in it: other mirror processes doing the same wait; nothing is written for it.
    With `wait=False`, yields False at once when another holds it (a long run that must
    not overlap another, as two exports of one chain)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


FINISHED_FIRST = "what was being written was finished first"  # an interrupt held to the end


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the block to end, then stop the run as they would have:
    a few renames or records that must land together are one step to whoever stops us.

    Python runs signal handlers on the main thread only, so elsewhere this holds nothing
    (mirror commits on the main thread). SIGKILL and power loss still can cut in; the
    block is kept to renames and small writes so that window is narrow.
    """
    outer = getattr(signal.getsignal(signal.SIGINT), "holds_signals", False)
    if outer or threading.current_thread() is not threading.main_thread():
        yield  # nested: the outermost block raises once it ends
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    hold.holds_signals = True  # type: ignore[attr-defined]
    before = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if caught:
        raise KeyboardInterrupt(FINISHED_FIRST)


TEMP_MARK = ".mirror-"  # .NAME.mirror-PID-RANDOM.tmp: the rule sweep_stale goes by


def temp_beside(path: Path, suffix: str) -> tuple[int, str]:
    """A temp file beside `path`, named with this process's id so a later run can tell a
    killed writer's leftovers (its process is gone) from a live writer's, and locked
    (flock) while its descriptor is open: a writer in another PID namespace (two containers
    sharing a cache) has an id that means nothing here, but its lock still shows."""
    prefix = f".{path.name}{TEMP_MARK}{os.getpid()}-"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    with contextlib.suppress(OSError):  # a filesystem without locks: the id rule alone
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, name


def sweep_stale(folder: Path, name: str | None = None) -> int:
    """Remove temp files that killed mirror processes left in `folder` (only those of
    `name` when given); bytes freed. Nothing that does not match the rule is touched."""
    freed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    head = f".{name}" if name is not None else None  # FILE's, and FILE.sig's, .sha256's...
    for entry in entries:
        pid = _writer_pid(entry.name, head)
        if pid is None or _alive(pid):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and _abandoned(entry.path):
                os.unlink(entry.path)
                freed += st.st_size
        except OSError:
            continue
    return freed


def _abandoned(path: str) -> bool:
    """No writer holds its lock: a writer of another PID namespace (whose id means nothing
    here) holds it while it writes the file. Once closed, a staged file waits for its set's
    rename unlocked; only two runs writing the same output from two namespaces meet there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: a live writer, wherever its process is
    finally:
        os.close(fd)
    return True


def sweep_for(*files: Path | None) -> int:
    """Before a run writes FILES: what killed mirror runs left in their folders, found by
    the naming rule alone (sweep_stale); bytes freed."""
    return sum(sweep_stale(folder) for folder in {f.parent for f in files if f is not None})


def _writer_pid(filename: str, head: str | None) -> int | None:
    if not filename.startswith(".") or not filename.endswith((".tmp", ".part")):
        return None
    if head is not None and not filename.startswith(head):
        return None
    _, mark, rest = filename.rpartition(TEMP_MARK)
    pid, dash, _ = rest.partition("-")
    return ascii_int(pid) if mark and dash else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def read_small_file(path: Path, cap: int, *, found: bool = False) -> bytes | None:
    """A file read whole, at most one byte past `cap` (so a caller can tell one too large,
    a pipe or a growing file included); None when there is none. Other OSErrors are left
    to the caller, which names the file in its own words.

    `found`: a file nobody named, found beside another (FILE.sig, FILE.sha256,
    FILE.parts.sha256), must be a regular file, opened without waiting: a FIFO there
    blocked verify in open() for good. A file the user names may be a pipe (`<(...)`)."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_NONBLOCK if found else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if found and not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read(cap + 1)


def read_capped(path: Path, cap: int) -> bytes:
    """A file read whole, refused past `cap` bytes: a pipe or /dev/zero is read only that
    far. Missing is FileNotFoundError, as for open(); too large is a ValueError ("larger
    than ..."), for the caller to word beside its other reasons."""
    data = read_small_file(path, cap)
    if data is None:
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if len(data) > cap:
        raise ValueError(f"larger than {human(cap)}")
    return data


HINT_CAP = 64 << 20  # a hint file (tags.json at 100,000 tags is ~21 MB)


def read_hint(path: Path) -> Any:
    """A JSON file kept only as a hint (a memo, a cache index); unreadable means None."""
    try:
        return jsondoc.loads(read_capped(path, HINT_CAP))
    except (OSError, ValueError):
        return None


def write_hint(path: Path, doc: Any) -> None:
    """Replace a hint file atomically, private to the user; failing only costs the work the
    hint would have saved next time, so it is not an error, and it is not fsynced."""
    try:
        with atomic_file(path, 0o600, durable=False) as fh:
            fh.write(json.dumps(doc, indent=1).encode())
    except (OSError, UsageError):  # a folder or a FIFO where the hint goes: no hint
        pass


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def free_bytes(path: Path) -> int:
    probe = path if path.exists() else path.parent
    return shutil.disk_usage(probe).free
