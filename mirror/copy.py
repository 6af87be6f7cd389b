"""The copy engine: content-addressed graphs copied between stores, after oras-go's `Copy`.

Export (registry -> bundle) and import (bundle -> registry) are this one walk:
1. resolve each root's graph from the source (manifests are small and fetched whole);
2. copy every blob the destination lacks, in parallel, each digest once per destination,
   mounting from a sibling repository where the destination can;
3. push manifests children first, roots last, then tag.
Children before parents means an existing parent implies a complete subtree, and no tag
ever points at missing content.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from mirror.errors import AuthError, ConflictError, IntegrityError, OperationError, RegistryError
from mirror.oci.descriptor import MAX_NESTING, Descriptor, successors
from mirror.registry.retry import RetriesExhausted, before_whole_retry
from mirror.stores.interface import Mounter, ReferencePusher, Source, TagResolver, Target


class Observer(Protocol):
    """Progress, reported by the engine; the CLI draws it (the core never prints)."""

    def planned(self, blobs: int, nbytes: int, label: str = "") -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def blob_done(self, desc: Descriptor, how: str) -> None: ...


@runtime_checkable
class PlanObserver(Protocol):
    """Optional: told a copy's size before it starts (the CLI announces a large one)."""

    def plan(self, artifacts: int, blobs: int, nbytes: int) -> None: ...


@runtime_checkable
class NoteObserver(Protocol):
    """Optional: told what the user should read before the work starts (a selection far
    bigger than meant), so the CLI says it while Ctrl-C still saves the time."""

    def note(self, text: str) -> None: ...


@runtime_checkable
class PartialSource(Protocol):
    """A source that leaves some blobs out (a delta bundle): a donor must hold those."""

    def lacks(self, desc: Descriptor) -> str | None:
        """Why `desc` cannot come from here (what to do instead), or None when it can."""
        ...


class Hook(Protocol):
    """A side job on each blob the engine copies, run on the copy worker once the blob has
    landed (export reads a pack layer's pack.json there, while other blobs download)."""

    def landed(self, desc: Descriptor, dst: Target) -> None: ...


class NullObserver:
    def planned(self, blobs: int, nbytes: int, label: str = "") -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def blob_done(self, desc: Descriptor, how: str) -> None:
        pass


@dataclass(frozen=True)
class CopyTask:
    """Copy the graph under `root` from `src` to `dst`, then name it `tag` there."""

    src: Source
    dst: Target
    root: Descriptor
    tag: str | None
    label: str
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Graph:
    task: CopyTask
    manifests: list[tuple[Descriptor, bytes]]  # post-order: children first, root last
    blobs: list[Descriptor]
    complete: bool = False  # the tag already names the root there: the subtree is whole
    repair: bool = False  # the tag names the root, but its manifest can't be read back

    @property
    def size(self) -> int:
        return sum(d.size for d, _ in self.manifests) + sum(b.size for b in self.blobs)


@dataclass(frozen=True)
class CopyOptions:
    jobs: int = 8
    dry_run: bool = False
    overwrite: bool = False  # replace a tag that points elsewhere (`--force`)
    attempts: int = 3  # whole-blob retries after a transient registry failure
    # Stores known to hold a digest (a delta's blobs, at the far side): mount from them.
    donors: Mapping[str, Sequence[Target]] = field(default_factory=dict)
    hooks: Sequence[Hook] = ()  # side jobs on each copied blob, on its copy worker
    commit: bool = True  # False: the caller commits once, after several rounds


@dataclass
class CopyReport:
    graphs: list[Graph] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    copied_blobs: int = 0
    copied_bytes: int = 0
    mounted_blobs: int = 0
    present_blobs: int = 0
    present_bytes: int = 0
    conflicts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def absorb(self, other: CopyReport) -> None:
        """Fold a later round's report into this one (export adds packs in a second round)."""
        self.graphs += other.graphs
        self.blobs += other.blobs
        self.bytes += other.bytes
        self.copied_blobs += other.copied_blobs
        self.copied_bytes += other.copied_bytes
        self.mounted_blobs += other.mounted_blobs
        self.present_blobs += other.present_blobs
        self.present_bytes += other.present_bytes
        self.conflicts += other.conflicts


