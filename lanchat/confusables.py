"""The TR 39 prototype of each confusable character, from the maintained
`confusable-homoglyphs` table, kept small in memory.

Importing the package's `confusables` module parses its whole data file (900 KB: every
entry with its Unicode name) into ~8 MiB of dicts that stay alive as a module global, and
pulls in `urllib.request`; a node needs only the ~6,300 (character -> prototype) pairs.
So the pairs are derived from the package's data file with the names dropped as it is
parsed, and kept in the user cache folder (`confusables-<package version>-<format>.txt`);
later starts read that small file (~1 MiB in memory in all). The file's first line names
the data file it came from (size and time), the number of pairs and their SHA-256: a
cache file that cannot be read, is damaged or cut short, or came from another data file is
derived again; one that cannot be written is not kept (the table is still right).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APP_NAME = "lanchat"
CACHE_FORMAT = 1  # bump when the derivation below changes
PACKAGE = "confusable_homoglyphs"
DATA_FILE = "confusables.json"
DATA_ENV = "CONFUSABLE_DATA"  # the package's own override of its data folder
SEPARATOR = "\x00"
MAX_CACHE_BYTES = 1 << 20  # the table is ~45 KB; anything far larger is not ours
_MARKS = str.maketrans("", "", "\u200e\u200f")  # the table wraps RTL glyphs in LRM/RLM


def prototypes() -> dict[str, str]:
    """Map each confusable character to its prototype (TR 39 confusables.txt).

    The package keeps the table both ways (a prototype lists its look-alikes, each
    look-alike lists its prototype); the prototype of a class is the entry that lists
    the others. A pair that only list each other gets the smaller of the two.
    """
    path = _cache_path()
    source = _source()
    if path is not None:
        try:
            return _read(path, source)
        except (OSError, ValueError, UnicodeDecodeError):
            pass
    flat = _derive()
    if path is not None:
        _keep(path, _header(source, flat) + flat)
    return _parse(flat)


def _source() -> str:
    """The data file the table is derived from, as its size and time (a new package
    version, or the package's CONFUSABLE_DATA pointing elsewhere, derive it again)."""
    try:
        st = _data_file().stat()
    except OSError:
        return "?"
    return f"{st.st_size}-{st.st_mtime_ns}"


def _header(source: str, flat: str) -> str:
    digest = hashlib.sha256(flat.encode("utf-8")).hexdigest()
    return f"{CACHE_FORMAT} {source} {flat.count(SEPARATOR) + 1} {digest}\n"


def _read(path: Path, source: str) -> dict[str, str]:
    """The cached table if it is whole and derived from this data file, else ValueError."""
    if path.stat().st_size > MAX_CACHE_BYTES:
        raise ValueError("cache file too large")
    text = path.read_text("utf-8")
    header, _, flat = text.partition("\n")
    if header + "\n" != _header(source, flat):
        raise ValueError("cache file from another data file, or damaged")
    return _parse(flat)


def _parse(flat: str) -> dict[str, str]:
    table = {}
    for pair in flat.split(SEPARATOR):
        if len(pair) < 2:
            raise ValueError("not a table of character pairs")
        table[pair[0]] = pair[1:]
    return table


def _data_file() -> Path:
    import confusable_homoglyphs

    folder = os.environ.get(DATA_ENV) or os.path.dirname(confusable_homoglyphs.__file__)
    return Path(folder) / DATA_FILE


def _glyph(entry: dict[str, Any]) -> Any:
    """An entry {"c": glyph, "n": its Unicode name} becomes its glyph, as it is parsed."""
    return entry["c"] if len(entry) == 2 and "c" in entry and "n" in entry else entry


def _derive() -> str:
    """The pairs, one string: each a character and its prototype, SEPARATOR between."""
    data = json.loads(_data_file().read_text("utf-8"), object_hook=_glyph)
    table = {str(k).translate(_MARKS): [str(c).translate(_MARKS) for c in v]
             for k, v in data.items()}
    del data
    pairs = []
    for char, others in table.items():
        if len(char) != 1 or len(others) != 1:
            continue  # a prototype (it lists several look-alikes) maps to itself
        proto = others[0]
        if len(table.get(proto, [])) > 1 or len(proto) > 1 or proto < char:
            pairs.append(char + proto)
    return SEPARATOR.join(pairs)


def _cache_path() -> Path | None:
    try:
        import confusable_homoglyphs
        import platformdirs

        version = str(confusable_homoglyphs.__version__)
        return platformdirs.user_cache_path(APP_NAME) / (
            f"confusables-{version}-{CACHE_FORMAT}.txt")
    except Exception:  # noqa: BLE001 - no cache: derive each time
        return None


def _keep(path: Path, flat: str) -> None:
    from lanchat.home import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, flat.encode("utf-8"))
    except OSError as exc:
        log.info("confusables table not cached at %s: %s", path, exc)
