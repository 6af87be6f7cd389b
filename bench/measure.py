"""Measuring child processes: wall time, peak RSS and the disk they add while they run.

Peak RSS comes from GNU time (`%M`), which forks the command itself. A child of this
process would not do: Linux carries the parent's high-water RSS into a child's ru_maxrss
through fork (and vfork) and exec, so once the bench had held 227 MB, every later child
reported at least 227 MB. GNU time is small, so what its child inherits is not the figure.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_EVERY = 0.05


class BenchError(RuntimeError):
    """A measured command failed: the benchmark stops rather than report a wrong figure."""


@dataclass(frozen=True)
class Measured:
    seconds: float
    rss_kb: int  # peak resident set size of the process tree
    runs: int = 1  # how many processes the figure covers (a skopeo loop is many)
    cpu: float = 0.0  # user + system seconds of the command and its children (GNU time)

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Path | None = None,
    watch: DiskWatch | None = None,
    settle: bool = True,
) -> Measured:
    """Run one command to completion; stdout goes to a file so no pipe can stall it.

    `settle` first flushes what earlier runs left dirty in the page cache: otherwise the
    kernel writes it back (about 30 s later) during whichever run happens to be next.
    """
    if settle:
        os.sync()
    with tempfile.TemporaryFile() as err, contextlib.ExitStack() as stack:
        out = stack.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        rss = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "rss"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [gnu_time(), "-f", "%M %U %S", "-o", str(rss), *cmd],
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
        )
        if watch is not None:
            watch.start(child_of(proc.pid))
        try:
            returncode = proc.wait()
        finally:
            if watch is not None:
                watch.stop()
        seconds = time.perf_counter() - start
        if returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"{' '.join(cmd)} exited {returncode}: {' | '.join(tail)}")
        peak, user, system = rss.read_text().split()[-3:]
        return Measured(seconds, int(peak), cpu=float(user) + float(system))


def gnu_time() -> str:
    found = shutil.which("time", path="/usr/bin:/bin")
    if found is None:
        raise BenchError("the bench needs GNU time (Debian: apt-get install time; make bench does)")
    return found


def child_of(pid: int, wait: float = 2.0) -> int:
    """The command GNU time started (its only child), so /proc/PID/io is the command's."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            kids = path.read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.001)
    return pid


def median_of(runs: Sequence[Measured]) -> Measured:
    """Repeats of one run: the median time and CPU, the worst peak RSS."""
    times = median([m.seconds for m in runs])
    return Measured(times, max(m.rss_kb for m in runs), runs[0].runs, median([m.cpu for m in runs]))


def median(values: Sequence[float]) -> float:
    ordered, mid = sorted(values), len(values) // 2
    return ordered[mid] if len(values) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_all(cmds: Sequence[Sequence[str]], *, env: dict[str, str] | None = None) -> Measured:
    """A shell-loop baseline: one process per command, timed as a whole, the peak RSS of any."""
    os.sync()
    start = time.perf_counter()
    peak, cpu = 0, 0.0
    for cmd in cmds:
        m = run_measured(cmd, env=env, settle=False)
        peak, cpu = max(peak, m.rss_kb), cpu + m.cpu
    return Measured(time.perf_counter() - start, peak, runs=len(cmds), cpu=cpu)


