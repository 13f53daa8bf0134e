"""ktae.files: files written whole or not at all; one process at a time in a shared read-modify-write."""
import multiprocessing
import os
import stat

import pytest

from ktae.experiments.compare import read_curves_csv, write_curves_csv
from ktae.files import atomic_write, exclusive


def test_atomic_write_replaces_whole_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "sub" / "out.json"
    with atomic_write(path) as handle:
        handle.write("first\n")
    assert path.read_text() == "first\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as handle:
            handle.write("half of the second")
            raise KeyboardInterrupt
    assert path.read_text() == "first\n"          # the old file is whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]   # no temporary file left


def _rows(seed):
    return [{"study": "s", "arm": "grpo", "seed": seed, "step": t, "rollout_accuracy": 0.5,
             "heldout_accuracy": None, "response_length": 10.0} for t in range(1, 31)]


def _add_rows(path, seed, writing):
    writing.set()
    write_curves_csv(path, _rows(seed))


def test_a_process_adding_to_a_curves_csv_waits_for_the_one_that_holds_it(tmp_path):
    path = tmp_path / "curves.csv"
    ctx = multiprocessing.get_context("spawn")
    writing = ctx.Event()
    other = ctx.Process(target=_add_rows, args=(path, 1, writing))
    with exclusive(path):   # this process is in the middle of its read-modify-write
        other.start()
        assert writing.wait(120)
        other.join(2.0)
        assert other.is_alive()                 # waits for the lock instead of writing over this process
        kept = read_curves_csv(path) if path.exists() else []
    write_curves_csv(path, kept + _rows(0))     # (the lock is taken again inside)
    other.join(60)
    assert other.exitcode == 0
    rows = read_curves_csv(path)
    assert sorted({r["seed"] for r in rows}) == [0, 1] and len(rows) == 2 * 30
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
