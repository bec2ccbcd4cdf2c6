"""atomic_path: the new file replaces the old one whole, or not at all."""

import os

import pytest

from ppo_core.atomic import atomic_path


def test_a_finished_write_replaces_the_target_with_ordinary_permissions(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing visible until the block ends
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")

    def write_half_then_fail():
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half_then_fail()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
