/*
 * Register-block step shapes on an AVX2 core, timed side by side in rounds.
 *
 * Why: on an AVX2 guest convc's 3x3 conv kernels run at the FMA peak in some
 * stretches and 1.5-1.7x slower in others, while ONNX Runtime's slow by 1.1-1.2x
 * (benchmarks/RESULTS.md). Each shape below does 12 FMAs of 8 lanes a step on data
 * in L1 (or L2 where said) and nothing else, so the rounds show which step shapes
 * lose speed in the slow stretches:
 *
 *   block 16x6, 3 steps a loop   convc's AVX2 block over an NCHW input: 16 output
 *                                channels (2 registers) x 6 columns, a loop over
 *                                3 window taps: 2 weight loads + 6 broadcasts; the
 *                                tap loop nested in a loop of 48 (the channels)
 *   block 32x3, 3 steps a loop   ONNX Runtime's step (below) in the same loops
 *   block 16x6, 48 steps a loop  the 16x6 step in one long loop (the lanes loop of
 *                                a channel-blocked input is 16 steps)
 *   block 16x6, a hint a step    the 48-step loop with convc's weight hint in every
 *                                step (a prefetcht1 576 bytes on, into L2's buffer)
 *   block 16x6, 8 steps unrolled the same step, 8 to a loop iteration
 *   block 32x3, L1 / L2          ONNX Runtime's (MLAS) AVX2 block: 32 channels
 *                                (4 registers) x 3 columns, 3 broadcasts, then
 *                                each weight register loaded and used by 3 FMAs;
 *                                8 steps to an iteration; weights from 8 KB (L1)
 *                                or streamed over 147 KB (L2)
 *   FMA only                     12 FMA chains on registers (the peak)
 *   32x3, weights as operands    the 32x3 step in 3-step loops with each FMA reading
 *                                its weights from memory: 3 broadcasts + 12 FMAs,
 *                                no weight loads (fewer instructions, more loads)
 *   window row 16x6 / 8x12       a 3x3 window's row of 3 taps at stride 1 (36 FMAs):
 *                                convc's unrolled taps, broadcasts loaded apart (24
 *                                loads), against 8 channels x 12 columns whose taps
 *                                share each column's broadcast (17 loads)
 *   FMA + ...                    the 12 FMA chains with, each iteration, 10 nops, or
 *                                loads from L1 that feed nothing: 3 broadcasts and
 *                                a vector, 6 alone, 6 and 2 (the count of convc's step), 8
 *                                and 4, or 8 vectors: how many loads 12 FMAs carry
 *                                at full speed (ONNX Runtime's step has 7)
 *
 *   gcc -O2 benchmarks/avx2_step_shapes.c -o /tmp/step_shapes && /tmp/step_shapes 40
 *
 * Prints GFLOP/s per shape, one line a round.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STEPS 20000000L /* 12 FMAs x 8 lanes x 2 flops each */
#define L1_WEIGHTS (9 << 10)  /* a 16-channel block's chunk of 16 input channels */
#define L2_WEIGHTS (147 << 10) /* 32 output channels of a 3x3 128-channel conv */

static float *weights, *inputs;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Every timed loop starts on a 64-byte line: unaligned, the same loop ran 20% slower or
 * not depending on where the compiler placed it. */
#define ALIGN ".p2align 6\n"

#define CLOBBERS                                                                          \
    "memory", "ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8",     \
        "ymm9", "ymm10", "ymm11", "ymm12", "ymm13", "ymm14", "ymm15"

