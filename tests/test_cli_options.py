"""Shared options where users put them: before or after the command name (issue 24, item 7)."""

from __future__ import annotations

import json

from .conftest import SAMPLES


def test_the_library_is_taken_before_or_after_the_command(run_cli, tmp_path):
    for args in (("--library", tmp_path / "a", "status", "--json"), ("status", "--library", tmp_path / "b", "--json"),
                 ("status", "--json", "-q", "--library", tmp_path / "c")):
        code, out, err = run_cli(*args)
        assert code == 0, err
        assert json.loads(out)["library"] == str(args[args.index("--library") + 1])


def test_ingest_takes_the_library_after_the_command_and_counts_one_passage(run_cli, tmp_path):
    lib = tmp_path / "lib"
    code, out, err = run_cli("ingest", "--library", lib, "--no-diarize", "-q", SAMPLES / "jfk-inaugural-1961-excerpt.flac")
    assert code == 0, err
    line = next(x for x in out.splitlines() if "jfk-inaugural-1961-excerpt.flac" in x)
    assert line.startswith("ok") and "1 passage" in line and "1 passages" not in line
    assert "1 ingested" in out
    assert json.loads(run_cli("--library", lib, "status", "--json")[1])["files"] == 1


def test_commands_with_their_own_library_option_keep_it(run_cli):
    code, out, _ = run_cli("serve", "--help")
    assert code == 0 and out.count("  --library PATH") == 1 and "as the global --library" in out
    code, out, _ = run_cli("speakers", "rename", "--help")
    assert code == 0 and "--library" in out
