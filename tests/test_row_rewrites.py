"""Loop-IR rewrites of a kernel's rows: a sum folded into the loop that stores what it adds
(`lower.row_sums`) and a temporary forwarded into the output computed from it
(`lower.forward`), each applied only where its conditions hold."""

from __future__ import annotations

from convc import loops
from convc.lower.forward import forward_temp
from convc.lower.row_sums import fold_row_sums

n, c, r = (loops.loop_var(v) for v in "ncr")


def _names():
    taken = {}

    def fresh(stem):
        taken[stem] = taken.get(stem, 0) + 1
        return f"{stem}{taken[stem]}"

    return fresh


def _store_loop(buffer="t", var=c, stop=100):
    value = loops.Unary("exp", loops.Load("x", (n, var)))
    return loops.For(
        var, 0, stop, loops.Store(buffer, (n, var), value), kind="vectorized", width=16
    )


def _sum(index=(n, r), stop=100, buffer="t"):
    add = loops.Binary("add", loops.Ref("acc"), loops.Load(buffer, index))
    return loops.Block(
        (
            loops.Alloc("acc", "float32", (), loops.Const(0.0)),
            loops.For(r, 0, stop, loops.Assign("acc", (), add)),
            loops.Store("s", (n,), loops.Ref("acc")),
        )
    )


def _row(*stmts):
    return loops.Block((loops.For(n, 0, 8, loops.Block(stmts)),))


def test_a_sum_of_the_stored_row_is_taken_while_storing():
    folded = fold_row_sums(_row(_store_loop(), _sum()), _names())
    text = "\n".join(loops.format_stmt(folded))
    assert text.count("for ") == 2  # the rows, and one loop over their elements
    assert "let v1 = exp(x[n, c])" in text and "t[n, c] = v1" in text
    assert "acc = acc + v1" in text and "s[n] = acc" in text


def test_sums_of_other_elements_or_ranges_stay_separate():
    cases = [
        _sum(index=(n, r + 1)),  # another element than the one stored
        _sum(stop=99),  # another range
        _sum(buffer="u"),  # another buffer
    ]
    for case in cases:
        row = _row(_store_loop(), case)
        assert fold_row_sums(row, _names()) == row


def _scale(temp="t", out="y"):
    value = loops.Binary("mul", loops.Load("s", (n,)), loops.Load(temp, (n, c)))
    return loops.For(c, 0, 100, loops.Store(out, (n, c), value), kind="vectorized", width=16)


def test_a_temporary_computed_into_the_output_is_stored_there():
    body = _row(_store_loop(), _scale())
    moved = forward_temp(body, "t", "y")
    text = "\n".join(loops.format_stmt(moved))
    assert "t[" not in text
    assert "y[n, c] = exp(x[n, c])" in text and "y[n, c] = s[n] * y[n, c]" in text


def test_a_temporary_read_twice_or_beside_the_output_stays():
    read_twice = _row(_store_loop(), _sum(index=(n, r)), _scale())
    output_read = _row(_store_loop(), _scale(), loops.Store("z", (n,), loops.Load("y", (n, 0))))
    shifted = _row(
        _store_loop(),
        loops.For(
            c, 0, 99, loops.Store("y", (n, c), loops.Load("t", (n, c + 1))), kind="vectorized"
        ),
    )
    stored_twice = _row(_store_loop(), _store_loop(), _scale())
    for body in (read_twice, output_read, shifted, stored_twice):
        assert forward_temp(body, "t", "y") is None


def test_a_temporary_at_a_repeated_index_stays():
    # t[n, n] is written once a row but at no index of its own per element
    store = loops.For(c, 0, 8, loops.Store("t", (n, n), loops.Load("x", (n, c))))
    scale = loops.Store("y", (n, n), loops.Load("t", (n, n)))
    assert forward_temp(_row(store, scale), "t", "y") is None
