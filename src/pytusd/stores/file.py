"""Uploads on local disk: a data file and a tusd-compatible ``.info`` JSON file per upload.

The offset is the size of the data file, so it can never run ahead of the bytes on disk, also
after the process is killed. Writes go straight from the request chunk to the file descriptor in
the event loop: a write into the page cache costs microseconds, far less than a thread hop per
chunk. A :class:`DirectSource` is given the descriptor instead and writes itself (pytusd's serving
layer splices the body from the socket). Only ``fsync`` (which waits for the device) and bulk
copies run in a thread.

A pre-create hook's ``Storage.Path`` (tusd's filestore key) puts the data file elsewhere in the
directory as a hard link (see :meth:`FileStore._link`). Over 400 lines: paths, the info cache,
creation, writes and concatenation share the layout and its invariants, so they stay together.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from pytusd.fdio import MISSING, write_all
from pytusd.info import UploadInfo
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.stores.base import DataStore, DirectSource, InvalidStorage, StoreError, UploadExists, UploadNotFound
from pytusd.stores.perms import DEFAULT_DIR_PERMS, DEFAULT_FILE_PERMS, makedirs

INFO_SUFFIX = ".info"
#: Beside a data file (protocol.urls.RESERVED_ID_SUFFIXES keeps IDs from ending with either).
FINALS_SUFFIX = ".finals"
TEMP_DIR = ".pytusd-tmp"
READ_BLOCK = 1024 * 1024
INFO_CACHE_SIZE = 4096
CACHE_SETTLE_NS = 1_000_000_000
#: File names may be this long (Linux file systems; start() asks the one in use).
NAME_MAX = 255
LONGEST_SUFFIX = max(len(INFO_SUFFIX), len(FINALS_SUFFIX))


class FileStore(DataStore):
    features = frozenset({"termination", "concatenation", "creation-defer-length", "download"})

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        dir_perms: int = DEFAULT_DIR_PERMS,
        file_perms: int = DEFAULT_FILE_PERMS,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.fsync = fsync
        #: Modes of the directories and files of uploads (see pytusd.stores.perms: umask applies).
        self.dir_perms = dir_perms
        self.file_perms = file_perms
        self._temp = os.path.join(self.directory, TEMP_DIR)
        self._prefix = os.path.join(self.directory, "")
        self._name_max = NAME_MAX
        #: Parsed info files keyed by path; an entry is valid while (inode, mtime, size) match.
        self._info_cache: dict[str, tuple[tuple[int, int, int], UploadInfo]] = {}

    async def start(self) -> None:
        makedirs(self.directory, self.dir_perms)
        os.makedirs(self._temp, exist_ok=True)
        with contextlib.suppress(OSError, ValueError):
            self._name_max = os.pathconf(self.directory, "PC_NAME_MAX")
        # Staged chunks of a killed process never became part of an upload: drop them.
        for name in os.listdir(self._temp):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._temp, name))

    # -- paths ------------------------------------------------------------------------------

    def data_path(self, upload_id: str) -> str:
        """The data file of ``upload_id``; refuses any ID that could leave the directory."""
        if not is_valid_upload_id(upload_id) or any(
            len(segment) + LONGEST_SUFFIX > self._name_max for segment in upload_id.split("/")
        ):
            # A name the file system cannot hold (ENAMETOOLONG) is no upload either.
            raise UploadNotFound(upload_id)
        # A valid ID has no empty, '.' or '..' segment, no leading '/' and no name of ours (info,
        # lock or temporary files), so joining cannot leave the directory or alias our files; the
        # prefix check is a second line of defence, not the first.
        path = self._prefix + upload_id
        if not path.startswith(self._prefix):
            raise UploadNotFound(upload_id)
        return path

    def _chosen_path(self, info: UploadInfo) -> str | None:
        """Where a pre-create hook's ``Storage.Path`` puts the data (tusd's filestore key), or None.

        tusd takes any path; here it must stay inside the directory and obey the rules of IDs
        (relative, or absolute below the directory), so it can never reach or alias our files.
        """
        wanted = info.storage.get("Path", "")
        if not wanted:
            return None
        relative = wanted
        if os.path.isabs(wanted):
            normal = os.path.normpath(wanted)
            if not normal.startswith(self._prefix):
                raise InvalidStorage("Storage.Path must be inside the upload directory")
            relative = normal[len(self._prefix) :]
        try:
            path = self.data_path(relative)
        except UploadNotFound:
            raise InvalidStorage("Storage.Path must name a file inside the upload directory, as an ID would") from None
        return None if path == self.data_path(info.id) else path

    def lock_target(self, upload_id: str) -> str | None:
        """The file a :class:`~pytusd.locks.file.FileLocker` locks for ``upload_id``: its data file.

        ``None`` for an ID that cannot name an upload here. Locking a file that exists anyway keeps
        the locker from creating (and the directory from collecting) a lock file per upload.
        """
        try:
            return self.data_path(upload_id)
        except UploadNotFound:
            return None

    def _temp_path(self) -> str:
        return os.path.join(self._temp, secrets.token_hex(12) + ".tmp")

    # -- info -------------------------------------------------------------------------------

    def _write_info(self, info: UploadInfo) -> None:
        """Atomically replace the info file: a reader sees the old or the new, never half."""
        path = self.data_path(info.id) + INFO_SUFFIX
        temp = self._temp_path()
        data = json.dumps(info.to_json(), separators=(",", ":")).encode()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
        try:
            try:
                write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(*MISSING):  # a full disk must not also collect temporary files
                os.unlink(temp)
            raise
        if self.fsync:
            self._fsync_dir(os.path.dirname(path))

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_info(self, upload_id: str) -> UploadInfo:
        """Info with the offset from the data file; the parsed info is cached per file version.

        Info files are only ever replaced by rename, so a new version has a new inode: a stat
        tells whether the cached copy is current, and saves an open, a read and a JSON parse.
        """
        path = self.data_path(upload_id)
        info_path = path + INFO_SUFFIX
        try:
            st = os.stat(info_path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._info_cache.get(info_path)
            if cached is not None and cached[0] == key:
                info = cached[1].copy()
            else:
                fd = os.open(info_path, os.O_RDONLY)
                try:
                    raw = os.read(fd, st.st_size + 1)
                finally:
                    os.close(fd)
                try:
                    parsed = UploadInfo.from_json(json.loads(raw))
                except (ValueError, KeyError, TypeError) as exc:
                    raise StoreError(f"corrupt info file for upload {upload_id}") from exc
                # A file changed within the last second may be replaced again within the same mtime
                # tick, by a file that reuses the inode and has the same size: cache only settled ones.
                if time.time_ns() - st.st_mtime_ns > CACHE_SETTLE_NS:
                    if len(self._info_cache) >= INFO_CACHE_SIZE:
                        self._info_cache.pop(next(iter(self._info_cache)))
                    self._info_cache[info_path] = (key, parsed)
                info = parsed.copy()
            size = os.stat(path).st_size
        except MISSING:
            raise UploadNotFound(upload_id) from None
        info.id = upload_id
        info.offset = size
        if info.is_partial:
            info.pending_finals += self._read_finals(path, info.pending_finals)
        return info

    def _read_finals(self, path: str, known: list[str]) -> list[str]:
        """Finals waiting for a partial, from its append-only ``.finals`` file."""
        try:
            with open(path + FINALS_SUFFIX, encoding="utf-8") as f:
                lines = f.read().split()
        except MISSING:
            return []
        # A line cut short by a full disk names no upload: skip it.
        return [f for f in dict.fromkeys(lines) if f not in known and is_valid_upload_id(f)]

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        """One ``O_APPEND`` write of a line: atomic, and it leaves the info file alone, so a
        declared length written concurrently under the partial's lock is never undone."""
        path = self.data_path(partial_id)
        if not os.path.exists(path):
            raise UploadNotFound(partial_id)
        fd = os.open(path + FINALS_SUFFIX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_perms)
        try:
            os.write(fd, (final_id + "\n").encode())
            if self.fsync:
                await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)

    # -- contract ---------------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        """Write the info file (exclusively: it decides whether the ID is taken), then the data file.

        The info is written in place rather than renamed in: nobody knows the ID before this
        returns, and an upload only exists once its data file does, so a reader never acts on a
        half-written info file, and a crash in between leaves no upload behind.
        """
        path = self.data_path(info.id)
        chosen = self._chosen_path(info)
        if "/" in info.id:
            try:
                makedirs(os.path.dirname(path), self.dir_perms)
            except (FileExistsError, NotADirectoryError):
                # IDs nest as directories: "x/y" cannot be made below an upload "x".
                raise UploadExists(info.id) from None
        info.offset = 0
        # As tusd: the .info stays at the ID (so the upload is found by it), Path names the data.
        storage = {**info.storage, "Type": "filestore", "Path": chosen or path, "InfoPath": path + INFO_SUFFIX}
        info.storage = storage
        data = json.dumps(info.to_json(), separators=(",", ":")).encode()
        try:
            fd = os.open(path + INFO_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
        except FileExistsError:
            raise UploadExists(info.id) from None
        try:
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
            except FileExistsError:
                # Uploads "x/..." exist: "x" cannot be one too; or "x" is another upload's Path.
                if os.path.isdir(path) or os.stat(path).st_nlink > 1:
                    raise UploadExists(info.id) from None
                # A stray data file without info (a crash between the two steps of an earlier create).
                fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.close(fd)
            if chosen is not None:
                self._link(path, chosen)
            if self.fsync:
                await asyncio.to_thread(self._sync_new, path)
        except BaseException:
            # A full disk (or any failure) leaves nothing half-made: an empty info file would
            # later read as a corrupt upload, and one would leak per failed creation.
            with contextlib.suppress(*MISSING):
                os.unlink(path + INFO_SUFFIX)
            raise
        return info

    def _link(self, path: str, chosen: str) -> None:
        """A hard link at the hook's Path: the data is there, while every call still finds it by ID
        (no lookup per request), and a name that is taken is never overwritten."""
        try:
            makedirs(os.path.dirname(chosen), self.dir_perms)
            os.link(path, chosen)
        except (FileExistsError, NotADirectoryError):
            os.unlink(path)
            raise InvalidStorage("Storage.Path names a file that exists", 409) from None
        except BaseException:
            os.unlink(path)
            raise

    def _unlink_chosen(self, path: str, info: UploadInfo | None) -> None:
        """Remove the Path link of an upload, if it is still ours (the same file as the ID's)."""
        chosen = (info.storage.get("Path", "") if info else "") or path
        if chosen != path and chosen.startswith(self._prefix):
            with contextlib.suppress(OSError):
                if os.path.samefile(chosen, path):
                    os.unlink(chosen)

    def _sync_new(self, path: str) -> None:
        for name in (path + INFO_SUFFIX, path):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._fsync_dir(os.path.dirname(path))

    async def get_info(self, upload_id: str) -> UploadInfo:
        return self._read_info(upload_id)

    async def update_info(self, info: UploadInfo) -> None:
        if not os.path.exists(self.data_path(info.id)):
            raise UploadNotFound(info.id)
        if self.fsync:
            await asyncio.to_thread(self._write_info, info)
        else:
            self._write_info(info)

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        path = self.data_path(upload_id)
        if all_or_nothing:
            return await self._write_staged(path, offset, source)
        try:
            fd = os.open(path, os.O_WRONLY)
        except MISSING:
            raise UploadNotFound(upload_id) from None
        written = 0
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            try:
                if isinstance(source, DirectSource):
                    written = await source.write_into(fd)
                else:
                    async for chunk in source:
                        written += write_all(fd, chunk)
            finally:
                # Bytes received before an error are kept (and synced): the client resumes after them.
                if self.fsync:
                    await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return written

    async def _write_staged(self, path: str, offset: int, source: AsyncIterable[bytes]) -> int:
        """Receive into a temporary file; append it only once the source ended without error."""
        temp = self._temp_path()
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = 0
            async for chunk in source:
                written += write_all(fd, chunk)
            await asyncio.to_thread(self._append_from, fd, written, path, offset)
            return written
        finally:
            os.close(fd)
            with contextlib.suppress(*MISSING):
                os.unlink(temp)

    def _append_from(self, src_fd: int, length: int, path: str, offset: int) -> None:
        try:
            dst_fd = os.open(path, os.O_WRONLY)
        except MISSING:
            raise UploadNotFound(os.path.basename(path)) from None
        try:
            _copy_range(src_fd, 0, dst_fd, offset, length)
            if self.fsync:
                os.fsync(dst_fd)
        except BaseException:
            # All or nothing, also when the disk fills up halfway (shrinking needs no space).
            os.ftruncate(dst_fd, offset)
            raise
        finally:
            os.close(dst_fd)

    async def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.data_path(upload_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except MISSING:
            raise UploadNotFound(upload_id) from None
        try:
            if end is None:
                end = os.fstat(fd).st_size
            position = start
            while position < end:
                block = await asyncio.to_thread(os.pread, fd, min(READ_BLOCK, end - position), position)
                if not block:
                    break
                position += len(block)
                yield block
        finally:
            os.close(fd)

    async def terminate(self, upload_id: str) -> None:
        path = self.data_path(upload_id)
        info = None
        with contextlib.suppress(StoreError):
            info = self._read_info(upload_id)
        self._unlink_chosen(path, info)
        self._info_cache.pop(path + INFO_SUFFIX, None)
        try:
            os.unlink(path + INFO_SUFFIX)
        except MISSING:
            raise UploadNotFound(upload_id) from None
        with contextlib.suppress(*MISSING):
            os.unlink(path)
        with contextlib.suppress(*MISSING):
            os.unlink(path + FINALS_SUFFIX)

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        path = self.data_path(final.id)
        chosen = final.storage.get("Path", "") or path
        await asyncio.to_thread(self._concatenate, final.id, [p.id for p in partials])
        if chosen != path and chosen.startswith(self._prefix):
            # The final's bytes replaced its data file: the Path link must name the new one.
            with contextlib.suppress(*MISSING):
                os.unlink(chosen)
            os.link(path, chosen)

    def _concatenate(self, final_id: str, partial_ids: list[str]) -> None:
        temp = self._temp_path()
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_perms)
        try:
            position = 0
            for pid in partial_ids:
                src = os.open(self.data_path(pid), os.O_RDONLY)
                try:
                    length = os.fstat(src).st_size
                    _copy_range(src, 0, out, position, length)
                    position += length
                finally:
                    os.close(src)
            if self.fsync:
                os.fsync(out)
            os.close(out)
            out = -1
            os.replace(temp, self.data_path(final_id))  # the final's bytes appear whole, or not at all
        except BaseException:
            if out >= 0:
                os.close(out)
            with contextlib.suppress(*MISSING):
                os.unlink(temp)
            raise

    async def list_uploads(self) -> AsyncIterator[str]:
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = [d for d in dirs if d != TEMP_DIR]
            for name in files:
                if name.endswith(INFO_SUFFIX):
                    rel = os.path.relpath(os.path.join(root, name[: -len(INFO_SUFFIX)]), self.directory)
                    yield rel.replace(os.sep, "/")

    async def last_write_time(self, upload_id: str) -> float:
        try:
            return os.stat(self.data_path(upload_id)).st_mtime
        except MISSING:
            raise UploadNotFound(upload_id) from None


def _copy_range(src: int, src_offset: int, dst: int, dst_offset: int, length: int) -> None:
    """Copy inside the kernel where it can (copy_file_range), else through a buffer."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, src_offset + done, dst_offset + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = 0
        if n == 0:
            block = os.pread(src, min(READ_BLOCK, length - done), src_offset + done)
            if not block:
                raise StoreError("source shorter than expected while copying")
            n = os.pwrite(dst, block, dst_offset + done)
        done += n
