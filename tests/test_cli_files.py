"""`memtop replay / report / analyze FILE` with a file that is not there, a directory, or one stray
line: one plain sentence naming the file and what is wrong (no errno brackets, no traceback), exit 1."""

from __future__ import annotations

import pytest

from tt_memtop.cli import main


@pytest.mark.parametrize("cmd", ["replay", "report", "analyze"])
def test_missing_directory_and_one_line_files(tmp_path, capsys, cmd):
    one = tmp_path / "one.txt"
    one.write_text("hello\n")
    cases = {str(tmp_path / "missing.log"): f"{tmp_path / 'missing.log'}: no such file",
             str(tmp_path): f"{tmp_path} is a directory: give an allocation-server log or a memtop recording",
             str(one): "its only line is not a line the server writes"}
    for path, said in cases.items():
        argv = [cmd, path] + (["--once"] if cmd == "replay" else [])
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert said in err, err
        assert "Errno" not in err and "Traceback" not in err


def test_report_says_an_id_was_never_allocated_rather_than_on_devices_none(capsys):
    """The original server's session log frees 0xdead000 on device 2, never allocated anywhere."""
    from pathlib import Path

    log = Path(__file__).resolve().parent / "data" / "original_server" / "session_72byte.log"
    assert main(["report", str(log)]) == 0
    out = capsys.readouterr().out
    assert "0xdead000 (233492480) on device 2: allocated 0, freed 1" in out
    assert "this id was never allocated on any device, freed on 2" in out and "devices none" not in out


def test_replay_once_shows_no_peak_it_cannot_know(capsys):
    """`replay --once` rebuilds the state at the end of the file: the "DRAM peak MB" column said 0.00 for a
    run that had used hundreds of MB (the real S4 server's llama log); it says "-" and where the peaks are."""
    from pathlib import Path

    log = Path(__file__).resolve().parent / "data" / "oracle" / "s4_sim_llama-t3k_112.stdout.gz"
    assert main(["replay", str(log), "--once"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith(("0 ", "7 ")) and "1024.00" in ln]
    assert rows and all(r[-1] == "-" for r in rows), out
    assert "the run's peaks: `memtop report FILE --map`" in out


def test_follow_refuses_what_is_not_a_log_being_written(tmp_path, capsys, monkeypatch):
    """`memtop --follow` of a gzipped log read nothing and said "no devices to show" (exit 0); a directory
    hung; prose showed an empty screen. Each is refused with why and what to run instead."""
    import gzip

    monkeypatch.setenv("TT_MEMTOP_SHM_DIR", str(tmp_path / "noshm"))
    line = b"\xe2\x9c\x93 [PID 8174] Allocated 1048576 bytes of DRAM on device 0 (buffer_id=455294688)\n"
    gz = tmp_path / "server.log.gz"
    gz.write_bytes(gzip.compress(line))
    prose = tmp_path / "notes.txt"
    prose.write_text("hello\nworld\n")
    cases = {str(gz): "is gzipped, not a log being written: read it with `memtop replay",
             str(tmp_path): "is a directory: --follow takes the allocation server's log file",
             str(prose): "is not an allocation-server log (none of its first 2 lines"}
    for path, said in cases.items():
        assert main(["--follow", path, "--socket", str(tmp_path / "none.sock"), "--once"]) == 1
        err = capsys.readouterr().err
        assert said in err, err
