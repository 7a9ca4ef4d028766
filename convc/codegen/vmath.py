"""Vector math in IR: exp, log, tanh, sigmoid, erf for float32 scalars and ``<W x float>``.

Stage: called by the kernel emitter for `Unary` math ops. LLVM has no vector math library
here (``llvm.exp.v16f32`` becomes 16 scalar ``expf`` calls), so each function is a range
reduction plus a polynomial, emitted once per type as an internal ``alwaysinline`` function
(``convc.exp.v16f32``) built with the IRBuilder. float64 falls back to the libm intrinsics.

Accuracy over all of float32, measured against NumPy/SciPy in float64 on 400k random bit
patterns, dense grids over [-110, 110], [-9.5, 9.5] and [-5, 5], and the edge cases (subnormals, the
overflow thresholds, +-0, +-inf, NaN); tests/test_codegen.py asserts these bounds:

- exp: relative error <= 1.5e-7 (about 1 ulp) for normal results; subnormal results within
  1 ulp of the subnormal grid; exactly 0 below -103.98 and +inf above 88.73. (Cephes
  ``expf`` range reduction and polynomial; the power of two applied by ``vscalefps`` on
  AVX-512 targets, else in two halves. The tests check both.) Without ``vscalefps`` a
  vector whose lanes all lie in NORMAL_EXP (normal results) takes a short path, one
  branch a vector (`_when_normal`): the power of two added to the exponent bits, no
  clamps or selects, bit for bit the same results. On a Zen 3 (AVX2), one thread, kernel
  us over 64 planes of 56x56 (A/B, alternating processes, fastest of 30 profiles):
  ELU 124 -> 92, SELU 130-136 -> 98, SiLU 131 -> 107, sigmoid 124 -> 91; softmax over
  64 rows of 1000 47 -> 35; tanh (no exp) 60-61 either way.
- log: relative error <= 1.2e-7 on positive finite inputs, subnormals included; log(+-0) =
  -inf, log(x<0) = NaN, log(inf) = inf. (Cephes ``logf``.)
- tanh: relative error <= 3.3e-7 (5.4 ulp at most, towards +-1): ``x P(x^2) / Q(x^2)``, a
  13/6-degree odd rational with P(0) = Q(0) = 1 fitted here for the least maximum
  relative error on [0, 9] (iteratively reweighted least squares on tanh(x)/x; 6.6e-9 in
  exact arithmetic, so the float32 rounding of P, Q and the division is the whole error);
  x is clamped to +-9 and the result to [-1, 1], so it is exactly +-1 from 9.01 on;
  tanh(+-0) = +-0 and tiny x give x. One division and about 20 other vector instructions
  for 16 lanes, against about 35 for the odd polynomial below |x| = 0.625 and
  ``1 - 2/(exp(2|x|)+1)`` above, which both ran for every element (relative error 2e-7):
  64 planes of 56x56, one thread, 0.0885 -> 0.0639 ms, where ONNX Runtime takes 0.0706
  and PyTorch 0.0691.
- sigmoid ``1/(1+exp(-x))``: relative error <= 2.5e-7 where the result is a normal float;
  0 below x = -88.72 (the true value is below 1.2e-38 there). Without ``vscalefps`` its
  exp takes less care for the ends of the range than exp's own (see `_sigmoid`): on a
  Zen 3 (AVX2), one thread, kernel A/B in one process, 0.816 -> 0.764 ns an element over
  64 planes of 14x14 (0.767 -> 0.731 at 56x56, where ONNX Runtime takes about 0.52).
- erf: relative error <= 3.3e-7 (5.5 ulp at most, towards +-1): ``x P(x^2) / Q(x^2)``,
  15/8-degree, fitted the same way on [0, 3.92] (9.3e-9 in exact arithmetic); exactly +-1
  past 3.92. Its two branches before (an odd polynomial below |x| = 1, ``1 - exp(-x^2)
  Q(|x|)`` above; relative error 2.5e-7) both ran for every element: GELU over 64 planes
  of 56x56, one thread, 0.134 -> 0.083 ms (PyTorch 0.110, ONNX Runtime 0.132).
The tanh and erf bounds hold at every float32 (a slow test evaluates them all: both are
exactly odd, so the positive normal floats below their saturation points cover them).
NaN propagates through every function.
"""

from __future__ import annotations

from llvmlite import ir

from .llvmutil import F32, I32, const, declare, intrinsic, type_suffix

LOG2E = 1.44269504088896341
EXP_C1 = 0.693359375
EXP_C2 = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
            1.6666665459e-1, 5.0000001201e-1)  # fmt: skip
LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
            1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
            3.3333331174e-1)  # fmt: skip
