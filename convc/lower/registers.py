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
`blocks()` returns that file's limits: AVX-512's are the constants below, each with what
measured it, and `AVX2_BLOCKS` holds AVX2's. `channel_block` gives the channel block of
the blocked layouts, which follows the register file's widest channel tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sympy

from convc.runtime.llvm import vector_registers
from ir.errors import InputError


@dataclass(frozen=True)
class RegisterBlocks:
    """The limits documented at the constants of the same names below.

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
    around a loop over blocks (`nest.channel_vectors._wide_borders`); `lanes`: floats a
    register; `taps_unrolled`: a conv's innermost window taps run unrolled as well as its
    outer ones (`nest.reduction._unrolled_taps`), inside the lanes loop of a
    channel-blocked input; `input_blocks`: deep convs over narrow model inputs read a
    channel-blocked copy (`input_blocks`); `chunked_pointwise`: deep 1x1 convs run their
    reduction in chunks of several input blocks (`reduction_chunks.pointwise_chunks`,
    measured on AVX2 only); `packed_pointwise`: a 1x1 stride-1 conv over wide NCHW rows
    stays on packed width-vector panels however deep, as long as a panel holds its input
    channels (`schedule._channel_vector`, measured on AVX2 only)."""

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
    chunked_pointwise: bool
    packed_pointwise: bool


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


