"""Names a peer gives its files never escape the download folder or overwrite anything."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from lanchat.transfer import names


@pytest.mark.parametrize("given, expected", [
    ("../x", ("x",)),
    ("a/../../x", ("a", "x")),
    ("/etc/passwd", ("etc", "passwd")),
    ("//tmp/x", ("tmp", "x")),
    ("..", ("untitled",)),
    (".", ("untitled",)),
    ("", ("untitled",)),
    ("a\\..\\b", ("a", "b")),
    ("C:\\Windows\\x", ("C_", "Windows", "x")),
])
def test_path_parts_and_dot_dot_never_leave_the_folder(given: str,
                                                       expected: tuple[str, ...]) -> None:
    """Separators split, `..`/`.`/empty parts vanish, absolute paths become relative."""
    assert names.safe_relpath(given) == expected


@pytest.mark.parametrize("given, expected", [
    ("a\x00b", "a_b"),
    ("bell\x07.txt", "bell_.txt"),
    ("esc\x1b[2J.txt", "esc_[2J.txt"),
    ("c1\x9b.txt", "c1_.txt"),
    ("rtl\u202egnp.exe", "rtl_gnp.exe"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("NUL", "_NUL"),
    ("com1.log", "_com1.log"),
    ("LPT9", "_LPT9"),
    ("report.", "report"),
    ("report . . ", "report"),
    ("  spaced  ", "spaced"),
    ("a:b?c*d", "a_b_c_d"),
    ("...", "untitled"),
    ("console.txt", "console.txt"),
])
def test_control_reserved_and_trailing_characters_are_made_safe(given: str,
                                                                expected: str) -> None:
    """NUL, controls, bidi overrides, reserved device names, trailing dots and spaces."""
    assert names.safe_component(given) == expected


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    """A 300-byte name (multi-byte characters) keeps its extension and valid UTF-8."""
    name = "é" * 150 + ".tar.gz"
    safe = names.safe_component(name)
    assert safe.endswith(".gz")
    assert len(safe.encode()) <= names.MAX_NAME_BYTES
    assert len((names.numbered(safe, 9999) + names.PART_SUFFIX).encode()) <= 255
    safe.encode().decode()  # still valid UTF-8
    assert len(names.safe_component("x" * 300).encode()) <= names.MAX_NAME_BYTES


def test_names_are_nfc() -> None:
    """A decomposed name (NFD, as macOS writes it) becomes NFC."""
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfd != "café.txt"
    assert names.safe_component(nfd) == "café.txt"


def test_existing_names_get_a_number(tmp_path: Path) -> None:
    """report.pdf exists -> report (1).pdf; a .part counts as taken too."""
    (tmp_path / "report.pdf").write_text("mine")
    (tmp_path / "report (1).pdf.part").write_text("someone's")
    with names.open_dir(str(tmp_path), (), create=False) as fd:
        assert names.unique_name(fd, "report.pdf") == "report (2).pdf"
        assert names.unique_name(fd, "new.pdf") == "new.pdf"


def test_publish_never_overwrites(tmp_path: Path) -> None:
    """The name taken between accept and rename: the file gets the next free name."""
    (tmp_path / "a.txt").write_text("mine")
    (tmp_path / "a.txt.part").write_text("theirs")
    with names.open_dir(str(tmp_path), (), create=False) as fd:
        assert names.publish(fd, "a.txt.part", "a.txt") == "a (1).txt"
    assert (tmp_path / "a.txt").read_text() == "mine"
    assert (tmp_path / "a (1).txt").read_text() == "theirs"
    assert not (tmp_path / "a.txt.part").exists()


def test_destination_swapped_to_a_symlink_before_rename_is_not_followed(
        tmp_path: Path) -> None:
    """A symlink planted at the final name is left alone; nothing lands outside."""
    root, outside = tmp_path / "dl", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.txt.part").write_text("payload")
    (root / "a.txt").symlink_to(outside / "victim")
    with names.open_dir(str(root), (), create=False) as fd:
        assert names.publish(fd, "a.txt.part", "a.txt") == "a (1).txt"
    assert not (outside / "victim").exists()
    assert list(outside.iterdir()) == []


def test_part_file_swapped_to_a_symlink_is_refused(tmp_path: Path) -> None:
    """Opening a .part that became a symlink fails instead of writing through it."""
    root, outside = tmp_path / "dl", tmp_path / "outside.txt"
    root.mkdir()
    outside.write_text("keep")
    (root / "a.txt.part").symlink_to(outside)
    with names.open_dir(str(root), (), create=False) as fd, pytest.raises(OSError):
        names.open_part(fd, "a.txt.part")
    assert outside.read_text() == "keep"


def test_parent_folder_swapped_to_a_symlink_is_refused(tmp_path: Path) -> None:
    """A folder of a received tree replaced by a symlink to elsewhere: refused."""
    root, outside = tmp_path / "dl", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "tree").mkdir()
    (root / "tree" / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionError, match="link"), \
            names.open_dir(str(root), ("tree", "sub"), create=True):
        pass
    (root / "tree2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionError), names.open_dir(str(root), ("tree2", "x"), create=True):
        pass
    assert list(outside.iterdir()) == []


def test_unsafe_components_are_refused_by_open_dir(tmp_path: Path) -> None:
    """Even if a bad component slipped through, open_dir refuses `..` and separators."""
    for bad in ("..", "a/b", ""):
        with pytest.raises(PermissionError), names.open_dir(str(tmp_path), (bad,), create=True):
            pass
    assert sorted(os.listdir(tmp_path)) == []