/* 16 channels x 6 columns: weights in ymm12-13, broadcasts alternating in ymm14-15. */
#define STEP_16X6                                                                         \
    "vmovaps (%[w]), %%ymm12\n vmovaps 32(%[w]), %%ymm13\n"                               \
    "vbroadcastss (%[x]), %%ymm14\n vfmadd231ps %%ymm14, %%ymm12, %%ymm0\n"               \
    "vfmadd231ps %%ymm14, %%ymm13, %%ymm1\n"                                              \
    "vbroadcastss 4(%[x]), %%ymm15\n vfmadd231ps %%ymm15, %%ymm12, %%ymm2\n"              \
    "vfmadd231ps %%ymm15, %%ymm13, %%ymm3\n"                                              \
    "vbroadcastss 8(%[x]), %%ymm14\n vfmadd231ps %%ymm14, %%ymm12, %%ymm4\n"              \
    "vfmadd231ps %%ymm14, %%ymm13, %%ymm5\n"                                              \
    "vbroadcastss 12(%[x]), %%ymm15\n vfmadd231ps %%ymm15, %%ymm12, %%ymm6\n"             \
    "vfmadd231ps %%ymm15, %%ymm13, %%ymm7\n"                                              \
    "vbroadcastss 16(%[x]), %%ymm14\n vfmadd231ps %%ymm14, %%ymm12, %%ymm8\n"             \
    "vfmadd231ps %%ymm14, %%ymm13, %%ymm9\n"                                              \
    "vbroadcastss 20(%[x]), %%ymm15\n vfmadd231ps %%ymm15, %%ymm12, %%ymm10\n"            \
    "vfmadd231ps %%ymm15, %%ymm13, %%ymm11\n"                                             \
    "add $64, %[w]\n add $4, %[x]\n"

/* convc's hint for the next pass's weights: a line 576 bytes on (a 3x3 tap of the next
 * 16 input-channel chunk) each step, here within the L2_WEIGHTS buffer. */
#define HINT "prefetcht1 (%[p])\n add $576, %[p]\n"

/* Loops of `per_loop` steps, each loop `unroll` steps an iteration (1 or 8; -1: 1 with a
 * hint each step), weights cycling through the first L1_WEIGHTS bytes. */
static void block_16x6(long per_loop, int unroll) {
    long span = L1_WEIGHTS / 64 - per_loop; /* steps of 64 bytes that fit */
    for (long loop = 0; loop < STEPS / per_loop; loop++) {
        const float *w = weights + (loop * per_loop % span) * 16;
        const float *x = inputs + (loop & 63) * 16;
        const float *p = weights + (loop & 3) * per_loop * 144;
        long count = per_loop / (unroll < 0 ? 1 : unroll);
        if (unroll < 0)
            __asm__ volatile(ALIGN "1:\n" STEP_16X6 HINT "dec %[n]\n jnz 1b\n"
                             : [w] "+r"(w), [x] "+r"(x), [p] "+r"(p), [n] "+r"(count)::CLOBBERS);
        else if (unroll == 1)
            __asm__ volatile(ALIGN "1:\n" STEP_16X6 "dec %[n]\n jnz 1b\n"
                             : [w] "+r"(w), [x] "+r"(x), [n] "+r"(count)::CLOBBERS);
        else
            __asm__ volatile(ALIGN "1:\n" STEP_16X6 STEP_16X6 STEP_16X6 STEP_16X6 STEP_16X6
                             STEP_16X6 STEP_16X6 STEP_16X6 "dec %[n]\n jnz 1b\n"
                             : [w] "+r"(w), [x] "+r"(x), [n] "+r"(count)::CLOBBERS);
    }
}

/* 32 channels x 3 columns, step k of 8: broadcasts in ymm13-15, one weight register. */
#define STEP_32X3(k)                                                                      \
    "vbroadcastss " #k "*4(%[x]), %%ymm13\n vbroadcastss " #k "*4+32(%[x]), %%ymm14\n"    \
    "vbroadcastss " #k "*4+64(%[x]), %%ymm15\n"                                           \
    "vmovaps " #k "*128(%[w]), %%ymm12\n vfmadd231ps %%ymm13, %%ymm12, %%ymm0\n"          \
    "vfmadd231ps %%ymm14, %%ymm12, %%ymm4\n vfmadd231ps %%ymm15, %%ymm12, %%ymm8\n"       \
    "vmovaps " #k "*128+32(%[w]), %%ymm12\n vfmadd231ps %%ymm13, %%ymm12, %%ymm1\n"       \
    "vfmadd231ps %%ymm14, %%ymm12, %%ymm5\n vfmadd231ps %%ymm15, %%ymm12, %%ymm9\n"       \
    "vmovaps " #k "*128+64(%[w]), %%ymm12\n vfmadd231ps %%ymm13, %%ymm12, %%ymm2\n"       \
    "vfmadd231ps %%ymm14, %%ymm12, %%ymm6\n vfmadd231ps %%ymm15, %%ymm12, %%ymm10\n"      \
    "vmovaps " #k "*128+96(%[w]), %%ymm12\n vfmadd231ps %%ymm13, %%ymm12, %%ymm3\n"       \
    "vfmadd231ps %%ymm14, %%ymm12, %%ymm7\n vfmadd231ps %%ymm15, %%ymm12, %%ymm11\n"