def resolve_graph(task: CopyTask) -> Graph:
    """Walk the source from the root; every manifest is verified against its descriptor."""
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[str, Descriptor] = {}
    seen: set[str] = set()

    def visit(desc: Descriptor, depth: int) -> None:
        if desc.digest in seen:
            return
        if depth > MAX_NESTING:
            raise IntegrityError(f"{task.label}: manifests nested too deep")
        seen.add(desc.digest)
        data = task.src.fetch_manifest(desc)
        for child in successors(desc, data):
            if child.is_manifest:
                visit(child, depth + 1)
            else:
                blobs.setdefault(child.digest, child)
        manifests.append((desc, data))

    visit(task.root, 0)
    return Graph(task, manifests, list(blobs.values()))


def copy_graphs(
    tasks: Sequence[CopyTask],
    *,
    options: CopyOptions | None = None,
    observer: Observer | None = None,
    graphs: Sequence[Graph] | None = None,
) -> CopyReport:
    """Copy every task's graph. Raises on the first failure; tags only complete graphs."""
    opts = options or CopyOptions()
    obs = observer or NullObserver()
    resolved, conflicts = _resolve_and_check(tasks, graphs, opts.jobs)
    report = CopyReport(graphs=resolved, conflicts=conflicts)
    if report.conflicts and not opts.overwrite:  # a dry run fails where the real one would
        raise ConflictError(
            f"{len(report.conflicts)} tag(s) on the target point at other content "
            f"({report.conflicts[0]}); nothing was changed; --force replaces them"
        )
    work = _blob_work(report.graphs)
    # Counted per (destination, digest): an import into three repositories needs a blob in
    # each, whether uploaded once and mounted twice or found present.
    report.blobs = sum(len(group) for group in work.values())
    report.bytes = sum(i.desc.size for group in work.values() for i in group)
    parallel(opts.jobs, [_checker(w) for w in work.values()])
    for group in work.values():
        for item in group:
            if item.present:
                report.present_blobs += 1
                report.present_bytes += item.desc.size
    missing = [g for g in work.values() if any(not i.present for i in g)]
    _check_supply(missing, opts)
    to_copy = sum(i.desc.size for g in missing for i in g if not i.present)
    if isinstance(obs, PlanObserver):
        obs.plan(len(report.graphs), sum(1 for g in missing for i in g if not i.present), to_copy)
    obs.planned(len(missing), to_copy)
    if opts.dry_run:
        return report
    parallel(opts.jobs, [_copier(g, opts, obs, report) for g in missing])
    parallel(opts.jobs, [_manifest_pusher(gs) for gs in _by_destination(report.graphs)])
    for dst in _unique(t.dst for t in tasks) if opts.commit else ():
        dst.commit()
    return report


def _resolve_and_check(
    tasks: Sequence[CopyTask], graphs: Sequence[Graph] | None, jobs: int
) -> tuple[list[Graph], list[str]]:
    """Each root's graph and what its tag names at the destination, in one parallel pass:
    reading the source and asking the destination overlap instead of running in turn."""
    out: list[Graph | None] = list(graphs) if graphs is not None else [None] * len(tasks)
    found: list[str] = []

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            graph = out[i] or resolve_graph(tasks[i])
            out[i] = graph
            conflict = _check_tag(graph)
            if conflict:
                found.append(conflict)

        return run

    parallel(jobs, [job(i) for i in range(len(out))])
    return [g for g in out if g is not None], sorted(found)


def _check_tag(g: Graph) -> str | None:
    """Marks a graph whose tag already names its root (children are always written before
    parents, so its whole subtree is there: no HEAD per blob); a conflict if it names
    other content."""
    t = g.task
    if not t.tag or not isinstance(t.dst, TagResolver):
        return None
    current = t.dst.resolve(t.tag)
    g.complete = current is not None and current.digest == t.root.digest
    readable = getattr(t.dst, "readable", None)
    if g.complete and readable is not None and not readable(t.root):
        g.complete, g.repair = False, True  # push its manifests again, then the tag
    if current is not None and current.digest != t.root.digest:
        return (
            f"{t.dst.where}:{t.tag} is {current.digest[:19]}, the source has {t.root.digest[:19]}"
        )
    return None