#: Floats a schedule's vector holds by default (`<16 x float>`: one AVX-512 register, two
#: AVX2 ones).
VECTOR_WIDTH = 16
CHANNEL_BLOCKS = (8, 6, 4, 3, 2)
#: Register blocks of output columns: rows up to MAX_ROW_BLOCK wide are one block (border
#: columns checked inside each unrolled copy); wider rows split their interior (the columns
#: that need no bound check) into blocks of MIN..MAX_COLUMN_BLOCK, leaving the fewest over.
MAX_ROW_BLOCK = 14
MIN_COLUMN_BLOCK, MAX_COLUMN_BLOCK = 6, 13
#: Dense layers: output features per vector (`<32 x float>`, two registers, so a batch-1 row keeps
#: two FMA chains in flight: LeNet-5's dense layers are FMA-latency bound; 16 for deep reductions,
#: from `schedule.DEEP_DENSE` inputs) and rows sharing each weight vector (a batch below it runs in
#: the leftover blocks below). Measured side by side (ms, busy machine): 4096->1000 at batch 8 (16,
#: 4) 2.27, (16, 8) 1.43, (32, 8) 1.70, ONNX Runtime 1.58; 512->1000 at batch 8 (16, 8) 0.106, (32,
#: 8) 0.107; batch 1 memory bound (4096: all tiles 0.71-0.77) or close (512: 32-wide 0.071, 16-wide
#: 0.070-0.077). 12 rows measured 5-12% faster than 8 for batches known at compile time (kernel us
#: at batch 64: 784->128 81.7 -> 71.9, 1024->1000 873 -> 824, 4096->1000 4003 -> 3857). A run-time
#: batch's rows past its last whole block run as blocks of 8, 4, 2 and 1
#: (`nest.channel_vectors._leftover`; taken one at a time, a batch of 8 ran 4096->1000 in 2.79 ms
#: against 0.62). Against 8 rows with the leftovers one at a time, us a call at a run-time batch
#: (A/B, one thread): 784->128 N=24 38.9 -> 32.6, N=64 93.0 -> 79.5; 512->1000 N=64 459 -> 423;
#: 4096->1000 N=24 1659 -> 1508, N=64 4194 -> 4049; batches 1, 8 and 16 within 3%.
DENSE_WIDTH, ROW_BLOCK = 32, 12
#: 1x1 stride-1 convs on width vectors: 32 columns (two registers) x the output-channel block
#: of accumulators, so each input channel costs 2 vector loads and B weight broadcasts for 2B
#: FMAs (16 columns: 1 + B loads for B FMAs, load bound); rows loop outside the channel blocks
#: so an input row stays in L1 for all of them. Measured (busy machine, min of 15): 32->64
#: @112 0.60 -> 0.45-0.54 ms, 96->24 @56 0.172 -> 0.146 ms.
POINTWISE_WIDTH = 32
#: Channel-vector convs with a multiple of 32 output channels: 32 channels a vector (two
#: registers), so each input broadcast feeds two FMAs and a column block of R costs 2 + R
#: loads for 2R FMAs (16 channels: 1 + R loads for R FMAs, load bound); R is capped at 10
#: (2R accumulators must stay in registers), except that windowed convs over rows of 11-14
#: columns keep 16-channel vectors over the whole row (measured faster: no one-at-a-time
#: border columns). Measured side by side (busy machine, ms, 16 -> 32): 1x1 s2 64->128 @56
#: 0.26 -> 0.19, 960->160 @7 0.170 -> 0.139, 320->1280 @7 0.415 -> 0.380, 3x3 512 @7 1.89 ->
#: 1.75, 3x3 64 @56 1.77 -> 1.57, stem 7x7 2.02 -> 1.89; 3x3 256 @14 1.74 (16) vs 1.90 (32).
WIDE_CHANNEL_TILE, WIDE_MAX_COLUMN_BLOCK = 32, 10
#: The longest register block of a 1x1 conv reading NCHW rows, by vector width: 12 or 23
#: accumulators of one or two registers (`schedule._pointwise_block`).
POINTWISE_BLOCKS = {VECTOR_WIDTH: 23, WIDE_CHANNEL_TILE: 12}
#: Vector registers a register block may keep as accumulators (AVX-512 has 32; the rest
#: hold the loaded weights and broadcasts).
MAX_ACCUMULATORS = 28
#: The limits above are AVX-512's (32 registers of 16 floats). With AVX2's 16
#: registers of 8 floats a 16-float vector takes two, so a block holds 6 columns (12
#: registers, plus two for the weights and one broadcast), or a whole row of 7 (14), and no
#: 32-channel tiles. Measured on a Zen 3 (one thread, ms, A/B in one process where noted):
#: 3x3 64->64 @56 8.1 with AVX-512's blocks (10 columns x 32 channels, 40 registers) ->
#: 2.7-3.2 in blocks of 6 x 16; 32-channel tiles of 3 columns 5.9; 3x3 512 @7 (A/B) a row of
#: 7 3.6, 6 + 1 5.7, 4 + 3 5.7; 3x3 128 @28 (A/B) blocks of 6 3.7, of 7 6.8; 1x1 s2 64->128
#: @56 (28 columns, A/B) blocks of 4 0.43, 5 0.39, 6 0.35, so split rows take 6 whatever
#: they leave over. A conv reading a channel-blocked value runs its input lanes inside its
#: taps (`nest.reduction._lanes_inside`), and there a row of 7 is split (`blocked_max_row`),
#: 4 + 3: ResNet-18's 3x3 512 @7 kernels 3.2-3.5 -> 2.4 ms (A/B, the fastest of 20
#: profiles), where the 14 accumulators of a whole row spilled two, whose stores and reloads
#: then sat on the FMA chains.
AVX512_BLOCKS = RegisterBlocks(
    wide_tile=WIDE_CHANNEL_TILE,
    max_row=MAX_ROW_BLOCK,
    blocked_max_row=MAX_ROW_BLOCK,
    min_column=MIN_COLUMN_BLOCK,
    max_column=MAX_COLUMN_BLOCK,
    wide_max_column=WIDE_MAX_COLUMN_BLOCK,
    pointwise=POINTWISE_BLOCKS,
    channel_blocks=CHANNEL_BLOCKS,
    pointwise_width=POINTWISE_WIDTH,
    dense_width=DENSE_WIDTH,
    dense_rows=ROW_BLOCK,
    accumulators=MAX_ACCUMULATORS,
    border_columns=1,
    lanes=16,
    taps_unrolled=False,
    input_blocks=False,
    chunked_pointwise=False,
    packed_pointwise=False,
)
AVX2_BLOCKS = RegisterBlocks(
    wide_tile=VECTOR_WIDTH,
    max_row=7,
    blocked_max_row=6,
    min_column=6,
    max_column=6,
    wide_max_column=6,
    pointwise={VECTOR_WIDTH: 6},
    channel_blocks=(6, 4, 3, 2),
    pointwise_width=VECTOR_WIDTH,
    dense_width=VECTOR_WIDTH,
    dense_rows=6,
    accumulators=12,
    border_columns=4,
    lanes=8,
    taps_unrolled=True,
    input_blocks=True,
    chunked_pointwise=True,
    packed_pointwise=True,
)


def blocks() -> RegisterBlocks:
    """The register-block limits of this machine, or of the register file named by
    CONVC_REGISTER_BLOCKS (`registers.register_file`)."""
    return AVX512_BLOCKS if register_file() == "avx512" else AVX2_BLOCKS


def channel_block(channels) -> int:
    """The block (and vector width) for a tensor of `channels` channels: 32 unless the
    last block of 32 would be at most half full. A partial block costs a whole pass over
    the kernel's inputs, so 24 channels take one block of 32 (1x1 144->24 @56: 0.20 ms)
    rather than two of 16 (0.32 ms)."""
    channels = sympy.sympify(channels)
    if not channels.is_number:
        return VECTOR_WIDTH
    wide = blocks().wide_tile
    last = int(channels) % wide
    return wide if last == 0 or last > wide // 2 else VECTOR_WIDTH