/* Loops of `per_loop` iterations of 8 steps (1 KB of weights each), the weights
 * cycling through `bytes`. */
static void block_32x3(long bytes, long per_loop) {
    long span = bytes / 1024 - per_loop + 1; /* first iterations that fit */
    for (long loop = 0; loop < STEPS / 8 / per_loop; loop++) {
        const float *w = weights + (loop * per_loop % span) * 256;
        const float *x = inputs + (loop & 63) * 16;
        long count = per_loop;
        __asm__ volatile(ALIGN "1:\n" STEP_32X3(0) STEP_32X3(1) STEP_32X3(2) STEP_32X3(3)
                         STEP_32X3(4) STEP_32X3(5) STEP_32X3(6) STEP_32X3(7)
                         "add $1024, %[w]\n add $32, %[x]\n dec %[n]\n jnz 1b\n"
                         : [w] "+r"(w), [x] "+r"(x), [n] "+r"(count)::CLOBBERS);
    }
}

/* A loop of 3 taps nested in a loop of 48 channels, all in the asm (no C between the
 * tap loops): `step` is the 16x6 or the 32x3 step, advancing its weights by
 * `weight_bytes` a tap; each channel steps back to the same weights (L1) and on by one
 * input. */
#define NESTED(step, weight_bytes)                                                        \
    for (long loop = 0; loop < STEPS / 144; loop++) {                                     \
        const float *w = weights, *x = inputs;                                            \
        long channels = 48;                                                               \
        __asm__ volatile("2:\n mov $3, %%ecx\n" ALIGN "1:\n" step "dec %%ecx\n jnz 1b\n"           \
                         "sub $" #weight_bytes "*3, %[w]\n sub $8, %[x]\n dec %[n]\n jnz 2b\n" \
                         : [w] "+r"(w), [x] "+r"(x), [n] "+r"(channels)::CLOBBERS, "rcx");  \
    }

static void nested_16x6(void) { NESTED(STEP_16X6, 64) }

static void nested_32x3(void) { NESTED(STEP_32X3(0) "add $128, %[w]\n add $4, %[x]\n", 128) }

/* 32x3 with the weights as FMA memory operands (no weight loads): 3 broadcasts + 12 FMAs,
 * in the nested 3-step loops. */
#define FMA_MEM(offset, broadcast, acc) \
    "vfmadd231ps " offset "(%[w]), %%ymm" broadcast ", %%ymm" acc "\n"
#define STEP_32X3_OPERANDS                                                                \
    "vbroadcastss (%[x]), %%ymm13\n vbroadcastss 32(%[x]), %%ymm14\n"                      \
    "vbroadcastss 64(%[x]), %%ymm15\n"                                                     \
    FMA_MEM("0", "13", "0") FMA_MEM("0", "14", "4") FMA_MEM("0", "15", "8")                \
    FMA_MEM("32", "13", "1") FMA_MEM("32", "14", "5") FMA_MEM("32", "15", "9")             \
    FMA_MEM("64", "13", "2") FMA_MEM("64", "14", "6") FMA_MEM("64", "15", "10")            \
    FMA_MEM("96", "13", "3") FMA_MEM("96", "14", "7") FMA_MEM("96", "15", "11")

static void nested_32x3_operands(void) {
    NESTED(STEP_32X3_OPERANDS "add $128, %[w]\n add $4, %[x]\n", 128)
}

/* A window row of a 3x3 conv at stride 1 (3 taps, 36 FMAs), as the unrolled taps of
 * convc's kernels run it: 16 channels x 6 columns, each tap's 2 weight vectors loaded
 * and its 6 broadcasts loaded apart (columns shared between taps loaded again), 24
 * loads. */
#define FMA_R(src, weight, acc) "vfmadd231ps %%ymm" #src ", %%ymm" #weight ", %%ymm" #acc "\n"
#define BROADCAST_AT(column, reg) "vbroadcastss 4*" #column "(%[x]), %%ymm" #reg "\n"
#define COLUMN_16(column, reg, acc0, acc1) \
    BROADCAST_AT(column, reg) FMA_R(reg, 12, acc0) FMA_R(reg, 13, acc1)
