"""Each downloaded byte is hashed once: the registry's verifying stream proves the digest,
and the export cache (or the Helm folder) does not hash it again (0.23 s of CPU on the
300 MB bench export). A stream that proves nothing is still checked."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mirror.cache import BlobCache
from mirror.copy import NullObserver, _Counter
from mirror.errors import IntegrityError
from mirror.oci import mediatypes as mt
from mirror.oci.descriptor import descriptor_for
from mirror.streams import VerifyingReader, verified

DATA = b"layer bytes" * 1000
DESC = descriptor_for(DATA, mt.OCI_LAYER_GZIP)


def test_a_proving_stream_is_not_wrapped_again_even_through_the_engine_counter() -> None:
    proving = VerifyingReader(io.BytesIO(DATA), DESC, "registry")
    assert verified(proving, DESC, "cache") is proving
    counted = _Counter(NullObserver()).wrap(proving)
    assert verified(counted, DESC, "cache") is counted


def test_a_stream_proving_another_digest_or_nothing_is_checked(tmp_path: Path) -> None:
    other = descriptor_for(b"other", mt.OCI_LAYER_GZIP)
    assert isinstance(verified(VerifyingReader(io.BytesIO(b"other"), other, "x"), DESC, "c"),
                      VerifyingReader)  # fmt: skip
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match="does not match"):
        cache.put(DESC, io.BytesIO(DATA[:-1] + b"!"))
    assert not cache.has(DESC)
    cache.put(DESC, VerifyingReader(io.BytesIO(DATA), DESC, "registry"))
    assert cache.has(DESC)
