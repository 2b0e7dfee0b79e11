"""The data channel: one TLS connection per transfer, owned by one thread, raw bytes.

Split by side: `wire` (frames, errors, progress), `hashing` (digests, hashing ahead),
`channel` (TLS over memory BIOs), `sender` (FileStreamer), `server` (the listener),
`receiver` (Receiver). This module
keeps the names the rest of the project and the tests import.

    S: hello   C: auth   C: file_request   S: file_start
    S: <bytes of file i from offset> S: file_end(i, digest)   ... for each file ...
    C: file_done(digest)

Both ends hash each file once (the sender ahead of time where it can: hashing.Prehasher);
on resume each hashes its prefix and the sender restarts at 0 if the receiver's prefix
differs. Nothing here runs on the node's loop.
"""

from __future__ import annotations

from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.hashing import hash_prefix, tree_hash
from lanchat.transfer.receiver import RECV_BUFFER_BYTES, Receiver, RecvItem, RecvJob, RecvOwner
from lanchat.transfer.sender import (
    SEND_CHUNK_BYTES,
    FileStreamer,
    SendJob,
    SendOwner,
)
from lanchat.transfer.server import MAX_STREAMS, DataServer
from lanchat.transfer.wire import (
    STALL_S,
    DataError,
    classify,
    expect,
    read_frame,
    write_frame,
)

__all__ = [
    "MAX_STREAMS", "RECV_BUFFER_BYTES", "SEND_CHUNK_BYTES", "STALL_S", "DataError",
    "DataServer", "FileStreamer", "Receiver", "RecvItem", "RecvJob", "RecvOwner", "SendJob",
    "SendOwner", "TlsChannel", "classify", "expect", "hash_prefix", "read_frame", "tree_hash",
    "write_frame",
]
