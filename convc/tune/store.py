"""The tuning cache on disk: chosen tiles by `tuning_key`, beside the code cache.

Stage: runtime support for `convc.tune`. One JSON file, ``tuning-<hash>.json``, in the code
cache's directory (`runtime.cache_dir`: ``$CONVC_CACHE_DIR``, default ``~/.cache/convc``;
none with ``CONVC_CACHE=0``), mapping each `tuning_key` to its tiles. The hash covers what
decides the best tiles besides the key: the CPU (triple, name, features), llvmlite, the
sources of the lowering, code generator, runtime and tuner, and the thread count. Keys
from every model tuned on this machine share the file, so a model whose layers were tuned
before (or the same model again) measures nothing.

Writes re-read the file, merge and replace it atomically; an unreadable or malformed file
reads as empty (a re-tune, never a crash), and an unwritable directory only costs a
re-tune next time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from convc.lower.registers import register_file
from convc.runtime import cache_dir
from convc.runtime.cache import sources_hash, write_atomic
from convc.runtime.llvm import cache_key_parts

SOURCES = ("loops", "codegen", "runtime", "lower", "tune")


def table_path(threads: int) -> Path | None:
    """The cache file for `threads` on this machine and register file (`register_file`),
    None when the cache is off."""
    directory = cache_dir()
    if directory is None:
        return None
    parts = (*cache_key_parts(), sources_hash(SOURCES), f"threads={threads}", register_file())
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return directory / f"tuning-{digest}.json"


def read_table(path: Path | None) -> dict:
    """{key: {axis: tile}} from `path`; empty when missing or malformed."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: tiles for key, tiles in data.items() if _valid_tiles(tiles)}


def _valid_tiles(tiles) -> bool:
    return isinstance(tiles, dict) and all(
        isinstance(axis, str) and isinstance(size, int) and size > 0 for axis, size in tiles.items()
    )


def write_table(path: Path | None, table: dict) -> None:
    """Merge `table` into the file at `path` (best effort, atomic replace)."""
    if path is None or not table:
        return
    merged = {**read_table(path), **table}
    write_atomic(path, json.dumps(merged, indent=1, sort_keys=True).encode())
