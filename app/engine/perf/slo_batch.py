"""B*: the largest concurrency at which a (query type, candidate) pair meets its
TTFT, TPOT and e2e SLOs and the KV cache holds the batch (SPEC §1.2), for every
pair of the candidate table at once.

`max_slo_batch` computes everything that does not depend on B once, solves the
constraints for B directly (they are affine or quadratic in B piece by piece) and
checks the answer with the same expressions `ttft_s` and `tpot_s` evaluate, so the
result equals trying every B (tests check this against brute force).

Calibration factors (`ttft_factor`, `tpot_factor`: predicted latencies are
multiplied by them) enter exactly: TTFT·cT <= S1 is TTFT <= S1/cT, TPOT·cP <= S2 is
TPOT <= S2/cP, and cT·TTFT + f·cP·TPOT <= E is TTFT + f·(cP/cT)·TPOT <= E/cT; the
searches run on the model's own latencies with those SLOs and e2e weight.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.perf.model import (
    FloatArray,
    Hardware,
    _Decode,
    _decode_coeffs,
    _tpot_from_prefill,
    _ttft_from_prefill,
    kv_capacity_tokens,
    prefill_s,
)
from app.engine.perf.profiles import EngineProfile

BoolArray = NDArray[np.bool_]
Predicate = Callable[[FloatArray], BoolArray]


def max_slo_batch(
    hw: Hardware,
    h: ArrayLike,
    f: ArrayLike,
    ttft_slo: ArrayLike,
    tpot_slo: ArrayLike,
    e2e_slo: ArrayLike,
    prof: EngineProfile,
    ttft_factor: ArrayLike = 1.0,
    tpot_factor: ArrayLike = 1.0,
) -> NDArray[np.int64]:
    """B*: the largest concurrency (0 if none) at which TTFT, TPOT and e2e meet
    their SLOs and the KV cache holds B·(h+f) tokens; all pairs at once. With
    factors, the SLOs apply to the predicted latencies times the factors.

    Equal to trying every B with `ttft_s(..., f=f)`/`tpot_s`. Prefill does not
    depend on B and is computed once, with the B-independent parts of a decode step.

    * ω = 0 (no admission wait): TTFT is affine in B and, for a dense model, TPOT is
      the maximum of a few affine pieces (memory- or compute-bound, micro-batch 1 or
      B/m), so e2e = TTFT + f·TPOT is too: the bound is solved for piece by piece,
      then checked with the very expressions `ttft_s`/`tpot_s` evaluate, at B* and
      B*+1. Where the check fails (rounding; MoE, whose expert reads are not of
      that form) an integer bisection settles it inside the bracket the check left —
      valid because every constraint rises with B.
    * ω > 0: the wait ω·TPOT(B)·min(f/B, S) splits B >= 2 in two regions. Below
      the knee f/S the wait is ω·S·TPOT(B) and every constraint rises with B (a
      feasible prefix). Above it the wait is ω·f·TPOT(B)/B, which falls before it
      rises: there TTFT and e2e are quasi-convex and TPOT rises, so the feasible B
      form an interval whose right end, when it exists, is B* (see
      `_max_batch_wait`); otherwise B* is the end of the prefix below the knee,
      or B = 1 (which has no wait)."""
    h = np.asarray(h, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    c_t = np.asarray(ttft_factor, dtype=np.float64)
    c_p = np.asarray(tpot_factor, dtype=np.float64)
    p = prefill_s(hw, h, prof)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.clip(np.floor(kv_capacity_tokens(hw, prof) / (h + f)), 0, prof.max_batch)
    s1 = np.asarray(ttft_slo, dtype=np.float64) / c_t
    s2 = np.asarray(tpot_slo, dtype=np.float64) / c_p
    s3 = np.asarray(e2e_slo, dtype=np.float64) / c_t
    fe = f * (c_p / c_t)  # exactly f when the factors are equal (x/x == 1)
    shape = np.broadcast_shapes(cap.shape, p.shape, s1.shape, s2.shape, s3.shape, fe.shape)
    pairs = _Pairs(_decode_coeffs(hw, h, f, prof), p, f, fe, s1, s2, s3, prof, shape)
    cap = np.broadcast_to(cap, shape)
    if prof.admission_wait:
        return _max_batch_wait(pairs, cap).astype(np.int64)

    return _settle(pairs, "ok", pairs.affine_bound(cap), cap).astype(np.int64)


def _settle(pairs: _Pairs, pred: str, est: FloatArray, cap: FloatArray) -> FloatArray:
    """The largest b in [0, cap] with `pred` (a method of `pairs`, true then false in
    b; b = 0 counts as true), given the estimate `est`: checked at est and est+1;
    where the check fails, an integer bisection inside the bracket it leaves."""
    ok = getattr(pairs, pred)
    good = (est < 1.0) | ok(np.maximum(est, 1.0))
    done = good & ((est >= cap) | ~ok(np.minimum(est + 1.0, cap)))
    if done.all():
        return est
    todo = ~done
    lo = np.where(good, est, 0.0)[todo]
    hi = np.where(good, cap, est - 1.0)[todo]
    est = est.copy()
    est[todo] = _last_true(getattr(pairs.take(todo), pred), lo, hi)
    return est


def _max_batch_wait(pairs: _Pairs, cap: FloatArray) -> FloatArray:
    """max_slo_batch with an admission wait (ω > 0); see there.

    bp, the largest B meeting the TPOT SLO, bounds everything. Above the knee
    (B >= max(2, ⌈f/S⌉)), for dense models, the real interval [lo, hi] of B meeting
    TTFT and e2e is solved for (quadratics in B, piece by piece); R = floor(hi) is
    accepted where R meets the SLOs and R+1 does not, and the region is empty where
    no integer lies within 1e-6 of the interval. The rest above the knee (MoE,
    near-ties, failed checks) is searched by bisection. Pairs with nothing above
    the knee take the end of the feasible prefix [2, ⌊f/S⌋] below it (bisection;
    everything rises with B there), else B = 1 if it is feasible."""
    bp = _settle(pairs, "ok_tpot", pairs.affine_bound(cap, tpot_only=True), cap)
    res = np.where((cap >= 1.0) & pairs.ok(np.ones(pairs.shape)), 1.0, 0.0)
    two = bp >= 2.0
    if not two.any():
        return res
    knee = np.broadcast_to(pairs.f / pairs.prof.admission_wait_max_steps, pairs.shape)
    low2 = np.maximum(np.ceil(knee), 2.0)  # first B of the region above the knee
    lo_r, hi_r = pairs.wait_interval()
    np.fmax(lo_r, low2, out=lo_r)
    np.fmin(hi_r, bp, out=hi_r)
    tol = 1e-6
    with np.errstate(invalid="ignore"):
        right = np.floor(hi_r)
        claim = two & (np.ceil(lo_r) <= right)
        empty = two & (np.ceil(lo_r - tol) > np.floor(hi_r + tol)) & ~pairs.moe()
    b = np.where(claim, right, 2.0)
    accept = claim & pairs.ok(b) & ((b >= bp) | ~pairs.ok(np.minimum(b + 1.0, bp)))
    res = np.where(accept, right, res)
    found = accept.copy()
    todo = two & ~accept & ~empty & (low2 <= bp)
    if todo.any():
        sub = pairs.take(todo)
        hi = bp[todo]
        lo = low2[todo]
        # the first B in [low2, bp] from which the excess stops falling: its minimum
        bmin = _first_true(
            lambda b: (b >= hi) | (sub.excess(np.minimum(b + 1.0, hi)) >= sub.excess(b)), lo, hi
        )
        last = _last_true(lambda b: sub.excess(b) <= 0.0, bmin, hi)
        hit = sub.excess(bmin) <= 0.0
        res[todo] = np.where(hit, last, res[todo])
        found[todo] = hit
    below = two & ~found & (np.floor(knee) >= 2.0)
    if below.any():
        sub = pairs.take(below)
        hi = np.minimum(np.floor(knee), bp)[below]
        lo = np.full(hi.shape, 2.0)
        ok2 = sub.ok(lo)
        last = _last_true(sub.ok, lo, hi)
        res[below] = np.where(ok2, last, res[below])
    return res


def _quadratic_interval(
    qa: FloatArray, qb: FloatArray, qc: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Where qa·b² + qb·b + qc <= 0 (qa >= 0): an interval [lo, hi] (±inf for open
    ends; lo > hi when empty; no real root: [vertex + 1, vertex], empty)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        disc = qb * qb
        disc -= 4.0 * qa * qc
        real = disc >= 0.0
        sq = np.sqrt(np.maximum(disc, 0.0))
        q = np.copysign(sq, qb)
        q += qb
        q *= -0.5  # stable: no cancellation
        r1 = q / qa
        r2 = qc / q
        lo, hi = np.minimum(r1, r2), np.maximum(r1, r2)
        if not real.all():
            vertex = -qb / (2.0 * qa)
            lo = np.where(real, lo, vertex + 1.0)
            hi = np.where(real, hi, vertex)
        flat = qa <= 0.0
        if flat.any():  # linear: qb·b + qc <= 0
            root = -qc / qb
            lin_lo = np.where(qb < 0.0, root, np.where((qb == 0.0) & (qc <= 0.0), -np.inf, np.inf))
            lin_hi = np.where(qb > 0.0, root, np.where((qb == 0.0) & (qc > 0.0), -np.inf, np.inf))
            lo = np.where(flat, lin_lo, lo)
            hi = np.where(flat, lin_hi, hi)
    return lo, hi


class _Pairs:
    """The pairs a search runs on (arrays broadcasting to `shape`, or 1-D after
    `take`), with everything that does not depend on B precomputed, and the
    predicates of B the searches use. `fe` is the weight of TPOT in the e2e
    constraint (f, or f·cP/cT with calibration factors)."""

    __slots__ = ("dec", "f", "fe", "p", "prof", "s1", "s2", "s3", "shape")

    def __init__(
        self,
        dec: _Decode,
        p: FloatArray,
        f: FloatArray,
        fe: FloatArray,
        s1: FloatArray,
        s2: FloatArray,
        s3: FloatArray,
        prof: EngineProfile,
        shape: tuple[int, ...],
    ) -> None:
        self.dec, self.p, self.f, self.fe, self.prof, self.shape = dec, p, f, fe, prof, shape
        self.s1, self.s2, self.s3 = s1, s2, s3

    def take(self, mask: BoolArray) -> _Pairs:
        """The pairs `mask` (of shape `shape`) selects, as 1-D arrays."""

        def t(x: FloatArray) -> FloatArray:
            return np.broadcast_to(x, mask.shape)[mask]

        return _Pairs(
            self.dec.take(mask),
            t(self.p),
            t(self.f),
            t(self.fe),
            t(self.s1),
            t(self.s2),
            t(self.s3),
            self.prof,
            (int(mask.sum()),),
        )

    def times(self, b: FloatArray) -> tuple[FloatArray, FloatArray]:
        t2 = _tpot_from_prefill(self.dec, self.p, self.f, b, self.prof)
        return _ttft_from_prefill(self.p, b, self.prof, self.f, t2), t2

    def ok(self, b: FloatArray) -> BoolArray:
        t1, t2 = self.times(b)
        ok = t1 <= self.s1
        ok &= t2 <= self.s2
        t2 *= self.fe
        t2 += t1
        ok &= t2 <= self.s3
        return ok

    def ok_tpot(self, b: FloatArray) -> BoolArray:
        return _tpot_from_prefill(self.dec, self.p, self.f, b, self.prof) <= self.s2

    def excess(self, b: FloatArray) -> FloatArray:
        """max(TTFT − SLO, e2e − SLO) at b: <= 0 where both hold."""
        t1, t2 = self.times(b)
        return np.maximum(t1 - self.s1, t1 + self.fe * t2 - self.s3)

    def moe(self) -> BoolArray:
        """Pairs whose decode reads only the experts it touches (not of affine form)."""
        d = self.dec
        if d.w_seq is None:
            return np.zeros(self.shape, dtype=bool)
        return np.broadcast_to(d.w_seq < d.w_all, self.shape)

    def tpot_pieces(self) -> list[tuple[FloatArray, FloatArray]]:
        """TPOT(B) for B >= 1 of a dense model as the maximum of affine pieces
        a + s·B: micro-batch B/m memory- or compute-bound, and micro-batch 1 (B <= m;
        dominated when m = 1), where only the interference grows."""
        d, prof = self.dec, self.prof
        g = (prof.prefill_interference / np.maximum(self.f, 1.0)) * self.p  # per extra seq
        per = d.per_seq / d.m
        base = d.fixed - g
        pieces = [(d.m * d.w_all + base, d.kv + per + g), (base, d.comp + per + g)]
        if np.any(d.m > 1.0):
            one = d.m * np.maximum(d.w_all + d.kv, d.comp)
            one += d.fixed + d.per_seq - g
            pieces.append((one, g))
        return pieces

    def affine_bound(self, cap: FloatArray, tpot_only: bool = False) -> FloatArray:
        """ω = 0 (or TPOT alone): the largest B in [0, cap] meeting the SLOs, solved
        on the affine pieces a + s·B of TTFT(B) and (dense) TPOT(B) for B >= 1: the
        smallest (SLO − a)/s, floored (an estimate to check: rounding, and MoE)."""
        p, fe, prof = self.p, self.fe, self.prof
        kp = prof.prefill_contention * p
        t1a = prof.prefill_overhead_s + p - kp  # TTFT(B) = t1a + kp·B
        e2e_room = self.s3 - t1a
        with_e2e = not tpot_only and bool(np.isfinite(self.s3).any())
        # x/0 is ±inf (and 0/0 NaN, which fmin skips): a flat piece bounds nothing
        # or everything, as it should.
        with np.errstate(divide="ignore", invalid="ignore"):
            est = np.broadcast_to(cap, self.shape).astype(np.float64)
            if not tpot_only:
                np.fmin(est, (self.s1 - t1a) / kp, out=est)
            for a, sl in self.tpot_pieces():
                np.fmin(est, (self.s2 - a) / sl, out=est)
                if with_e2e:
                    num = e2e_room - fe * a
                    den = fe * sl
                    den += kp
                    num /= den
                    np.fmin(est, num, out=est)
        np.floor(est, out=est)
        np.maximum(est, 0.0, out=est)
        return est

    def wait_interval(self) -> tuple[FloatArray, FloatArray]:
        """ω > 0, dense, above the knee: the real interval of B >= 1 where TTFT and
        e2e meet their SLOs. With TPOT = max_k(a_k + s_k·B) and TTFT = t1a + kp·B +
        ω·f·TPOT/B, TTFT <= S is, per piece, kp·B² + (t1a + ω·f·s_k − S)·B + ω·f·a_k
        <= 0 and e2e <= E is (kp + fe·s_k)·B² + (t1a + fe·a_k + ω·f·s_k − E)·B +
        ω·f·a_k <= 0: each an interval; their intersection."""
        p, f, fe, prof = self.p, self.f, self.fe, self.prof
        kp = np.broadcast_to(prof.prefill_contention * p, self.shape)
        t1a = prof.prefill_overhead_s + p - kp
        wf = prof.admission_wait * f
        with_e2e = bool(np.isfinite(self.s3).any())
        lo = np.full(self.shape, -np.inf)
        hi = np.full(self.shape, np.inf)
        for a, sl in self.tpot_pieces():
            c = wf * a
            rows = [(kp, t1a + wf * sl - self.s1, c)]
            if with_e2e:
                rows.append((kp + fe * sl, t1a + fe * a + wf * sl - self.s3, c))
            for qa, qb, qc in rows:
                lo_k, hi_k = _quadratic_interval(
                    np.broadcast_to(qa, self.shape),
                    np.broadcast_to(qb, self.shape),
                    np.broadcast_to(qc, self.shape),
                )
                np.fmax(lo, lo_k, out=lo)
                np.fmin(hi, hi_k, out=hi)
        return lo, hi


def _last_true(pred: Predicate, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Per element, the largest b in [lo, hi] with pred(b), `pred` true then false
    on [lo, hi] and lo taken as true (it is returned where nothing above holds)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = hi > lo
        if not active.any():
            return lo
        mid = np.where(active, np.ceil((lo + hi) / 2.0), lo)
        good = pred(np.maximum(mid, 1.0)) & active
        lo = np.where(good, mid, lo)
        hi = np.where(active & ~good, mid - 1.0, hi)


def _first_true(pred: Predicate, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Per element, the smallest b in [lo, hi] with pred(b), `pred` false then true
    on [lo, hi] and true at hi."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = hi > lo
        if not active.any():
            return lo
        mid = np.floor((lo + hi) / 2.0)
        good = pred(mid)
        hi = np.where(active & good, mid, hi)
        lo = np.where(active & ~good, mid + 1.0, lo)