def process_cpu(pid: int) -> float:
    """User + system seconds a running process has used so far (/proc/PID/stat): the
    registry's share of a run, which GNU time cannot see."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_bytes(paths: Sequence[Path]) -> int:
    """Allocated bytes under `paths` (what `du` would say); vanishing files are skipped."""
    total = 0
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class DiskWatch:
    """Samples the disk a process can use for scratch, and what it wrote, while it runs.

    `dirs` are the places the process may write besides its target (TMPDIR, caches, the
    bundle's folder); `write_bytes` from /proc/PID/io counts every byte it dirtied anywhere.
    Free space of the filesystem would also see the registry's own writes and other users.
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)
        self.baseline = 0
        self.peak_extra = 0
        self.write_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        self.baseline = tree_bytes(self.dirs)
        self._thread = threading.Thread(target=self._loop, args=(pid,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self, pid: int) -> None:
        while not self._stop.is_set():
            self._sample(pid)
            self._stop.wait(SAMPLE_EVERY)
        self._sample(pid)

    def _sample(self, pid: int) -> None:
        self.samples += 1
        self.peak_extra = max(self.peak_extra, tree_bytes(self.dirs) - self.baseline)
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{pid}/io").read_text()
            found = re.search(r"^write_bytes:\s*(\d+)", text, re.M)
            if found:
                self.write_bytes = max(self.write_bytes, int(found.group(1)))


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t: ...` then t[0] is the elapsed seconds (in-process work)."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def _first_line(cmd: Sequence[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def _disk(path: Path) -> str:
    """Device, filesystem, size and whether it spins, for the folder the benchmark used."""
    found = _df(path, "source,fstype,size")
    if found is None or len(found) != 3:
        return "unknown"
    source, fstype, size = found
    kind = ""
    block = _block(source)
    if block is not None:
        flag = block / "queue/rotational"
        if flag.is_file():
            kind = ", rotational" if flag.read_text().strip() == "1" else ", non-rotational"
    return f"{source} ({fstype}, {size}{kind})"


def _df(path: Path, fields: str) -> list[str] | None:
    """`df -h --output=FIELDS` of the filesystem holding `path`; None where df cannot say."""
    try:
        done = subprocess.run(
            ["df", "-h", f"--output={fields}", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()[1].split()
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _block(source: str) -> Path | None:
    """/sys/class/block/DEV for a device df names (a /dev/mapper link: the dm-N it points
    to), or its whole disk's (vda1 -> vda)."""
    dev = Path(source).resolve().name if source.startswith("/") else source
    for cand in (dev, re.sub(r"p?\d+$", "", dev)):
        path = Path(f"/sys/class/block/{cand}")
        if (path / "stat").is_file():
            return path
    return None


@dataclass(frozen=True)
class DeviceOps:
    """Requests the block device under a folder completed: the filesystem's work, which
    a client only causes (a registry syncs and deletes files for each upload)."""

    writes: int
    flushes: int
    discards: int

    def __add__(self, other: DeviceOps) -> DeviceOps:
        return DeviceOps(
            self.writes + other.writes,
            self.flushes + other.flushes,
            self.discards + other.discards,
        )

    def __sub__(self, other: DeviceOps) -> DeviceOps:
        return self + DeviceOps(-other.writes, -other.flushes, -other.discards)


def device_ops(path: Path) -> DeviceOps | None:
    """The counters of /sys/class/block/DEV/stat for the device holding `path`; None where
    there is none to read (tmpfs, overlay, another OS, a kernel without flush counts)."""
    found = _df(path, "source")
    block = _block(found[0]) if found else None
    try:
        fields = [int(f) for f in (block / "stat").read_text().split()] if block else []
    except (OSError, ValueError):
        return None
    if len(fields) < 17:  # writes are field 5, discards 12, flushes 16 (Documentation/block/stat)
        return None
    return DeviceOps(writes=fields[4], flushes=fields[15], discards=fields[11])


def machine_info(workdir: Path) -> dict[str, str]:
    """What a reader needs to compare these figures with their own machine."""
    import mirror

    registry = _first_line(["docker-registry", "--version"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "docker-registry"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout:
            registry = f"{registry} (Debian {done.stdout})"
    return {
        "CPU": _cpu_model(),
        "Cores": str(os.cpu_count() or 0),
        "RAM": f"{_ram_gib():.1f} GiB",
        "Disk": _disk(workdir),
        "Kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "mirror": f"{mirror.__version__} ({_git_rev()})",
        "skopeo": _first_line(["skopeo", "--version"]),
        "docker-registry": registry,
        "zstd": _first_line(["zstd", "--version"]),
        "tar": _first_line(["tar", "--version"]),
    }


def _git_rev() -> str:
    root = Path(__file__).resolve().parent.parent
    rev = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "mirror"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return rev
    return f"{rev}, mirror/ with uncommitted changes" if done.stdout.strip() else rev
