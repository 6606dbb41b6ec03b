"""File helpers shared by every stage: durable atomic writes, output-location checks, folder locks, hashes.

Every output is written under a temporary name beside its target (``.<name>.<8 random chars>.part``), flushed
to disk, renamed onto the target, and the folder flushed after the rename: a crash or a power loss leaves the
old file or the new one, never an empty or half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fcn_deploy.errors import InputError

TEMP_SUFFIX = ".part"
# mkstemp's random part: 8 characters of [a-z0-9_]; together with the leading dot this is our naming only
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")
LOCK_NAME = ".fcn-deploy.lock"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; flush it and rename it onto ``target`` only if the block succeeds.

    A crash, an exception or Ctrl-C leaves no half-written ``target`` behind; the file is fsync'd before the
    rename and its folder after it, so the rename survives a power loss.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a normal file respects the umask
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's contents to disk (folders: their entries, i.e. renames)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder; the file itself was flushed
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _current_umask() -> int:
    """The process umask (reading it means setting it, so it is restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file, an fsync and a rename."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` through a temporary file, an fsync and a rename."""
    write_bytes_atomic(target, text.encode("utf-8"))


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file ``atomic_path`` makes (``.mask.png.k3j_x9q2.part``)."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(folder: str | os.PathLike[str], recursive: bool = True, target_name: str | None = None) -> int:
    """Delete temporary files and folders of our own naming left in ``folder`` by a killed run; returns how many.

    ``target_name`` limits it to the temporaries of one target (``summary.json``). Links are never followed.
    """
    removed = 0
    for root, dirs, files in os.walk(folder):
        stale = [name for name in (*files, *dirs)
                 if is_temp_name(name) and (target_name is None or name.startswith(f".{target_name}."))]
        for name in stale:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed += 1
        dirs[:] = [name for name in dirs if name not in stale]
        if not recursive:
            break
    return removed


# --- output locations -------------------------------------------------------------------------------


def _blocking_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (so nothing can be created under it)."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """InputError unless ``path`` can be written as a file: not a folder, and no regular file above it."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder, not a file",
                         f"pass a file path for {option} (a file name inside {path}, for instance)")
    blocker = _blocking_ancestor(path)
    if blocker is not None:
        raise InputError(f"{option} {path} cannot be written: {blocker} is a file, not a folder",
                         f"pass a path whose folders are folders, or move {blocker} away")
    return path


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """InputError unless ``path`` is or can become a folder: not a file, and no regular file above it."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise InputError(f"{option} {path} exists and is not a folder", f"pass a folder for {option}")
    blocker = _blocking_ancestor(path)
    if blocker is not None:
        raise InputError(f"{option} {path} cannot be created: {blocker} is a file, not a folder",
                         f"pass a folder path whose parents are folders, or move {blocker} away")
    return path


# --- outputs never replace inputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A path a command reads or writes, named as its user knows it ('--json', 'the model's sidecar').

    ``whole``: for an input, a folder every file of which the command reads; for an output, a folder the command
    replaces as a whole (what was inside is deleted).
    """

    what: str
    path: Path
    whole: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


def _real(path: Path) -> Path:
    """``path`` absolute, with every link on the way resolved (the part that does not exist yet kept as written)."""
    return Path(os.path.realpath(path))


def _inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, following links; None when nothing is there."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs_apart(outputs: Iterable[Place], inputs: Iterable[Place]) -> None:
    """InputError unless every output leaves every input intact; each command calls it before any work.

    An output is refused when it is an input (the same path, written relatively or through links, or a hard
    link to the same file), when it is an existing file inside an input folder read as a whole, or when it is a
    folder replaced as a whole that holds an input. An input that does not exist has nothing to lose.
    """
    present = [place for place in inputs if os.path.lexists(place.path)]
    by_path = {_real(place.path): place for place in present}
    by_inode = {inode: place for place in present if (inode := _inode(place.path)) is not None}
    folders = {path: place for path, place in by_path.items() if place.whole}
    for output in outputs:
        real, inode = _real(output.path), _inode(output.path)
        same = by_path.get(real) or (by_inode.get(inode) if inode is not None else None)
        if same is not None:
            problem = f"is {same.what} ({same.path})"
        elif inode is not None and not real.is_dir() and (within := _first(folders, real.parents)) is not None:
            problem = f"is a file in {within.what} ({within.path})"
        elif output.whole and (held := _first(by_path, (p for p in by_path if real in p.parents))) is not None:
            problem = f"would be replaced as a whole, and it holds {held.what} ({held.path})"
        else:
            continue
        raise InputError(f"{output.what} {output.path} {problem}, which this command reads",
                         f"choose another path for {output.what}: a command never writes over what it reads")


def _first(places: dict[Path, Place], paths: Iterable[Path]) -> Place | None:
    """The place of the first of ``paths`` that ``places`` holds."""
    return next((places[path] for path in paths if path in places), None)


# --- folder locks --------------------------------------------------------------------------------------


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], wait: bool = False, poll_seconds: float = 0.2) -> Iterator[Path]:
    """Hold an advisory lock on ``folder`` (its file ``.fcn-deploy.lock``) for one run writing into it.

    Another holder makes this raise InputError, or with ``wait`` block until it is gone. The lock file is
    removed on release; a waiter that locked a removed file tries again.
    """
    import fcntl  # POSIX only; imported here so that the module loads anywhere

    path = Path(folder) / LOCK_NAME
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            if not wait:
                raise InputError(
                    f"another fcn-deploy run{holder} is writing into {folder}",
                    "wait for it to finish, or pass --wait to start when it is done; two runs would duplicate the work",
                ) from None
            if not announced:
                from fcn_deploy.progress import log

                log(f"waiting for another fcn-deploy run{holder} writing into {folder}...")
                announced = True
            time.sleep(poll_seconds)
            continue
        if _same_file(fd, path):
            break
        os.close(fd)  # we locked a lock file that its holder removed on release: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _read_holder(fd: int) -> str:
    """' (pid N)' from a lock file, or '' when it holds no pid."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text:
            return f" (pid {int(text)})"
    return ""


def _same_file(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd``."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