#define TAP_16X6(tap, c0, c1, c2, c3, c4, c5)                                              \
    "vmovaps " #tap "*64(%[w]), %%ymm12\n vmovaps " #tap "*64+32(%[w]), %%ymm13\n"        \
    COLUMN_16(c0, 14, 0, 1) COLUMN_16(c1, 15, 2, 3) COLUMN_16(c2, 14, 4, 5)               \
    COLUMN_16(c3, 15, 6, 7) COLUMN_16(c4, 14, 8, 9) COLUMN_16(c5, 15, 10, 11)
#define ROW_16X6 \
    TAP_16X6(0, 0, 1, 2, 3, 4, 5) TAP_16X6(1, 1, 2, 3, 4, 5, 6) TAP_16X6(2, 2, 3, 4, 5, 6, 7)

/* The same row as 8 channels x 12 columns with the taps sharing each column's
 * broadcast: the 3 taps' weight vectors held (ymm12-14), then each of the 14 input
 * columns broadcast once and used by every tap that reads it, 17 loads. */
#define SHARED(column, acc2, acc1, acc0) \
    BROADCAST_AT(column, 15) FMA_R(15, 14, acc2) FMA_R(15, 13, acc1) FMA_R(15, 12, acc0)
#define ROW_8X12                                                                          \
    "vmovaps (%[w]), %%ymm12\n vmovaps 32(%[w]), %%ymm13\n vmovaps 64(%[w]), %%ymm14\n"   \
    BROADCAST_AT(0, 15) FMA_R(15, 12, 0) BROADCAST_AT(1, 15) FMA_R(15, 13, 0)             \
    FMA_R(15, 12, 1) SHARED(2, 0, 1, 2) SHARED(3, 1, 2, 3) SHARED(4, 2, 3, 4)             \
    SHARED(5, 3, 4, 5) SHARED(6, 4, 5, 6) SHARED(7, 5, 6, 7) SHARED(8, 6, 7, 8)           \
    SHARED(9, 7, 8, 9) SHARED(10, 8, 9, 10) SHARED(11, 9, 10, 11)                         \
    BROADCAST_AT(12, 15) FMA_R(15, 14, 10) FMA_R(15, 13, 11) BROADCAST_AT(13, 15)         \
    FMA_R(15, 14, 11)

/* Loops of 48 window rows (3 steps of 12 FMAs each), a row's weights `weight_bytes` on
 * from the last's, cycling through 48 rows of them (L1), the input a row 256 bytes on. */
#define WINDOW_ROWS(row, weight_bytes)                                                    \
    for (long loop = 0; loop < STEPS / 144; loop++) {                                     \
        const float *w = weights, *x = inputs;                                            \
        long rows = 48;                                                                   \
        __asm__ volatile(ALIGN "1:\n" row "add $" #weight_bytes ", %[w]\n add $256, %[x]\n" \
                         "dec %[n]\n jnz 1b\n"                                            \
                         : [w] "+r"(w), [x] "+r"(x), [n] "+r"(rows)::CLOBBERS);           \
    }

static void window_row_16x6(void) { WINDOW_ROWS(ROW_16X6, 192) }

static void window_row_8x12(void) { WINDOW_ROWS(ROW_8X12, 96) }

#define FMA12                                                                             \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm0\n vfmadd231ps %%ymm15, %%ymm15, %%ymm1\n"       \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm2\n vfmadd231ps %%ymm15, %%ymm15, %%ymm3\n"       \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm4\n vfmadd231ps %%ymm15, %%ymm15, %%ymm5\n"       \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm6\n vfmadd231ps %%ymm15, %%ymm15, %%ymm7\n"       \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm8\n vfmadd231ps %%ymm15, %%ymm15, %%ymm9\n"       \
    "vfmadd231ps %%ymm15, %%ymm15, %%ymm10\n vfmadd231ps %%ymm15, %%ymm15, %%ymm11\n"

/* 12 FMA chains on registers and `extra` in each loop iteration: loads from L1 that feed
 * nothing (into ymm12-14), or nops. */
