"""The recorded sessions in tests/data/recordings (gzipped), unpacked for the tests that read them."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from tt_memtop.recording import read_recording

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"


def unpack(name: str, folder: Path) -> Path:
    """``name``.rec.gz unpacked into ``folder``: the path of the plain recording."""
    path = Path(folder) / f"{name}.rec"
    with gzip.open(RECORDINGS / f"{name}.rec.gz", "rb") as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def recorded_events(name: str, folder: Path) -> list:
    """Every event of the recorded session ``name``, read from its plain unpacked file."""
    return list(read_recording(str(unpack(name, folder))))
