"""The description of one upload, shared by stores, the handler and hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class UploadInfo:
    """What a store knows about an upload (tusd's FileInfo, field for field, plus a few).

    ``size`` is None while the length is deferred. ``offset`` is reported by the store from the
    data it actually holds, never from a counter that could run ahead of the data.
    """

    id: str
    size: int | None = None
    offset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: list[str] = field(default_factory=list)
    storage: dict[str, str] = field(default_factory=dict)
    #: Unix time of creation; expiration counts from the last write (see stores).
    created_at: float = 0.0
    #: Final uploads waiting for this partial to finish (concatenation-unfinished).
    pending_finals: list[str] = field(default_factory=list)
    #: Length an IETF draft client announced while ``size`` stays open: from interop version 7 an
    #: upload is complete only when a request says so, even if its offset reached this length.
    declared_length: int | None = None
    #: A final upload's ``Upload-Concat`` as received (validated), for HEAD; None for uploads stored
    #: before it was kept, whose header is rebuilt from ``partial_uploads``.
    upload_concat: str | None = None

    @property
    def size_is_deferred(self) -> bool:
        return self.size is None

    @property
    def is_complete(self) -> bool:
        return self.size is not None and self.offset == self.size

    def copy(self) -> UploadInfo:
        """A copy whose lists and dicts can be changed without touching this one."""
        return UploadInfo(
            self.id,
            self.size,
            self.offset,
            dict(self.metadata),
            self.is_partial,
            self.is_final,
            list(self.partial_uploads),
            dict(self.storage),
            self.created_at,
            list(self.pending_finals),
            self.declared_length,
            self.upload_concat,
        )

    def to_json(self) -> dict[str, Any]:
        """tusd's ``.info`` JSON, so a tusd data directory and ours read alike."""
        return {
            "ID": self.id,
            "Size": self.size if self.size is not None else 0,
            "SizeIsDeferred": self.size is None,
            "Offset": self.offset,
            "MetaData": dict(self.metadata),
            "IsPartial": self.is_partial,
            "IsFinal": self.is_final,
            "PartialUploads": list(self.partial_uploads) if self.is_final else None,
            "Storage": dict(self.storage),
            "CreatedAt": self.created_at,
            "PendingFinals": list(self.pending_finals),
            "DeclaredLength": self.declared_length,
            "UploadConcat": self.upload_concat,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadInfo:
        deferred = bool(data.get("SizeIsDeferred"))
        return cls(
            id=str(data["ID"]),
            size=None if deferred else int(data.get("Size") or 0),
            offset=int(data.get("Offset") or 0),
            metadata={str(k): str(v) for k, v in (data.get("MetaData") or {}).items()},
            is_partial=bool(data.get("IsPartial")),
            is_final=bool(data.get("IsFinal")),
            partial_uploads=[str(p) for p in data.get("PartialUploads") or []],
            storage={str(k): str(v) for k, v in (data.get("Storage") or {}).items()},
            created_at=float(data.get("CreatedAt") or 0.0),
            pending_finals=[str(p) for p in data.get("PendingFinals") or []],
            declared_length=None if data.get("DeclaredLength") is None else int(data["DeclaredLength"]),
            upload_concat=data["UploadConcat"] if isinstance(data.get("UploadConcat"), str) else None,
        )
