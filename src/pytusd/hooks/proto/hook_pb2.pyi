from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HookRequest(_message.Message):
    __slots__ = ("type", "event")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    type: str
    event: Event
    def __init__(self, type: _Optional[str] = ..., event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("upload", "httpRequest")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    HTTPREQUEST_FIELD_NUMBER: _ClassVar[int]
    upload: FileInfo
    httpRequest: HTTPRequest
    def __init__(self, upload: _Optional[_Union[FileInfo, _Mapping]] = ..., httpRequest: _Optional[_Union[HTTPRequest, _Mapping]] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("id", "size", "sizeIsDeferred", "offset", "metaData", "isPartial", "isFinal", "partialUploads", "storage")
    class MetaDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StorageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZEISDEFERRED_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ISPARTIAL_FIELD_NUMBER: _ClassVar[int]
    ISFINAL_FIELD_NUMBER: _ClassVar[int]
    PARTIALUPLOADS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    size: int
    sizeIsDeferred: bool
    offset: int
    metaData: _containers.ScalarMap[str, str]
    isPartial: bool
    isFinal: bool
    partialUploads: _containers.RepeatedScalarFieldContainer[str]
    storage: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., size: _Optional[int] = ..., sizeIsDeferred: _Optional[bool] = ..., offset: _Optional[int] = ..., metaData: _Optional[_Mapping[str, str]] = ..., isPartial: _Optional[bool] = ..., isFinal: _Optional[bool] = ..., partialUploads: _Optional[_Iterable[str]] = ..., storage: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FileInfoChanges(_message.Message):
    __slots__ = ("id", "metaData", "storage")
    class MetaDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class StorageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    metaData: _containers.ScalarMap[str, str]
    storage: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., metaData: _Optional[_Mapping[str, str]] = ..., storage: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HTTPRequest(_message.Message):
    __slots__ = ("method", "uri", "remoteAddr", "header")
    class HeaderEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    REMOTEADDR_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    method: str
    uri: str
    remoteAddr: str
    header: _containers.ScalarMap[str, str]
    def __init__(self, method: _Optional[str] = ..., uri: _Optional[str] = ..., remoteAddr: _Optional[str] = ..., header: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HookResponse(_message.Message):
    __slots__ = ("httpResponse", "rejectUpload", "changeFileInfo", "stopUpload")
    HTTPRESPONSE_FIELD_NUMBER: _ClassVar[int]
    REJECTUPLOAD_FIELD_NUMBER: _ClassVar[int]
    CHANGEFILEINFO_FIELD_NUMBER: _ClassVar[int]
    STOPUPLOAD_FIELD_NUMBER: _ClassVar[int]
    httpResponse: HTTPResponse
    rejectUpload: bool
    changeFileInfo: FileInfoChanges
    stopUpload: bool
    def __init__(self, httpResponse: _Optional[_Union[HTTPResponse, _Mapping]] = ..., rejectUpload: _Optional[bool] = ..., changeFileInfo: _Optional[_Union[FileInfoChanges, _Mapping]] = ..., stopUpload: _Optional[bool] = ...) -> None: ...

class HTTPResponse(_message.Message):
    __slots__ = ("statusCode", "header", "body")
    class HeaderEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUSCODE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    statusCode: int
    header: _containers.ScalarMap[str, str]
    body: str
    def __init__(self, statusCode: _Optional[int] = ..., header: _Optional[_Mapping[str, str]] = ..., body: _Optional[str] = ...) -> None: ...
