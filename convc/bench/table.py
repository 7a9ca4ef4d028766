"""Benchmark results as Markdown tables: times, speed ratios and throughput, checks.

Stage: benchmark output. Input: `CaseResult`s of one or more thread counts.
Output: Markdown text ready for a terminal or benchmarks/RESULTS.md.

The subject is convc's compiled code when it ran, else the first peer that
did; a ratio `peer/subject` is the peer's median over the subject's median,
so 2x means the subject took half the peer's time; the ratio of the
minima follows in parentheses. GFLOP/s is 2*MACs per
second (MACs from the layer report), shown for cases that multiply tensors,
with the percentage of one core's FP32 FMA peak (measured: `peak.measured_peak`) times
the thread count. On more than one thread, "convc speed-up" is convc's time on one
thread over its time on the row's threads, both timed in the same rounds
(`CaseResult.one_thread`).
"""

from __future__ import annotations

from .peak import measured_peak
from .peers import PEERS
from .runner import ONE_THREAD, CaseResult, PeerResult

#: A runner whose median block took this much longer than its fastest was slowed in some
#: blocks by something outside it (another process, a vCPU the host descheduled: on a
#: 2-vCPU VM, medians of two-thread runs moved by up to 10x for every runner while
#: minima held). Such cases are listed under the tables, so their medians are read with
#: care (their minima, or a run again).
NOISY_SPREAD = 1.25


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 1000 else f"{ms:.3g}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(headers: list[str], rows: list[list]) -> list[str]:
    return [_row(headers), _row(["---"] * len(headers)), *(_row(r) for r in rows)]


def _key(result: CaseResult) -> list:
    return [result.case, result.batch, result.threads]


def subject_of(results: list[CaseResult], peers: list[str]) -> str | None:
    """The peer the ratios are taken against: convc if it was timed anywhere, else the first."""
    timed = [p for p in peers if any(r.peers[p].median_s for r in results if p in r.peers)]
    return timed[0] if timed else None


def _times(results, peers) -> list[str]:
    headers = ["case", "N", "threads", *(f"{PEERS[p].label} ms" for p in peers)]
    rows = []
    for r in results:
        cells = [
            f"{_ms(r.peers[p].median_s)} ({_ms(r.peers[p].min_s)})" if r.peers[p].median_s else "-"
            for p in peers
        ]
        rows.append(_key(r) + cells)
    return _table(headers, rows)


def _gflops(result: CaseResult, peer: str, peak: float) -> str:
    median = result.peers[peer].median_s
    if not median or not result.macs:
        return "-"
    gflops = 2 * result.macs / median / 1e9
    return f"{gflops:.3g} ({100 * gflops / (peak * result.threads):.0f}%)"


def _ratio(peer: PeerResult, subject: PeerResult) -> str:
    """Median over median, then min over min: the second resists noise that only slows."""
    if not (peer.median_s and subject.median_s):
        return "-"
    return f"{_factor(peer.median_s / subject.median_s)} ({_factor(peer.min_s / subject.min_s)})"


def _factor(ratio: float) -> str:
    return f"{ratio:.3g}x" if ratio < 100 else f"{ratio:.0f}x"


def _speed(results, peers, subject, peak) -> list[str]:
    others = [p for p in peers if p != subject]
    headers = ["case", "N", "threads"]
    headers += [f"{PEERS[p].label} / {PEERS[subject].label}" for p in others]
    scaled = subject == "convc" and any(r.one_thread for r in results)
    if scaled:
        headers.append("convc speed-up over one thread")
    headers += [f"{PEERS[p].label} GFLOP/s (% peak)" for p in peers]
    rows = []
    for r in results:
        ratios = [_ratio(r.peers[p], r.peers[subject]) for p in others]
        if scaled:
            ratios.append(_ratio(r.one_thread, r.peers[subject]) if r.one_thread else "-")
        rows.append(_key(r) + ratios + [_gflops(r, p, peak) for p in peers])
    return _table(headers, rows)


def _checks(results, peers) -> list[str]:
    headers = ["case", "N", "threads"]
    timed_setup = [p for p in peers if PEERS[p].setup]
    headers += [f"{PEERS[p].label} {PEERS[p].setup} s" for p in timed_setup]
    headers += [f"{PEERS[p].label} max err" for p in peers if p != "numpy"]
    rows = []
    for r in results:
        setup = [_optional(r.peers[p].setup_s, ".3f") for p in timed_setup]
        errors = [_optional(r.peers[p].max_err, ".2g") for p in peers if p != "numpy"]
        rows.append(_key(r) + setup + errors)
    return _table(headers, rows)


def _optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _notes(results, peers) -> list[str]:
    return [
        f"- {label}, {r.case} (N={r.batch}, {r.threads} threads): {timed.note}"
        for r in results
        for label, timed in _runners(r, peers)
        if timed.note
    ]


def _runners(result: CaseResult, peers) -> list[tuple[str, PeerResult]]:
    """(label, result) of each runner of a case: the peers, then convc on one thread."""
    runners = [(PEERS[p].label, result.peers[p]) for p in peers]
    return runners + ([(ONE_THREAD, result.one_thread)] if result.one_thread else [])


def _noisy(results, peers) -> list[str]:
    lines = []
    for r in results:
        timed = [p for p in peers if r.peers[p].median_s and r.peers[p].min_s]
        spread = {p: r.peers[p].median_s / r.peers[p].min_s for p in timed}
        flagged = [f"{PEERS[p].label} {s:.2f}x" for p, s in spread.items() if s > NOISY_SPREAD]
        if flagged:
            lines.append(f"- {r.case} (N={r.batch}, {r.threads} threads): {', '.join(flagged)}")
    return lines


def format_results(results: list[CaseResult], peers: list[str], peak: float | None = None) -> str:
    """The three tables (times, speed, checks), the cases whose medians some blocks
    slowed (`NOISY_SPREAD`) and notes on peers that were not timed.

    `peak` is one core's FP32 peak in GFLOP/s (default: this core's, measured);
    percentages are of `peak * threads`.
    """
    peak = measured_peak() if peak is None else peak
    subject = subject_of(results, peers)
    lines = ["Median (min) milliseconds per run, interleaved blocks:", ""]
    lines += _times(results, peers)
    if subject is not None:
        title = (
            f"Time ratios to {PEERS[subject].label}, medians (minima); "
            f"GFLOP/s of the medians (% of {peak:.3g} per core):"
        )
        lines += ["", title, ""]
        lines += _speed(results, peers, subject, peak)
    lines += ["", "Setup seconds (compile, session) and max |output - interpreter| per peer:", ""]
    lines += _checks(results, peers)
    noisy = _noisy(results, peers)
    if noisy:
        spread = f"{100 * (NOISY_SPREAD - 1):.0f}%"
        lines += ["", f"Noisy: a median more than {spread} above its minimum (median / minimum):"]
        lines += noisy
    notes = _notes(results, peers)
    if notes:
        lines += ["", "Not timed:", *notes]
    return "\n".join(lines) + "\n"
