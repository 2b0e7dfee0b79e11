"""LocalSend protocol v2 messages, sans-IO: device info, file metadata, prepare-upload.

Every body from the network is checked here before anything uses it: types, lengths and
counts, so a bad peer gets a 400, never an exception deeper down.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = "2.1"
MULTICAST_GROUP = "224.0.0.167"
PORT = 53317
API = "/api/localsend/v2"
DEVICE_TYPES = ("mobile", "desktop", "web", "headless", "server")
MAX_BODY_BYTES = 1 << 20  # a JSON request or answer
MAX_FILES = 256  # files in one prepare-upload
MAX_ALIAS_CHARS = 64
MAX_NAME_CHARS = 1024  # a file name as sent (made safe later, at accept)
MAX_FIELD_CHARS = 256
MAX_FILE_BYTES = 1 << 50

_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{64}|[0-9A-Za-z_+/=-]{8,128}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class MessageError(ValueError):
    """A LocalSend body that cannot be used; the text says why (for a 400 and the log)."""


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = True,
          default: str = "") -> str:
    value = body.get(key)
    if value is None and not required:
        return default
    if not isinstance(value, str):
        raise MessageError(f"{key} must be a string")
    if len(value) > limit:
        raise MessageError(f"{key} longer than {limit} characters")
    return value


@dataclass(frozen=True)
class DeviceInfo:
    """A device as LocalSend describes itself (register, announce, prepare-upload info)."""

    alias: str
    fingerprint: str
    port: int = PORT
    protocol: str = "https"
    version: str = PROTOCOL_VERSION
    device_model: str | None = None
    device_type: str = "desktop"
    download: bool = False

    def to_json(self, *, announce: bool | None = None) -> dict[str, Any]:
        """The JSON object (the multicast form adds `announce`)."""
        body: dict[str, Any] = {
            "alias": self.alias, "version": self.version, "deviceModel": self.device_model,
            "deviceType": self.device_type, "fingerprint": self.fingerprint,
            "port": self.port, "protocol": self.protocol, "download": self.download}
        if announce is not None:
            body["announce"] = announce
        return body

    @classmethod
    def from_json(cls, body: object) -> DeviceInfo:
        """Check and read a device info object; raise MessageError."""
        if not isinstance(body, dict):
            raise MessageError("device info must be an object")
        fingerprint = _text(body, "fingerprint", 128)
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise MessageError("fingerprint is not a fingerprint")
        port = body.get("port", PORT)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise MessageError("port must be 1-65535")
        protocol = body.get("protocol", "https")
        if protocol not in ("http", "https"):
            raise MessageError("protocol must be http or https")
        device_type = body.get("deviceType") or "desktop"
        model = body.get("deviceModel")
        return cls(
            alias=_text(body, "alias", MAX_ALIAS_CHARS),
            fingerprint=fingerprint, port=port, protocol=protocol,
            version=_text(body, "version", 16, required=False, default="1.0"),
            device_model=model[:MAX_FIELD_CHARS] if isinstance(model, str) else None,
            device_type=device_type if device_type in DEVICE_TYPES else "desktop",
            download=body.get("download") is True)


@dataclass(frozen=True)
class FileMeta:
    """One file in a prepare-upload."""

    id: str
    file_name: str
    size: int
    file_type: str = "application/octet-stream"
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        body: dict[str, Any] = {"id": self.id, "fileName": self.file_name, "size": self.size,
                                "fileType": self.file_type}
        if self.sha256:
            body["sha256"] = self.sha256
        return body

    @classmethod
    def from_json(cls, key: str, body: object) -> FileMeta:
        """Check and read one file entry; raise MessageError."""
        if not isinstance(body, dict):
            raise MessageError("a file entry must be an object")
        file_id = _text(body, "id", MAX_FIELD_CHARS)
        if file_id != key or not file_id:
            raise MessageError("file id does not match its key")
        size = body.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise MessageError("file size must be a non-negative integer")
        sha = body.get("sha256")
        return cls(id=file_id, file_name=_text(body, "fileName", MAX_NAME_CHARS), size=size,
                   file_type=_text(body, "fileType", MAX_FIELD_CHARS, required=False,
                                   default="application/octet-stream"),
                   sha256=sha.lower() if isinstance(sha, str) and _HEX64.fullmatch(sha)
                   else None)


@dataclass(frozen=True)
class PrepareUpload:
    """`POST /prepare-upload`: who sends, and which files."""

    info: DeviceInfo
    files: tuple[FileMeta, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON body."""
        return {"info": self.info.to_json(), "files": {f.id: f.to_json() for f in self.files}}

    @classmethod
    def from_json(cls, body: object) -> PrepareUpload:
        """Check and read a prepare-upload body; raise MessageError."""
        if not isinstance(body, dict):
            raise MessageError("body must be an object")
        files = body.get("files")
        if not isinstance(files, dict) or not files:
            raise MessageError("files must be a non-empty object")
        if len(files) > MAX_FILES:
            raise MessageError(f"more than {MAX_FILES} files in one request")
        return cls(DeviceInfo.from_json(body.get("info")),
                   tuple(FileMeta.from_json(str(k), v) for k, v in files.items()))


@dataclass(frozen=True)
class UploadTicket:
    """The answer to a prepare-upload: the session and a token per accepted file."""

    session_id: str
    tokens: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The JSON body."""
        return {"sessionId": self.session_id, "files": dict(self.tokens)}

    @classmethod
    def from_json(cls, body: object) -> UploadTicket:
        """Check and read the answer; raise MessageError."""
        if not isinstance(body, dict):
            raise MessageError("answer must be an object")
        session = _text(body, "sessionId", MAX_FIELD_CHARS)
        files = body.get("files")
        if not isinstance(files, dict) or len(files) > MAX_FILES or not all(
                isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_FIELD_CHARS
                for k, v in files.items()):
            raise MessageError("files must map ids to tokens")
        return cls(session, dict(files))


def load(data: bytes) -> object:
    """Parse a JSON body within the size limit; raise MessageError."""
    if len(data) > MAX_BODY_BYTES:
        raise MessageError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None


def dump(body: dict[str, Any]) -> bytes:
    """A JSON body."""
    return json.dumps(body, ensure_ascii=False).encode()
