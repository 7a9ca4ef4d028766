"""Register-block limits for this machine's vector register file.

Stage: a parameter of the default schedules (`schedule`, `grad_schedule`). A conv's or
dense layer's register block keeps its accumulators in vector registers, so how large
a block can be depends on the machine: AVX-512 has 32 registers of 16 floats, AVX2 16 of
8. Loop IR vectors stay 16 or 32 floats wide on both (LLVM splits a `<16 x float>` into
two AVX2 registers), but a block sized for AVX-512 holds twice its registers in
accumulators on AVX2 and spills: 3x3 64->64 @56 in blocks of 10 columns x 32 channels
(40 AVX2 registers of accumulators) ran at 28 GFLOP/s of a 100 peak on a Zen 3.

`register_file()` names the register file schedules are sized for: this machine's
(`runtime.llvm.vector_registers`, part of every cache key), or the one named by
CONVC_REGISTER_BLOCKS ("avx512" or "avx2"), so one machine can show, test and run the
schedules of the other (compiled for the host either way: only the blocks change).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from convc.runtime.llvm import vector_registers
from ir.errors import InputError


@dataclass(frozen=True)
class RegisterBlocks:
    """The limits `schedule` documents at the constants of the same names.

    `wide_tile`: channels a vector when they come in multiples of it (32, or 16: no
    wider tile); `max_row`: widest row taken as one register block (MAX_ROW_BLOCK), and
    `blocked_max_row` the same for a kernel reading a channel-blocked value;
    `min_column`/`max_column`: column blocks of a split row at 16 channels a vector,
    `wide_max_column` at `wide_tile`; `pointwise`: longest block of a 1x1 conv over NCHW
    rows, by vector width (POINTWISE_BLOCKS); `channel_blocks`: output-channel blocks of a
    width-vector conv (CHANNEL_BLOCKS); `pointwise_width`: its vector for 1x1 convs
    (POINTWISE_WIDTH); `dense_width`/`dense_rows`: a dense layer's feature vector and rows
    (DENSE_WIDTH, ROW_BLOCK); `accumulators`: registers a tuner's block may fill
    (MAX_ACCUMULATORS); `border_columns`: fewest columns of a border block of a row split
    around a loop over blocks (`nest.channel_vectors._wide_borders`); `lanes`: floats a register;
    `taps_unrolled`: a conv's innermost window taps run unrolled as well as its outer
    ones (`nest.reduction._unrolled_taps`), inside the lanes loop of a channel-blocked input;
    `input_blocks`: deep convs
    over narrow model inputs read a channel-blocked copy (`input_blocks`)."""

    wide_tile: int
    max_row: int
    blocked_max_row: int
    min_column: int
    max_column: int
    wide_max_column: int
    pointwise: dict
    channel_blocks: tuple[int, ...]
    pointwise_width: int
    dense_width: int
    dense_rows: int
    accumulators: int
    border_columns: int
    lanes: int
    taps_unrolled: bool
    input_blocks: bool


#: The register files schedules know, by name, and the variable that picks one.
REGISTER_FILES, ENV = ("avx512", "avx2"), "CONVC_REGISTER_BLOCKS"


def register_file() -> str:
    """The register file schedules are sized for: "avx512" on a machine with 32 vector
    registers, else "avx2", unless CONVC_REGISTER_BLOCKS names one."""
    named = os.environ.get(ENV)
    if named:
        if named not in REGISTER_FILES:
            raise InputError(f"{ENV}={named!r}: expected one of {', '.join(REGISTER_FILES)}")
        return named
    return "avx512" if vector_registers()[0] >= 32 else "avx2"