TANH_LIMIT = 9.0  # tanh(9.01) rounds to 1 in float32; past it the result is +-1
TANH_P = (-8.488685417927711e-14, 5.2779460121335114e-11, -2.0225235296764498e-08,
          1.1154313522171041e-05, 0.003103956892257212, 0.1308401082283652, 1.0)  # fmt: skip
TANH_Q = (0.00025461460987915137, 0.024495181324894887, 0.46417338146779896, 1.0)  # fmt: skip
ERF_LIMIT = 3.92  # erf(3.92) rounds to 1 in float32
ERF_P = (-8.507820504808281e-10, 8.227256209159035e-08, -3.7162892917294327e-06,
         0.00013534211530875432, 0.0015327873185593693, 0.04411619501793164,
         0.13968165035843924, 1.1283791565804653)  # fmt: skip
ERF_Q = (0.0005460431965375712, 0.009942470120651208, 0.09147303751159507,
         0.45712264772960953, 1.0)  # fmt: skip
SQRT2 = 1.41421356237309515
EXP_OVERFLOW = 88.72283935546875  # the largest float32 x whose exp(x) is finite
#: x whose e**x is a normal float with n = rint(x / ln 2) in [-125, 127] (y in [0.707, 1.415]
#: times 2**n): there 2**n can be added to y's exponent bits (`_exp_normal`).
NORMAL_EXP = (-86.9, 88.3)
LIBM = {"exp": "llvm.exp", "log": "llvm.log"}
SCALEF_LANES = 16  # ``vscalefps`` on a zmm register
I16 = ir.IntType(16)


class _Ops:
    """Float32 arithmetic on scalars or vectors of one type; no fast-math flags, so the
    error bounds above hold whatever the call site's flags are."""

    def __init__(self, b: ir.IRBuilder, t: ir.Type, scalef: bool = False):
        self.b, self.t, self.scalef = b, t, scalef
        self.it = ir.VectorType(I32, t.count) if isinstance(t, ir.VectorType) else I32

    def c(self, value: float) -> ir.Constant:
        return const(self.t, value)

    def ci(self, value: int) -> ir.Constant:
        return const(self.it, value)

    def fma(self, x, y, z):
        return intrinsic(self.b, "llvm.fma", [x, y, z])

    def poly(self, x, coeffs):
        """Horner with FMA: coeffs from the highest power down."""
        acc = self.c(coeffs[0])
        for coef in coeffs[1:]:
            acc = self.fma(acc, x, self.c(coef))
        return acc

    def lt(self, x, y):
        return self.b.fcmp_ordered("<", x, y)

    def gt(self, x, y):
        return self.b.fcmp_ordered(">", x, y)

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def pow2(self, n):
        """2**n for i32 n in [-126, 127], built in the exponent bits."""
        bits = self.b.shl(self.b.add(n, self.ci(127)), self.ci(23))
        return self.b.bitcast(bits, self.t)


def _exp(o: _Ops, x):
    """e**x = 2**n * e**r, r = x - n ln 2 in [-ln2/2, ln2/2]. With `scalef` the power of
    two is one ``vscalefps`` (overflow to inf, underflow to zero or a correctly rounded
    subnormal; a NaN stays NaN), 15 vector instructions against 29: over 64 planes of
    56x56, kernel us, two halves -> ``llvm.ldexp`` of an integer n -> ``vscalefps`` of
    the float n (no conversion, no NaN select): elu 74 -> 53 -> 46-48, sigmoid 89 -> 64
    -> 58-59. Vectors of other widths and scalars take ``llvm.ldexp``. Without, a vector
    whose results are all normal adds n to y's exponent bits (`_exp_normal`), any other
    takes `_exp_careful`."""
    b = o.b
    if not o.scalef:
        return _when_normal(o, x, lambda: _exp_normal(o, x), lambda: _exp_careful(o, x))
    y, n = _exp_reduced(o, _clamp(o, x, -104.0, 89.0))
    lanes = o.t.count if isinstance(o.t, ir.VectorType) else 1
    if lanes >= SCALEF_LANES and not lanes & (lanes - 1):
        return _scalef(b, y, n)
    ni = b.fptosi(n, o.it)  # poison for a NaN x: its lane is replaced by x below
    suffix = f"{type_suffix(o.t)}.{type_suffix(o.it)}"
    ldexp = declare(b.module, f"llvm.ldexp.{suffix}", o.t, [o.t, o.it])
    return b.select(o.isnan(x), x, b.call(ldexp, [y, ni]))


