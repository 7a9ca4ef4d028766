"""Schedules under test are sized for AVX-512's register file on every machine
(CONVC_REGISTER_BLOCKS, inherited by the child processes some tests start), so the tests
that check a schedule's blocks hold everywhere; `test_register_files.py` checks the AVX2
limits by setting it to "avx2".

The caches on disk (code, and lowered programs by graph: `convc.lowered`) go to a
directory of this test session's own: some tests patch a schedule's constants and
compile, and a program kept from another session, or kept for the user, must not stand
in for the one they lower."""

import atexit
import os
import shutil
import tempfile

os.environ["CONVC_REGISTER_BLOCKS"] = "avx512"
_CACHE_DIR = tempfile.mkdtemp(prefix="convc-test-cache-")
os.environ["CONVC_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