@dataclass
class _Item:
    desc: Descriptor
    src: Source
    dst: Target
    present: bool = False


def _blob_work(graphs: Iterable[Graph]) -> dict[str, list[_Item]]:
    """Unique (destination, digest) pairs, grouped by digest so one upload feeds mounts."""
    work: dict[str, list[_Item]] = {}
    for g in graphs:
        for b in g.blobs:
            group = work.setdefault(b.digest, [])
            if not any(i.dst is g.task.dst for i in group):
                group.append(_Item(b, g.task.src, g.task.dst, present=g.complete))
    return work


def _checker(group: list[_Item]) -> Callable[[], None]:
    def run() -> None:
        for item in group:
            item.present = item.present or item.dst.exists(item.desc)

    return run


def _check_supply(missing: Sequence[list[_Item]], opts: CopyOptions) -> None:
    """A blob the source lacks and no store holds would fail mid-copy, after other writes
    (a delta into a target without its base): refuse before the first write instead."""
    gaps = [g for g in missing if _lacks(g) is not None]
    found = parallel_map(opts.jobs, lambda gap: _mountable(gap, opts), gaps)
    lost = [g for g, ok in zip(gaps, found, strict=True) if not ok]
    if lost:
        item = next(i for i in lost[0] if not i.present)
        more = f" and {len(lost) - 1} more blob(s)" if len(lost) > 1 else ""
        raise OperationError(
            f"{item.dst.where}: {item.desc.digest}{more}: on the target nowhere and "
            f"{_lacks(lost[0])}; nothing was written"
        )


def _lacks(group: list[_Item]) -> str | None:
    src = group[0].src
    return src.lacks(group[0].desc) if isinstance(src, PartialSource) else None


def _mountable(group: list[_Item], opts: CopyOptions) -> bool:
    """Whether every destination lacking the blob can mount it from a store that holds it."""
    if not all(isinstance(i.dst, Mounter) for i in group if not i.present):
        return False
    if any(i.present for i in group):
        return True
    return any(d.exists(group[0].desc) for d in opts.donors.get(group[0].desc.digest, ()))


def _copier(
    group: list[_Item], opts: CopyOptions, obs: Observer, report: CopyReport
) -> Callable[[], None]:
    def run() -> None:
        donors = [i.dst for i in group if i.present]
        donors += opts.donors.get(group[0].desc.digest, ())
        for item in group:
            if item.present:
                continue
            how = _transfer(item, donors, opts, obs)
            for hook in opts.hooks if how == "copied" else ():
                hook.landed(item.desc, item.dst)
            donors.append(item.dst)
            obs.blob_done(item.desc, how)
            with report.lock:
                if how == "mounted":
                    report.mounted_blobs += 1
                else:
                    report.copied_blobs += 1
                    report.copied_bytes += item.desc.size

    return run


def _transfer(item: _Item, donors: list[Target], opts: CopyOptions, obs: Observer) -> str:
    if isinstance(item.dst, Mounter):
        for donor in donors:
            if item.dst.mount(item.desc, donor):
                obs.advance(item.desc.size)
                return "mounted"
    for attempt in range(1, opts.attempts + 1):
        sent = _Counter(obs)
        try:
            with item.src.fetch(item.desc) as stream:
                item.dst.push(item.desc, sent.wrap(stream))
            return "copied"
        except (AuthError, IntegrityError, RetriesExhausted):
            raise  # final, or already retried by the HTTP layer's one budget
        except RegistryError as exc:
            sent.rewind()
            if attempt == opts.attempts:
                raise
            before_whole_retry(exc, attempt)  # a 429's Retry-After, a 5xx's backoff
    raise AssertionError("unreachable")  # pragma: no cover


