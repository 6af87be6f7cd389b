"""FILE, FILE.sha256 and FILE.sig (or FILE's parts and their list) change together or not
at all (stop 31's interruption sweep). Each was renamed as soon as it was written: a Ctrl-C,
a SIGTERM or a full disk between them left the new bundle beside the old sidecars, which
`verify` then refused (exit 3), while the message said nothing partial was left."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from faultproxy import isolated_env, mirror, write_spec

from mirror.streams import TEMP_MARK

PASSWORD = "publish-together"
PACKS = ["spectro-packs/archive/*"]


@pytest.fixture(scope="module", autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with isolated_env(tmp_path_factory, set_env={"MIRROR_KEY_PASSWORD": PASSWORD}):
        yield


@pytest.fixture
def work(seeded_registry: Any, tmp_path: Path) -> dict[str, Path]:
    assert mirror("keygen", "--output-dir", tmp_path, "--name", "k").rc == 0
    spec = write_spec(tmp_path / "s.yaml", seeded_registry.url, repositories=PACKS)
    return {"dir": tmp_path, "spec": spec, "key": tmp_path / "k.key", "pub": tmp_path / "k.pub"}


def _export(w: dict[str, Path], epoch: int, *extra: str) -> Any:
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)  # a new `created`: new bytes each time
    try:
        return mirror(
            "export", w["spec"], "-o", w["dir"] / "b.tar.zst", "--key", w["key"],
            "--cache-dir", w["dir"] / "cache", *extra,
        )  # fmt: skip
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]


def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("b.tar.zst*"))}


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TEMP_MARK in p.name]


@pytest.mark.parametrize("split", [(), ("--split-size", "64K")])
def test_a_stop_before_the_sidecars_are_ready_keeps_the_old_set(
    work: dict[str, Path], monkeypatch: pytest.MonkeyPatch, split: tuple[str, ...]
) -> None:
    """Ctrl-C while FILE.sig is being made (the second signature: manifest.json's is the
    first), FILE written by then: the old bundle and its sidecars, whole."""
    import mirror.signing

    assert _export(work, 1_700_000_000, *split).rc == 0
    before = _state(work["dir"])
    real, calls = mirror.signing.sign_digest, []

    def interrupted(*args: Any) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mirror.signing, "sign_digest", interrupted)
    run = _export(work, 1_700_000_100, *split)
    assert run.rc == 1 and "interrupted" in run.error_line() and len(calls) == 2
    assert _state(work["dir"]) == before and not _temps(work["dir"])


@pytest.mark.parametrize("split", [(), ("--split-size", "64K")])
def test_a_signal_among_the_renames_waits_for_the_last(
    work: dict[str, Path], monkeypatch: pytest.MonkeyPatch, split: tuple[str, ...]
) -> None:
    """SIGTERM right after the first rename: every file of the new set lands, then the run
    stops (exit 1), and what is there verifies."""
    assert _export(work, 1_700_000_000, *split).rc == 0
    real = os.replace
    sent: list[bool] = []

    def replace(src: Any, dst: Any) -> None:
        real(src, dst)
        if not sent and Path(dst).name.startswith("b.tar.zst"):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    from mirror.entry import interrupt  # the console script's SIGTERM handler

    monkeypatch.setattr(os, "replace", replace)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        run = _export(work, 1_700_000_100, *split)
    finally:
        signal.signal(signal.SIGTERM, previous)
    monkeypatch.setattr(os, "replace", real)
    assert sent and run.rc == 1  # and the line says the bundle was finished, not "nothing partial"
    assert run.error_line().endswith("interrupted; what was being written was finished first")
    check = mirror("verify", work["dir"] / "b.tar.zst", "--key", work["pub"])
    assert check.rc == 0, check.err
    assert not _temps(work["dir"])


def test_a_full_disk_at_the_sidecar_keeps_the_old_set(
    work: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC writing FILE.sha256: one line, exit 1, and the old set as it was."""
    import errno

    import mirror.streams

    assert _export(work, 1_700_000_000).rc == 0
    before = _state(work["dir"])
    real = mirror.streams.Staged.file

    def full(self: Any, path: Path, mode: int = 0o644) -> Any:
        if path.name.endswith(".sha256"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(self, path, mode)

    monkeypatch.setattr(mirror.streams.Staged, "file", full)
    run = _export(work, 1_700_000_100)
    assert run.rc == 1 and "No space left on device" in run.error_line()
    assert _state(work["dir"]) == before and not _temps(work["dir"])


def test_two_exports_to_one_file_publish_one_after_the_other(work: dict[str, Path]) -> None:
    """The sweep stopped one export just after its rename while another ran to the end: the
    bundle was one's, the sidecars the other's. A publish holds the output folder's lock, so
    a second one waits for the first to finish its renames (held here by the test)."""
    import threading

    from mirror.streams import locked_folder

    assert _export(work, 1_700_000_000).rc == 0
    before = _state(work["dir"])
    runs: list[Any] = []
    with locked_folder(work["dir"]):
        worker = threading.Thread(target=lambda: runs.append(_export(work, 1_700_000_100)))
        worker.start()
        worker.join(5.0)
        assert worker.is_alive() and _state(work["dir"]) == before  # written, not published
    worker.join(60)
    assert runs and runs[0].rc == 0
    assert mirror("verify", work["dir"] / "b.tar.zst", "--key", work["pub"]).rc == 0
