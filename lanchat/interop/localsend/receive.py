"""Writing a LocalSend upload by lanchat's rules: only for an accepted transfer, into the
name reserved at accept (`<name>.part` first, in a folder opened without following links),
exactly the offered size, hashed as it arrives, checked against the offered SHA-256 when
the sender gave one, fsynced, then published under a name that never overwrites."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

from lanchat.transfer import names
from lanchat.transfer.receiver import RecvJob, RecvOwner, local_error
from lanchat.transfer.wire import DataError, Throttle

READ_BYTES = 1 << 20


def write_upload(job: RecvJob, owner: RecvOwner, body: BinaryIO, length: int) -> str:
    """Receive the job's one file from `body` (`length` bytes); return its SHA-256.
    Raises DataError (never resumable: LocalSend cannot resume); the .part is removed."""
    item = job.items[0]
    if length != item.size:
        raise DataError(f"upload of {length} bytes for a file offered as {item.size}",
                        resumable=False)
    parent, leaf = item.dest[:-1], item.dest[-1]
    part = leaf + names.PART_SUFFIX
    progress = Throttle(lambda n: owner.progress(job, n))
    try:
        with names.open_dir(job.root, parent, create=True) as dir_fd:
            if not owner.wanted(job.transfer, job.generation):
                raise DataError("cancelled", resumable=False)
            fd = names.open_part(dir_fd, part)
            try:
                os.ftruncate(fd, 0)
                sha = _copy(job, owner, body, fd, item.size, progress)
                if item.digest and sha != item.digest or job.offer_sha and sha != job.offer_sha:
                    raise DataError("file does not match the offered SHA-256", resumable=False)
                os.fsync(fd)
            except BaseException:
                _unlink(dir_fd, part)
                raise
            finally:
                os.close(fd)
            final = names.publish(dir_fd, part, leaf)
    except DataError:
        raise
    except OSError as exc:
        raise local_error(exc, "the file") from exc
    progress(item.size, True)
    owner.file_complete(job, 0, final, sha)
    return sha


def _copy(job: RecvJob, owner: RecvOwner, body: BinaryIO, fd: int, size: int,
          progress: Throttle) -> str:
    h = hashlib.sha256()
    done = 0
    while done < size:
        if not owner.wanted(job.transfer, job.generation):
            raise DataError("cancelled", resumable=False)
        try:
            chunk = body.read(min(READ_BYTES, size - done))
        except OSError as exc:
            raise DataError(f"sender's connection failed: {exc}", resumable=False) from None
        if not chunk:
            raise DataError(f"sender stopped after {done} of {size} bytes", resumable=False)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        h.update(chunk)
        done += len(chunk)
        progress(done)
    return h.hexdigest()


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