class _Counter:
    """Counts bytes for progress, and takes them back if an attempt is retried.

    A plain reader object, not a class made per call: a class built in a function lives
    in a reference cycle, so the stream it wraps (and its native zstd buffers) would
    outlive the copy until the garbage collector happened to run.
    """

    def __init__(self, obs: Observer) -> None:
        self.obs = obs
        self.count = 0
        self._stream: IO[bytes] | None = None

    def wrap(self, stream: IO[bytes]) -> IO[bytes]:
        self._stream = stream
        return self  # type: ignore[return-value]

    def read(self, n: int = -1, /) -> bytes:
        assert self._stream is not None
        chunk = self._stream.read(n)
        self.count += len(chunk)
        self.obs.advance(len(chunk))
        return chunk

    def __len__(self) -> int:
        return len(self._stream)  # type: ignore[arg-type]

    @property
    def proves(self) -> str | None:
        """What the wrapped stream proves at its end, so the target need not hash it again."""
        return getattr(self._stream, "proves", None)

    def rewind(self) -> None:
        self.obs.advance(-self.count)
        self.count = 0
        self._stream = None


def _by_destination(graphs: Iterable[Graph]) -> list[list[Graph]]:
    groups: dict[int, list[Graph]] = {}
    for g in graphs:
        groups.setdefault(id(g.task.dst), []).append(g)
    return list(groups.values())


def _manifest_pusher(graphs: list[Graph]) -> Callable[[], None]:
    """Manifests, then tags, for one destination; destinations run in parallel.

    One destination's manifests go one at a time, each digest once: two tags of one
    image (`2.0.0` and `latest`) racing to write the same manifest make Distribution
    answer 500. A root goes last, with its tag in the same request where the target can.
    """

    def run() -> None:
        done: set[str] = set()
        for graph in graphs:
            if not graph.complete:
                _push_graph(graph, done)

    return run


def _push_graph(graph: Graph, done: set[str]) -> None:
    task = graph.task
    for desc, data in graph.manifests:
        if desc.digest in done:
            continue
        done.add(desc.digest)
        root = desc.digest == task.root.digest
        if root and task.tag is not None and isinstance(task.dst, ReferencePusher):
            task.dst.push_reference(desc, io.BytesIO(data), task.tag)
            return  # stored and named at once
        if graph.repair or not task.dst.exists(desc):
            task.dst.push(desc, io.BytesIO(data))
    if task.tag is not None:
        task.dst.tag(task.root, task.tag, task.annotations)


def parallel(jobs: int, calls: Sequence[Callable[[], None]], name: str = "copy") -> None:
    """Run calls on at most `jobs` threads; the first failure keeps the rest from starting
    and is raised once the running ones have ended (Ctrl-C too).

    The workers take the next call from one shared iterator: no future per call. An import
    of 5,000 small images submitted 20,000 copies at once, and their futures, conditions
    and waiters held 18 MB until the last one ran (tracemalloc, bench/FINDINGS.md)."""
    if not calls:
        return
    if jobs <= 1 or len(calls) == 1:
        for call in calls:
            call()
        return
    pending = iter(calls)
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            with lock:
                call = next(pending, None)
            if call is None:
                return
            try:
                call()
            except BaseException as exc:  # as a future would keep it, for the caller
                with lock:
                    failures.append(exc)
                stop.set()

    workers = [
        threading.Thread(target=work, name=f"{name}_{i}", daemon=True)
        for i in range(min(jobs, len(calls)))
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop.set()  # interrupted: nothing new starts; what runs ends on its own
        for worker in workers:
            if worker.is_alive():
                worker.join()
    if failures:
        raise failures[0]


_In = TypeVar("_In")
_Out = TypeVar("_Out")


def parallel_map(
    jobs: int, fn: Callable[[_In], _Out], items: Sequence[_In], name: str = "copy"
) -> list[_Out]:
    """`fn` of each item on `parallel`'s workers; the results in the items' order."""
    out: list[Any] = [None] * len(items)

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            out[i] = fn(items[i])

        return run

    parallel(jobs, [job(i) for i in range(len(items))], name)
    return out


def _unique(items: Iterable[Target]) -> list[Target]:
    out: list[Target] = []
    for item in items:
        if not any(item is o for o in out):
            out.append(item)
    return out
