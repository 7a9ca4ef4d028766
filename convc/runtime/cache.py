"""Code caches: in memory (per process) and on disk (object code, across processes).

Stage: runtime. The key is the sha256 of (program hash, triple, CPU name, CPU features,
llvmlite version, code-generator version). The program hash covers the program's complete
text but not parameter values (code does not depend on them), so the same architecture with
new weights reuses its code; the code-generator version is a hash of convc's loops, codegen
and runtime sources, so changing the compiler invalidates old entries.

Disk layout: ``$CONVC_CACHE_DIR`` (default ``~/.cache/convc``), one ``<key>.o`` per
program: 32 bytes of sha256 over the rest, then each object file of the program (PIC, from
``TargetMachine.emit_object``; several when it was compiled in parallel parts) as an 8-byte
little-endian length and the bytes. Beside them, ``<key>.program`` files hold lowered
programs by graph (`convc.lowered`, `lowering_version`), the same checksum first. Files
are written atomically (temp file + rename) and checked on read, so a torn or corrupted
file is a miss, never a crash. A hit refreshes the file's time; past `MAX_ENTRIES` files
or `MAX_BYTES` in all the least recently used are deleted. ``CONVC_CACHE=0`` disables
the disk cache. `STATS` counts what happened, so tests can prove a hit skipped LLVM or
the lowering.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path

from ..loops import Program, program_hash
from .llvm import cache_key_parts

MAX_ENTRIES, MAX_BYTES = 256, 4 << 30
STATS = {
    "llvm_compiles": 0,
    "memory_hits": 0,
    "disk_hits": 0,
    "disk_writes": 0,
    "program_hits": 0,
    "program_writes": 0,
}
#: The suffixes of the two kinds of entries: object code, lowered programs.
OBJECTS, PROGRAM = "o", "program"


#: The convc package; its sources, and `ir`'s beside it, are hashed by path from its parent.
ROOT = Path(__file__).resolve().parent.parent


def _files_hash(paths) -> str:
    """Hash of source files, each named by its path from the directory holding convc."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT.parent)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def sources_hash(packages: tuple[str, ...]) -> str:
    """Hash of the sources of the named convc subpackages (``("loops", "codegen")``)."""
    return _files_hash(path for part in packages for path in (ROOT / part).glob("*.py"))


def code_version() -> str:
    """Hash of the sources that decide what code a program becomes."""
    return sources_hash(("loops", "codegen", "runtime"))


@functools.cache
def lowering_version() -> str:
    """Hash of every source that decides what program a graph becomes: all of convc and
    the `ir` package beside it (graph passes, shapes, lowering, schedules)."""
    return _files_hash([*ROOT.rglob("*.py"), *(ROOT.parent / "ir").rglob("*.py")])


def cache_key(program: Program) -> str:
    parts = (program_hash(program), *cache_key_parts(), code_version())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cache_dir() -> Path | None:
    """The on-disk cache directory, or None when ``CONVC_CACHE=0``."""
    if os.environ.get("CONVC_CACHE", "1") == "0":
        return None
    return Path(os.environ.get("CONVC_CACHE_DIR") or Path.home() / ".cache" / "convc")


def _pack(objects: list[bytes]) -> bytes:
    return b"".join(len(obj).to_bytes(8, "little") + obj for obj in objects)


def _unpack(payload: bytes) -> list[bytes]:
    objects, at = [], 0
    while at < len(payload):
        size = int.from_bytes(payload[at : at + 8], "little")
        objects.append(payload[at + 8 : at + 8 + size])
        at += 8 + size
    return objects


def disk_get(key: str) -> list[bytes] | None:
    payload = entry_get(key, OBJECTS)
    if payload is None:
        return None
    STATS["disk_hits"] += 1
    return _unpack(payload)


def entry_get(key: str, suffix: str) -> bytes | None:
    """The payload of entry ``<key>.<suffix>``, or None when it is missing, torn or corrupted
    (its checksum does not match) or the cache is off; a hit refreshes the entry's time."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{key}.{suffix}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest, payload = data[:32], data[32:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return payload


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file renamed over it (readers see the old
    file or the new one, never half of one); False when the directory is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def disk_put(key: str, objects: list[bytes]) -> None:
    """Best effort: an unwritable cache directory only costs a recompile next time."""
    if entry_put(key, OBJECTS, _pack(objects)):
        STATS["disk_writes"] += 1


def entry_put(key: str, suffix: str, payload: bytes) -> bool:
    """Write entry ``<key>.<suffix>`` (checksum, then `payload`), best effort: whether it
    was written (not with the cache off or its directory unwritable)."""
    directory = cache_dir()
    if directory is None:
        return False
    path = directory / f"{key}.{suffix}"
    if not write_atomic(path, hashlib.sha256(payload).digest() + payload):
        return False
    with contextlib.suppress(OSError):
        _evict(directory)
    return True


def _evict(directory: Path) -> None:
    """Delete the least recently used entries beyond `MAX_ENTRIES`, and beyond
    `MAX_BYTES` in all (a kept program holds its packed weights: ResNet-18's 47 MB)."""
    found = [*directory.glob(f"*.{OBJECTS}"), *directory.glob(f"*.{PROGRAM}")]
    stats = sorted(((path.stat(), path) for path in found), key=lambda sp: sp[0].st_mtime)
    count, total = len(stats), sum(stat.st_size for stat, _ in stats)
    for stat, path in stats:
        if count <= MAX_ENTRIES and total <= MAX_BYTES:
            break
        path.unlink(missing_ok=True)
        count, total = count - 1, total - stat.st_size