def _exp_careful(o: _Ops, x):
    """e**x over all of float32 without ``vscalefps``: 2**n in two halves (a subnormal
    result is one rounding), the limits and NaN selected."""
    b = o.b
    y, n = _exp_reduced(o, _clamp(o, x, -104.0, 89.0))
    ni = b.fptosi(n, o.it)  # poison for a NaN x: its lane is replaced by x below
    half = b.ashr(ni, o.ci(1))
    y = b.fmul(b.fmul(y, o.pow2(half)), o.pow2(b.sub(ni, half)))
    y = b.select(o.gt(x, o.c(EXP_OVERFLOW)), o.c(float("inf")), y)
    y = b.select(o.lt(x, o.c(-103.97820568084717)), o.c(0.0), y)
    return b.select(o.isnan(x), x, y)


def _exp_normal(o: _Ops, x):
    """e**x for x in NORMAL_EXP (a normal result, n in [-125, 127]): n added to y's
    exponent bits, exact there, so bit for bit `_exp_careful`'s result."""
    b = o.b
    y, n = _exp_reduced(o, x)
    bits = b.add(b.bitcast(y, o.it), b.shl(b.fptosi(n, o.it), o.ci(23)))
    return b.bitcast(bits, o.t)


def _when_normal(o: _Ops, t, normal, careful):
    """`normal()` when every lane of `t` lies in NORMAL_EXP (NaN does not), else
    `careful()`: one branch a vector. Inputs of a model's activations nearly always lie
    there, so the loop runs the short path (no clamps, no selects for the ends of the
    range and NaN, one power of two), and a vector with any lane outside takes the whole
    computation."""
    b = o.b
    low, high = NORMAL_EXP
    inside = b.and_(b.fcmp_ordered(">=", t, o.c(low)), b.fcmp_ordered("<=", t, o.c(high)))
    if isinstance(o.t, ir.VectorType):
        inside = intrinsic(b, "llvm.vector.reduce.and", [inside], ret=ir.IntType(1))
    with b.if_else(inside, likely=True) as (then, otherwise):
        with then:
            fast, fast_block = normal(), b.block
        with otherwise:
            slow, slow_block = careful(), b.block
    result = b.phi(o.t)
    result.add_incoming(fast, fast_block)
    result.add_incoming(slow, slow_block)
    return result


def _clamp(o: _Ops, x, low: float, high: float):
    """`x` held to [low, high]; NaN stays NaN."""
    x = o.b.select(o.gt(x, o.c(high)), o.c(high), x)
    return o.b.select(o.lt(x, o.c(low)), o.c(low), x)


def _exp_reduced(o: _Ops, x):
    """(e**r, n) with x = n ln 2 + r, r in [-ln2/2, ln2/2], n a whole float."""
    b = o.b
    n = intrinsic(b, "llvm.rint", [b.fmul(x, o.c(LOG2E))])
    r = o.fma(n, o.c(-EXP_C1), x)
    r = o.fma(n, o.c(-EXP_C2), r)
    return o.fma(o.poly(r, EXP_POLY), b.fmul(r, r), b.fadd(r, o.c(1.0))), n


def _scalef(b: ir.IRBuilder, y: ir.Value, n: ir.Value) -> ir.Value:
    """``y * 2**floor(n)`` by AVX-512's ``vscalefps``, 16 lanes at a time (`y` has a power
    of two of at least 16 lanes)."""
    t16 = ir.VectorType(F32, SCALEF_LANES)
    fn = declare(b.module, "llvm.x86.avx512.mask.scalef.ps.512", t16, [t16, t16, t16, I16, I32])
    count = y.type.count
    parts = []
    for start in range(0, count, SCALEF_LANES):
        lanes = list(range(start, start + SCALEF_LANES))
        picks = ir.Constant(ir.VectorType(I32, SCALEF_LANES), lanes)
        yk, nk = (b.shuffle_vector(v, v, picks) if count > SCALEF_LANES else v for v in (y, n))
        current_direction = ir.Constant(I32, 4)
        parts.append(b.call(fn, [yk, nk, yk, ir.Constant(I16, -1), current_direction]))
    while len(parts) > 1:
        pairs = zip(parts[::2], parts[1::2])
        parts = [b.shuffle_vector(lo, hi, _concat(lo.type.count)) for lo, hi in pairs]
    return parts[0]


def _concat(count: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, 2 * count), list(range(2 * count)))


def _log(o: _Ops, x):
    b = o.b
    tiny = o.lt(x, o.c(1.1754943508222875e-38))
    xs = b.select(tiny, b.fmul(x, o.c(8388608.0)), x)
    bits = b.bitcast(xs, o.it)
    e = b.sub(b.lshr(bits, o.ci(23)), b.select(tiny, o.ci(150), o.ci(127)))
    m = b.bitcast(b.or_(b.and_(bits, o.ci(0x007FFFFF)), o.ci(0x3F800000)), o.t)
    big = o.gt(m, o.c(SQRT2))
    m = b.select(big, b.fmul(m, o.c(0.5)), m)
    ef = b.sitofp(b.add(e, b.zext(big, o.it)), o.t)
    f = b.fsub(m, o.c(1.0))
    z = b.fmul(f, f)
    y = b.fmul(b.fmul(f, z), o.poly(f, LOG_POLY))
    y = o.fma(ef, o.c(EXP_C2), y)
    y = o.fma(z, o.c(-0.5), y)
    r = o.fma(ef, o.c(EXP_C1), b.fadd(f, y))
    r = b.select(b.fcmp_ordered("==", x, o.c(float("inf"))), x, r)
    r = b.select(b.fcmp_ordered("==", x, o.c(0.0)), o.c(float("-inf")), r)
    return b.select(b.fcmp_unordered("ult", x, o.c(0.0)), o.c(float("nan")), r)