#define FMA_WITH(name, extra)                                                             \
    static void name(void) {                                                              \
        long count = STEPS;                                                               \
        const float *x = inputs;                                                          \
        __asm__ volatile("vxorps %%ymm15, %%ymm15, %%ymm15\n" ALIGN "1:\n" FMA12 extra \
                         "dec %[n]\n jnz 1b\n"                                            \
                         : [n] "+r"(count), [x] "+r"(x)::CLOBBERS);                       \
    }

#define BROADCAST(offset, reg) "vbroadcastss " offset "(%[x]), %%ymm" reg "\n"
#define VECTOR(offset, reg) "vmovaps " offset "(%[x]), %%ymm" reg "\n"
#define BROADCASTS_3 BROADCAST("0", "12") BROADCAST("4", "13") BROADCAST("8", "14")
#define BROADCASTS_6 BROADCASTS_3 BROADCAST("12", "12") BROADCAST("16", "13") BROADCAST("20", "14")
#define VECTORS_4 VECTOR("32", "12") VECTOR("64", "13") VECTOR("96", "14") VECTOR("128", "12")

FMA_WITH(fma_only, "")
FMA_WITH(fma_nops, "nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n")
FMA_WITH(fma_3_broadcasts, BROADCASTS_3 VECTOR("32", "12"))
FMA_WITH(fma_6_only, BROADCASTS_6)
FMA_WITH(fma_6_broadcasts, BROADCASTS_6 VECTOR("32", "12") VECTOR("64", "13"))
FMA_WITH(fma_8_broadcasts, BROADCASTS_6 BROADCAST("24", "12") BROADCAST("28", "13") VECTORS_4)
FMA_WITH(fma_8_vectors, VECTORS_4 VECTOR("160", "13") VECTOR("192", "14") VECTOR("224", "12")
                            VECTOR("256", "13"))

static void loop_16x6(void) { block_16x6(48, 1); }
static void hinted_16x6(void) { block_16x6(48, -1); }
static void unrolled_16x6(void) { block_16x6(48, 8); }
static void unrolled_32x3_l1(void) { block_32x3(8 << 10, 8); }
static void unrolled_32x3_l2(void) { block_32x3(L2_WEIGHTS, 16); }

static const struct {
    const char *name;
    void (*run)(void);
} SHAPES[] = {
    {"16x6 3-step loops", nested_16x6},
    {"32x3 3-step loops", nested_32x3},
    {"16x6 48-step loop", loop_16x6},
    {"16x6 48-step loop, a hint a step", hinted_16x6},
    {"16x6 x8 unrolled", unrolled_16x6},
    {"32x3 L1", unrolled_32x3_l1},
    {"32x3 L2", unrolled_32x3_l2},
    {"FMA only", fma_only},
    {"32x3 weights as operands", nested_32x3_operands},
    {"FMA + 10 nops", fma_nops},
    {"FMA + 3 broadcasts, 1 load", fma_3_broadcasts},
    {"FMA + 6 broadcasts", fma_6_only},
    {"FMA + 6 broadcasts, 2 loads", fma_6_broadcasts},
    {"FMA + 8 broadcasts, 4 loads", fma_8_broadcasts},
    {"FMA + 8 loads", fma_8_vectors},
    {"window row 16x6, broadcasts apart", window_row_16x6},
    {"window row 8x12, broadcasts shared", window_row_8x12},
};
#define SHAPE_COUNT (sizeof SHAPES / sizeof SHAPES[0])

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    weights = aligned_alloc(64, L2_WEIGHTS + 4096);
    inputs = aligned_alloc(64, 1 << 16);
    for (long i = 0; i < (L2_WEIGHTS + 4096) / 4; i++) weights[i] = 1e-6f;
    for (long i = 0; i < (1 << 14); i++) inputs[i] = 1e-6f;
    double flops = STEPS * 12.0 * 16;
    printf("GFLOP/s:");
    for (size_t k = 0; k < SHAPE_COUNT; k++) printf("%s %s", k ? " |" : "", SHAPES[k].name);
    printf("\n");
    for (int r = 0; r < rounds; r++) {
        for (size_t k = 0; k < SHAPE_COUNT; k++) {
            double start = now();
            SHAPES[k].run();
            printf("%6.1f", flops / (now() - start) / 1e9);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
