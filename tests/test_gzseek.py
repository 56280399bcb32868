"""tt_memtop.gzseek: seeking in a gzip file gives the bytes GzipFile gives, resuming from the index."""

from __future__ import annotations

import gzip
import io
import os
import random
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tt_memtop.gzseek import GzipIndex, is_gzip_stream, open_gzip


def _payload(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    # compressible but not trivially: runs of records with varying fields, some zero-filled stretches
    parts = []
    total = 0
    while total < n:
        if rnd.random() < 0.05:
            parts.append(bytes(rnd.randrange(1, 200_000)))
        else:
            parts.append(rnd.randbytes(rnd.randrange(1, 64)) * rnd.randrange(1, 40))
        total += len(parts[-1])
    return b"".join(parts)[:n]


def _write(path, data: bytes, members: int = 1, padding: int = 0) -> None:
    cuts = sorted(random.Random(len(data)).sample(range(1, max(2, len(data))), min(members - 1, max(0, len(data) - 1))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    with open(path, "wb") as f:
        for piece in pieces:
            f.write(gzip.compress(piece, compresslevel=1))
            f.write(bytes(padding))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1 << 30), size=st.integers(0, 1_500_000), members=st.integers(1, 3),
       padding=st.sampled_from([0, 0, 7, 70_000]),
       seeks=st.lists(st.tuples(st.floats(0, 1.1), st.integers(0, 300_000)), min_size=1, max_size=12))
# a member that ends in a call cut by the output limit keeps an unconsumed tail beside its unused data
@example(seed=156463, size=1_500_000, members=2, padding=0, seeks=[(0.1332, 30)])
def test_reads_after_seeks_match_the_data(tmp_path, seed, size, members, padding, seeks):
    data = _payload(seed, size)
    path = tmp_path / "d.gz"
    _write(path, data, members, padding)
    index = GzipIndex(spacing=1 << 18, limit=4)  # small: many points, and the halving when full
    with open_gzip(str(path), index) as f:
        assert is_gzip_stream(f)
        for where, n in seeks:
            off = int(where * len(data))
            assert f.seek(off) == min(off, len(data)) or off > len(data)
            assert f.read(n) == data[off:off + n]
            assert f.tell() == min(len(data), off + n) or off > len(data)
    assert len(index) <= 4
    with open_gzip(str(path), index) as g:  # a second opening resumes from the first one's points
        off = len(data) // 2
        g.seek(off)
        assert g.read() == data[off:]


def test_a_backward_seek_resumes_from_a_point_not_the_start(tmp_path):
    data = _payload(1, 6_000_000)
    path = tmp_path / "d.gz"
    _write(path, data)
    index = GzipIndex(spacing=1 << 20)
    with open_gzip(str(path), index) as f:
        assert f.read() == data  # one pass: the points
        assert len(index) >= 5
        raw = f.raw
        f.seek(4_500_000)
        # resumed at the last point before the target: less than a spacing decompressed to get there
        assert 4_500_000 - index.best(4_500_000)[0] < 1 << 20
        assert raw._raw <= index.best(4_500_000)[1] + (1 << 17)
        assert f.read(1000) == data[4_500_000:4_501_000]


def test_truncated_and_damaged_streams_raise_what_gzipfile_raises(tmp_path):
    data = _payload(2, 500_000)
    blob = gzip.compress(data)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with open_gzip(str(cut)) as f, pytest.raises(EOFError):
        f.read()
    with gzip.open(cut) as g, pytest.raises(EOFError):
        g.read()
    bad = bytearray(blob)
    bad[-6] ^= 0xFF  # the CRC
    damaged = tmp_path / "crc.gz"
    damaged.write_bytes(bytes(bad))
    with open_gzip(str(damaged)) as f, pytest.raises(zlib.error):
        f.read()
    junk = tmp_path / "junk.gz"
    junk.write_bytes(blob + b"not gzip at all")
    with open_gzip(str(junk)) as f, pytest.raises(zlib.error):
        f.read()


def test_seek_from_the_end_is_refused(tmp_path):
    path = tmp_path / "d.gz"
    path.write_bytes(gzip.compress(b"abc"))
    with open_gzip(str(path)) as f, pytest.raises(io.UnsupportedOperation):
        f.seek(0, os.SEEK_END)


def test_a_gzipped_recording_replays_the_same_after_seeks(tmp_path):
    """The player's timeline over a gzipped recording: the same state after seeking back and forth."""
    from tests.recordings import RECORDINGS, unpack
    from tt_memtop.sources.timeline import RecordingTimeline

    rec = unpack("llama_8dev", tmp_path)
    gz = RECORDINGS / "llama_8dev.rec.gz"
    plain, packed = RecordingTimeline(str(rec), checkpoint_every=2000), RecordingTimeline(str(gz), checkpoint_every=2000)
    try:
        for pos in (plain.total, plain.total // 3, plain.total // 2, 10, plain.total - 1):
            plain.seek(pos)
            packed.seek(pos)
            a, b = plain.state(), packed.state()
            assert sorted(map(repr, a[0])) == sorted(map(repr, b[0])) and a[1] == b[1]
    finally:
        plain.close()
        packed.close()
