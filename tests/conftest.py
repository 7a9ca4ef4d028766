"""Schedules under test are sized for AVX-512's register file on every machine
(CONVC_REGISTER_BLOCKS, inherited by the child processes some tests start), so the tests
that check a schedule's blocks hold everywhere; `test_register_files.py` checks the AVX2
limits by setting it to "avx2"."""

import os

os.environ["CONVC_REGISTER_BLOCKS"] = "avx512"