def _tanh(o: _Ops, x):
    return _odd_rational(o, x, TANH_LIMIT, TANH_P, TANH_Q)


def _odd_rational(o: _Ops, x, limit: float, p, q):
    """``x P(x^2) / Q(x^2)`` over x clamped to +-`limit`, the result held to [-1, 1] (an
    odd function that saturates at +-1 there: tanh, erf); NaN stays NaN."""
    b = o.b
    a = _clamp(o, x, -limit, limit)
    t = b.fmul(a, a)
    y = b.fdiv(b.fmul(a, o.poly(t, p)), o.poly(t, q))
    y = b.select(o.gt(y, o.c(1.0)), o.c(1.0), y)
    return b.select(o.lt(y, o.c(-1.0)), o.c(-1.0), y)


def _sigmoid(o: _Ops, x):
    """``1/(1+exp(-x))``. Without ``vscalefps``, exp(-x) needs little of exp's care for
    the ends of the range: -x is held to [-87, EXP_OVERFLOW], so 2**(n-1) is one float
    built in the exponent bits (normal, or 0 at n = -126, where 1 + e rounds to 1
    anyway), and e = 2y * 2**(n-1) is finite; past EXP_OVERFLOW the result is 0, as with
    exp. Subnormal results (x in [-88.72, -87.34]) keep their one rounding, which SiLU's
    product with x makes a normal float again. A vector whose -x lies in NORMAL_EXP takes
    exp's short path (`_when_normal`), with the same e."""
    b = o.b
    t = b.fneg(x)
    if o.scalef:
        return b.fdiv(o.c(1.0), b.fadd(o.c(1.0), _exp(o, t)))

    def careful():
        y, n = _exp_reduced(o, _clamp(o, t, -87.0, EXP_OVERFLOW))
        e = b.fmul(b.fmul(y, o.c(2.0)), o.pow2(b.sub(b.fptosi(n, o.it), o.ci(1))))
        s = b.fdiv(o.c(1.0), b.fadd(o.c(1.0), e))
        s = b.select(o.gt(t, o.c(EXP_OVERFLOW)), o.c(0.0), s)
        return b.select(o.isnan(x), x, s)

    def normal():
        return b.fdiv(o.c(1.0), b.fadd(o.c(1.0), _exp_normal(o, t)))

    return _when_normal(o, t, normal, careful)


def _erf(o: _Ops, x):
    return _odd_rational(o, x, ERF_LIMIT, ERF_P, ERF_Q)


BODIES = {"exp": _exp, "log": _log, "tanh": _tanh, "sigmoid": _sigmoid, "erf": _erf}


def call_math(b: ir.IRBuilder, op: str, x: ir.Value, scalef: bool = False) -> ir.Value:
    """``op(x)`` for op in exp/log/tanh/sigmoid/erf on float32 scalars or vectors;
    `scalef`: the target has ``vscalefps`` (see `_exp`)."""
    t = x.type
    elem = t.element if isinstance(t, ir.VectorType) else t
    if elem != F32:
        return _libm(b, op, x)
    name = f"convc.{op}.{type_suffix(t)}"
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(t, [t]), name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        fb.ret(BODIES[op](_Ops(fb, t, scalef), fn.args[0]))
    return b.call(fn, [x])


def _libm(b: ir.IRBuilder, op: str, x: ir.Value) -> ir.Value:
    """float64: libm through LLVM intrinsics / C functions (scalarised for vectors)."""
    if op in LIBM:
        return intrinsic(b, LIBM[op], [x])
    if isinstance(x.type, ir.VectorType):
        out = ir.Constant(x.type, ir.Undefined)
        for lane in range(x.type.count):
            idx = ir.Constant(I32, lane)
            out = b.insert_element(out, _libm(b, op, b.extract_element(x, idx)), idx)
        return out
    one = const(x.type, 1.0)
    if op == "sigmoid":
        return b.fdiv(one, b.fadd(one, intrinsic(b, "llvm.exp", [b.fneg(x)])))
    fn = declare(b.module, op, x.type, [x.type])  # tanh, erf from libm
    return b.call(fn, [x])
