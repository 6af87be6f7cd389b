"""The copy engine on in-memory stores: the hard claims, without a network."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import pytest

from mirror.copy import CopyOptions, CopyTask, copy_graphs
from mirror.errors import ConflictError, IntegrityError, RegistryError
from mirror.lab.content import make_image, make_index
from mirror.oci import mediatypes as mt
from mirror.oci.artifact import OciArtifact, single_layer_artifact
from mirror.oci.descriptor import Descriptor, successors
from mirror.stores.memory import MemorySource
from mirror.streams import VerifyingReader, drain


def _artifact(layer: bytes) -> OciArtifact:
    return single_layer_artifact(b"{}", mt.UNKNOWN_CONFIG, layer, mt.OCI_LAYER_TAR)


class CountingSource(MemorySource):
    def __init__(self, *arts: OciArtifact) -> None:
        super().__init__("memory", arts)
        self.fetched: list[str] = []

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        self.fetched.append(desc.digest)
        with super().fetch(desc) as stream:
            yield stream


class FailingSource(MemorySource):
    """Hands out the right length of wrong bytes for one digest."""

    def __init__(self, bad: str, *arts: OciArtifact) -> None:
        super().__init__("memory", arts)
        self.bad = bad

    @contextmanager
    def fetch(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        if desc.digest != self.bad:
            with super().fetch(desc) as stream:
                yield stream
            return
        yield VerifyingReader(io.BytesIO(b"\0" * desc.size), desc, "bad")  # type: ignore[misc]


class MemoryTarget:
    """A registry-like target: verifies as it writes, tags, resolves, can lose a manifest.

    Like Distribution, it refuses a manifest whose config, layers or child manifests it
    does not hold yet (MANIFEST_BLOB_UNKNOWN): an engine that pushes a manifest before its
    blobs, or skips a blob it wrongly thought present, fails here as it would on a registry.
    """

    def __init__(self) -> None:
        self.where = "memory-target"
        self.blobs: dict[str, bytes] = {}
        self.tags: dict[str, Descriptor] = {}
        self.unreadable: set[str] = set()
        self.pushes: list[str] = []

    def exists(self, desc: Descriptor) -> bool:
        return desc.digest in self.blobs

    def push(self, desc: Descriptor, stream: IO[bytes]) -> None:
        sink = io.BytesIO()
        drain(VerifyingReader(stream, desc, self.where), sink)
        if desc.is_manifest:
            missing = [c.digest for c in successors(desc, sink.getvalue()) if not self.exists(c)]
            if missing:
                raise RegistryError(f"{self.where}: manifest blob unknown: {missing[0]}")
        self.blobs[desc.digest] = sink.getvalue()
        self.pushes.append(desc.digest)
        self.unreadable.discard(desc.digest)

    def tag(self, desc: Descriptor, ref: str, annotations: Mapping[str, str]) -> None:
        self.tags[ref] = desc

    def resolve(self, ref: str) -> Descriptor | None:
        return self.tags.get(ref)

    def readable(self, desc: Descriptor) -> bool:
        return desc.digest in self.blobs and desc.digest not in self.unreadable

    def commit(self) -> None:
        pass


def _task(src: MemorySource, dst: MemoryTarget, art: OciArtifact, tag: str) -> CopyTask:
    return CopyTask(src, dst, art.descriptor, tag, f"test:{tag}")  # type: ignore[arg-type]


def test_a_second_copy_fetches_nothing() -> None:
    a, b = _artifact(b"layer a" * 100), _artifact(b"layer b" * 100)
    src, dst = CountingSource(a, b), MemoryTarget()
    tasks = [_task(src, dst, a, "a"), _task(src, dst, b, "b")]
    first = copy_graphs(tasks, options=CopyOptions(jobs=4))
    assert first.copied_blobs == 3  # one shared config, two layers
    assert set(dst.tags) == {"a", "b"}
    src.fetched.clear()
    again = copy_graphs(tasks, options=CopyOptions(jobs=4))
    assert src.fetched == [] and again.copied_blobs == 0
    assert again.present_blobs == 3


def test_a_bad_blob_leaves_no_partial_blob_and_no_tag() -> None:
    art = _artifact(b"layer" * 1000)
    layer = art.blobs[1][0]
    src, dst = FailingSource(layer.digest, art), MemoryTarget()
    with pytest.raises(IntegrityError):
        copy_graphs([_task(src, dst, art, "t")], options=CopyOptions(jobs=2))
    assert layer.digest not in dst.blobs
    assert dst.tags == {} and art.descriptor.digest not in dst.blobs


def test_a_tag_naming_other_content_is_a_conflict_unless_overwritten() -> None:
    old, new = _artifact(b"old" * 50), _artifact(b"new" * 50)
    src, dst = MemorySource("memory", [old, new]), MemoryTarget()
    copy_graphs([_task(src, dst, old, "1.0")])
    with pytest.raises(ConflictError, match="--force"):
        copy_graphs([_task(src, dst, new, "1.0")])
    assert dst.tags["1.0"].digest == old.descriptor.digest
    assert new.blobs[1][0].digest not in dst.blobs  # nothing moved before the refusal
    copy_graphs([_task(src, dst, new, "1.0")], options=CopyOptions(overwrite=True))
    assert dst.tags["1.0"].digest == new.descriptor.digest


def test_a_tag_whose_manifest_cannot_be_read_is_repaired() -> None:
    art = _artifact(b"x" * 300)
    src, dst = CountingSource(art), MemoryTarget()
    copy_graphs([_task(src, dst, art, "t")])
    dst.unreadable.add(art.descriptor.digest)  # as a push killed mid-way can leave it
    dst.pushes.clear()
    report = copy_graphs([_task(src, dst, art, "t")])
    assert dst.pushes == [art.descriptor.digest]  # the manifest again, no blob
    assert report.copied_blobs == 0 and dst.readable(art.descriptor)


def test_dry_run_moves_nothing() -> None:
    art = _artifact(b"y" * 300)
    src, dst = CountingSource(art), MemoryTarget()
    report = copy_graphs([_task(src, dst, art, "t")], options=CopyOptions(dry_run=True))
    assert report.blobs == 2 and report.present_blobs == 0
    assert src.fetched == [] and dst.blobs == {} and dst.tags == {}


def test_the_memory_target_refuses_a_manifest_whose_blobs_it_lacks() -> None:
    """As Distribution does (MANIFEST_BLOB_UNKNOWN): the double must not be kinder."""
    art = _artifact(b"z" * 300)
    dst = MemoryTarget()
    with pytest.raises(RegistryError, match="manifest blob unknown"):
        dst.push(art.descriptor, io.BytesIO(art.manifest))
    assert dst.blobs == {}


def test_an_index_goes_up_after_its_children_and_theirs_after_their_blobs() -> None:
    """Order matters on a registry: blobs, then each image, then the index over them."""
    a = make_image("a", layers=[b"arch a" * 100], platform=("linux", "amd64"))
    b = make_image("b", layers=[b"arch b" * 100], platform=("linux", "arm64"))
    index = make_index([a, b])
    src, dst = MemorySource("memory", [a, b, index]), MemoryTarget()
    copy_graphs([_task(src, dst, index, "multi")], options=CopyOptions(jobs=4))
    assert dst.tags["multi"].digest == index.descriptor.digest
    last = dst.pushes[-3:]
    assert set(last[:2]) == {a.descriptor.digest, b.descriptor.digest}
    assert last[2] == index.descriptor.digest


def test_parallel_bounds_its_threads_and_stops_at_the_first_failure() -> None:
    """At most `jobs` calls run at once and every call runs once; after a failure no new
    call starts, the running ones end, and the failure (BaseException too) is raised."""
    import threading
    import time

    from mirror.copy import parallel

    lock, running, most, done = threading.Lock(), [0], [0], []

    def call(i: int, fail: BaseException | None = None) -> Callable[[], None]:
        def run() -> None:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.002)
            with lock:
                running[0] -= 1
                done.append(i)
            if fail is not None:
                raise fail

        return run

    parallel(3, [call(i) for i in range(40)])
    assert sorted(done) == list(range(40)) and most[0] == 3
    for failure in (RegistryError("boom"), KeyboardInterrupt()):
        done.clear()
        calls = [call(i, failure if i == 5 else None) for i in range(200)]
        with pytest.raises(type(failure)):
            parallel(4, calls)
        assert 5 in done and len(done) < 20 and running[0] == 0  # the rest never started


def test_parallel_holds_nothing_per_call_it_has_not_started() -> None:
    """Workers take calls from one iterator: 20,000 pending calls cost no future, condition
    or waiter each (an import of 5,000 small images held 18 MB of them)."""
    import tracemalloc

    from mirror.copy import parallel

    calls = [lambda: None] * 20_000
    tracemalloc.start()
    try:
        parallel(4, calls)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes for 20,000 calls"
