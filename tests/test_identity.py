"""The node's identity: made once, then known at start without loading cryptography; a
changed key or certificate file is read again, never trusted from the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lanchat.identity import CERT_FILE, KEY_FILE, Identity, verify_proof


def test_a_second_start_knows_its_id_without_loading_cryptography(tmp_path: Path) -> None:
    """The first start makes key, certificate and the id cache; the next start (in a fresh
    interpreter) has the same id and loads `cryptography` only once it signs."""
    made = Identity.load_or_create(tmp_path)
    code = (
        "import sys; from pathlib import Path\n"
        "from lanchat.identity import Identity\n"
        f"i = Identity.load_or_create(Path({str(tmp_path)!r}))\n"
        "loaded = any(m.startswith('cryptography') for m in sys.modules)\n"
        "sig = i.sign(b'x')\n"
        "print(i.node_id, i.key_b64, loaded, sig)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == made.node_id and out[1] == made.key_b64
    assert out[2] == "False", "an idle start must not import cryptography"
    assert verify_proof(out[1], out[3], b"x") == made.node_id, "the lazily read key signs"


def test_a_replaced_key_is_read_again_not_taken_from_the_cache(tmp_path: Path) -> None:
    """Another identity's key and certificate copied into the home give that identity's id."""
    mine = Identity.load_or_create(tmp_path / "mine")
    other = Identity.load_or_create(tmp_path / "other")
    for name in (KEY_FILE, CERT_FILE):
        (tmp_path / "mine" / name).write_bytes((tmp_path / "other" / name).read_bytes())
    again = Identity.load_or_create(tmp_path / "mine")
    assert again.node_id == other.node_id != mine.node_id
    assert verify_proof(again.key_b64, again.sign(b"y"), b"y") == other.node_id


def test_an_idle_node_on_a_used_home_loads_no_crypto_or_hash_packages(tmp_path: Path) -> None:
    """What an idle node does not use stays unimported (RSS, start-up): cryptography until a
    key is read or checked, blake3 until a file moves, zeroconf with mDNS off. (The foreign
    peer kinds are off here: LocalSend's certificate and Bonjour chat's zeroconf load at
    their start today.)"""
    Identity.load_or_create(tmp_path)  # the first start made the key
    code = (
        "import sys, time; from pathlib import Path\n"
        "from lanchat.assembly import open_node\n"
        "from lanchat.config import Config\n"
        f"config = Config(home=Path({str(tmp_path)!r}), nick='idle', port=0,\n"
        "                interfaces=['127.0.0.1'], peers=[], mdns=False, beacon=False,\n"
        "                xmpp=False, localsend=False)\n"
        "node = open_node(config); node.start()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}\n"
        "             & {'cryptography', 'blake3', 'zeroconf', 'prompt_toolkit'}))\n"
        "node.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]", out
