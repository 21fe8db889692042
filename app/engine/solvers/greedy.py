"""GH: the single-pass greedy heuristic (SPEC §3), and the insertion machinery
(`Greedy`) that AGH's moves reuse. The state it builds is
`app.engine.solvers.state.AllocationState`.

Mechanisms (each switchable off for ablations, see `Mechanisms`):
* M1 — feasibility: only candidates feasible for the type (memory, SLO at some
  batch, known quality; applied up front by the candidate table) and, live, the
  availability of each GPU type, the budget and the accuracy slack of the type.
  With M1 off the greedy ignores the live checks; its plan may then violate them
  (the evaluator says so).
* M2 — cost per effective coverage: an option's score is its incremental $ (0
  rental for spare capacity on a rented replica, replica rounding and storage for
  new capacity, change cost vs the live plan, delay penalty) divided by the share
  of the type's demand it can actually absorb. With M2 off the greedy takes the
  option with the cheapest replica (price, not price per served request).
* M3 — TP upgrade: before opening a new deployment, try doubling the TP degree of
  an active deployment of the same model, GPU and precision (re-checking every
  type already on it); taken when its cost per coverage is the best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.engine.plan.candidates import CandidateTable
from app.engine.plan.plan import Plan
from app.engine.solvers.orders import type_order
from app.engine.solvers.state import AllocationState, Index

# Accuracy mixing tries this many partners b (the cheapest of each error level).
BLEND_PARTNERS = 8


@dataclass(frozen=True, slots=True)
class Mechanisms:
    m1: bool = True
    m2: bool = True
    m3: bool = True


@dataclass(slots=True)
class _Option:
    kind: str  # "use" (spare + new replicas on d), "upgrade" (M3), "unmet"
    d: int
    frac: float
    cost: float
    d_from: int = -1  # for upgrades: the deployment being replaced
    d_with: int = -1  # for accuracy mixes: the partner b that takes `frac_with` next to d
    frac_with: float = 0.0


class Greedy:
    """GH's insertion machinery, reusable by AGH's repair moves."""

    def __init__(
        self,
        table: CandidateTable,
        mech: Mechanisms = Mechanisms(),
        banned: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        alpha: float = 0.0,
        rental_weight: float | np.ndarray = 0.0,
    ) -> None:
        self.t = table
        self.mech = mech
        # Shadow prices: under a binding budget every rented dollar, on scarce GPUs
        # every GPU, is worth more than its price. Rental and storage of candidate
        # d are priced at (1 + rental_weight[d]) in M2's scores (GH retries with
        # higher weights when its plan breaks the budget or a cap).
        self.rw = 1.0 + np.broadcast_to(np.asarray(rental_weight, dtype=np.float64), (table.size,))
        self.banned = banned  # (D,) bool: candidates a repair move may not use
        self.up = table.tp_upgrade if mech.m3 else None
        # Randomized choice (GRASP) for AGH's random starts: pick uniformly among the
        # new-deployment options within (1 + alpha) of the best score.
        self.rng = rng
        self.alpha = alpha

    @staticmethod
    def _round(replicas: np.ndarray) -> np.ndarray:
        """New replicas an option needs (whole ones)."""
        return np.asarray(np.ceil(replicas - 1e-9), dtype=np.float64)

    def insert(
        self, st: AllocationState, i: Index, allow_new: bool = True, leave: float = 0.0
    ) -> None:
        """Serve what remains of type i, except a share `leave` of its demand:
        repeatedly take the best option."""
        for _ in range(4 * st.D + 8):
            rem = st.remaining(i) - leave
            if rem <= 1e-9:
                return
            opt = self._best_option(st, i, rem, allow_new)
            if opt is None:
                return
            self._apply(st, i, opt)

    def _best_option(
        self, st: AllocationState, i: Index, rem: float, allow_new: bool
    ) -> _Option | None:
        """The best option to serve what remains of type i: every candidate scored
        at once (spare capacity, new replicas the live limits allow, accuracy room,
        whole-replica fills), then accuracy blends, a TP upgrade and leaving demand
        unmet compete with it. Over 80 lines: the vectorized scoring shares a dozen
        intermediate arrays; split, they would travel as arguments."""
        t, m = self.t, self.mech
        feas = t.feasible[i].copy()
        if self.banned is not None:
            feas &= ~self.banned
        load = t.load[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            spare = np.maximum(0.0, st.max_util * st.r - st.used)
            spare_frac = np.where(feas, spare / load, 0.0)
            # New replicas the live limits allow (M1) or unlimited (M1 off).
            if m.m1:
                free_gpus = np.maximum(0, t.gpu_available - st.gpu_used)[t.gpu]
                new_max = free_gpus // t.gpus_per_replica
                if st.budget is not None:
                    left = st.budget - st.spend
                    afford = np.floor(
                        np.maximum(0.0, left - np.where(st.r > 0, 0.0, t.storage_cost))
                        / np.maximum(t.replica_cost, 1e-12)
                    )
                    new_max = np.minimum(new_max, afford)
                if st.storage_cap is not None:
                    fits = (st.r > 0) | (st.storage_used + t.weight_gb <= st.storage_cap + 1e-9)
                    new_max = np.where(fits, new_max, 0)
            else:
                new_max = np.full(st.D, 10**9)
            if not allow_new:
                new_max = np.zeros(st.D)
            cap_frac = spare_frac + np.where(feas, new_max * st.max_util / load, 0.0)
            cover = np.minimum(rem, cap_frac)
            cover_any = np.where(feas, cover, 0.0)  # before the accuracy limit
            if m.m1:
                gain = st.acc_gain[i]
                acc_limit = np.where(gain < -1e-15, st.acc_slack[i] / -gain, np.inf)
                acc_limit = np.maximum(acc_limit, 0.0)
                cover = np.minimum(cover, acc_limit)
            cover = np.where(feas, cover, 0.0)
            need_load = np.maximum(0.0, cover * load - spare)
            k_new = np.where(cover > 0, self._round(need_load / st.max_util), 0.0)
            cost = self._option_cost(st, i, k_new, cover)
            if m.m2:
                # The last replica is usually only partly used. Also consider filling
                # only whole replicas (spare + floor(k) new ones) and leaving the
                # remainder for the next pick, often a smaller, cheaper GPU: the
                # better $ per coverage of the two wins, per candidate.
                k_floor = np.floor(need_load / st.max_util + 1e-9)
                partial = (k_floor >= 1) & (k_floor < k_new)
                cover_f = np.where(partial, (spare + k_floor * st.max_util) / load, 0.0)
                cost_f = self._option_cost(st, i, k_floor, cover_f)
                take_f = partial & (
                    cost_f * np.maximum(cover, 1e-12) < cost * np.maximum(cover_f, 1e-12)
                )
                cover = np.where(take_f, cover_f, cover)
                cost = np.where(take_f, cost_f, cost)
        best: _Option | None = None
        best_score = np.inf
        valid = cover > 1e-12
        if valid.any():
            if m.m2:
                score = np.where(valid, cost / np.maximum(cover, 1e-12), np.inf)
                low = float(score.min())
                # Ties (same $ per coverage) go to the candidate that needs the least
                # capacity per request: it leaves the most room for later types.
                tied = score <= low + 1e-9 * max(1.0, abs(low))
                d = int(np.argmin(np.where(tied, load, np.inf)))
                if self.rng is not None and self.alpha > 0 and st.r[d] == 0:
                    # Within alpha of the best, relative to its size: scores can
                    # be zero or negative (change-cost credits), so no ratio.
                    near = np.flatnonzero(score <= low + self.alpha * abs(low) + 1e-12)
                    near = near if near.size else np.array([d])
                    d = int(self.rng.choice(near))
                best = _Option("use", d, float(cover[d]), float(cost[d]))
                best_score = float(score[d])
            else:
                # Without M2: cheapest replica first (spare capacity counts as free).
                price = np.where(spare_frac > 1e-12, 0.0, t.replica_cost)
                score = np.where(valid, price, np.inf)
                d = int(np.argmin(score))
                best = _Option("use", d, float(cover[d]), float(cost[d]))
                best_score = float(cost[d] / cover[d])
            if m.m1 and m.m2:
                blend = self._blend_option(st, i, rem, load, spare, cover, cover_any, best_score)
                if blend is not None:
                    best, best_score = blend
        # M3: before opening a new deployment (or when nothing else is left), try
        # upgrading the TP of an active one.
        if self.up is not None and allow_new and (best is None or st.r[best.d] == 0):
            upg = self._upgrade_option(st, i, rem)
            if upg is not None and (best is None or upg.cost / upg.frac < best_score - 1e-12):
                best, best_score = upg, upg.cost / upg.frac
        # Leaving demand unmet is an option while the type's cap allows it.
        unmet_room = t.max_unmet[i] - st.u[i]
        if unmet_room > 1e-12:
            per = t.unmet_cost[i]
            if best is None or (m.m2 and per < best_score - 1e-12):
                return _Option("unmet", -1, float(min(rem, unmet_room)), per * min(rem, unmet_room))
        return best

    def _blend_option(
        self,
        st: AllocationState,
        i: Index,
        rem: float,
        load: np.ndarray,
        spare: np.ndarray,
        cover: np.ndarray,
        cover_any: np.ndarray,
        best_score: float,
    ) -> tuple[_Option, float] | None:
        """Accuracy mixing. When the cheapest candidate b is too inaccurate for the
        type (error above its bound) and the type has no slack to spend, serve a
        share θ on a more accurate candidate a so that the rest can go to b with
        the traffic-weighted error exactly at the bound. The pair's cost per unit
        (a's incremental $ for θ·rem plus b's $ per coverage for the rest) is what
        a is scored with; the best pair is taken if it beats every pure option. This
        is the lower convex hull of (error, $ per coverage) evaluated at the bound —
        the two-candidate basis an LP would pick — over partners b that are the
        cheapest of their error level (`BLEND_PARTNERS` at most): not only the
        very cheapest b, whose mix may need far more of a than a slightly more
        accurate b's."""
        gain = st.acc_gain[i]  # ε − e per unit routed
        with np.errstate(divide="ignore", invalid="ignore"):
            k_any = self._round(np.maximum(0.0, cover_any * load - spare) / st.max_util)
            cost_any = self._option_cost(st, i, k_any, cover_any)
            score_any = np.where(cover_any > 1e-12, cost_any / cover_any, np.inf)
        # Partners b: per error level among the candidates that break the bound
        # alone, the cheapest (a hull pair at ε uses one of them; the very
        # cheapest b may be so inaccurate that a less cheap one mixes better).
        viable = np.isfinite(score_any) & (gain < 0) & (score_any < best_score)
        bs = np.flatnonzero(viable)
        if bs.size == 0:
            return None
        bs = bs[np.lexsort((score_any[bs], -gain[bs]))]  # by error level, cheapest first
        level = np.round(-gain[bs], 9)
        first = np.ones(bs.size, dtype=bool)
        first[1:] = level[1:] != level[:-1]
        bs = bs[first]
        bs = bs[np.argsort(score_any[bs])[:BLEND_PARTNERS]]
        slack = max(0.0, float(st.acc_slack[i]))
        best: tuple[_Option, float] | None = None
        for b in bs.tolist():
            excess_b = -gain[b]
            with np.errstate(divide="ignore", invalid="ignore"):
                theta = np.clip((rem * excess_b - slack) / (rem * (excess_b + gain)), 0.0, 1.0)
                share = np.where((gain > 0) & (cover > 1e-12), np.minimum(cover, theta * rem), 0.0)
                k_a = self._round(np.maximum(0.0, share * load - spare) / st.max_util)
                cost_a = self._option_cost(st, i, k_a, share)
                # What b may take next to a's share without breaking the bound
                # (all of the rest when a's share is θ·rem; less when a's
                # capacity or the budget cut that share).
                y = np.clip((slack + gain * share) / excess_b, 0.0, np.maximum(0.0, rem - share))
                y = np.minimum(y, cover_any[b])
                total = cost_a + score_any[b] * y
                ratio = np.where(share > 1e-12, total / (share + y), np.inf)
            a = int(np.argmin(ratio))
            ok = np.isfinite(ratio[a]) and ratio[a] < best_score - 1e-12
            if ok and (best is None or ratio[a] < best[1]):
                opt = _Option("use", a, float(share[a]), float(cost_a[a]), -1, b, float(y[a]))
                best = opt, float(ratio[a])
        return best

    def _option_cost(
        self, st: AllocationState, i: Index, k_new: np.ndarray, cover: np.ndarray
    ) -> np.ndarray:
        """Incremental $ of covering `cover` of type i on each candidate with `k_new`
        new replicas: rental, storage when the deployment opens, delay penalty and
        the change cost against the live plan."""
        t = self.t
        cost: np.ndarray = (
            self.rw
            * (k_new * t.replica_cost + np.where((st.r == 0) & (k_new > 0), t.storage_cost, 0.0))
            + cover * t.delay_cost[i]
            + st.change_delta(slice(None), st.r + k_new)
        )
        return cost

    def _upgrade_option(self, st: AllocationState, i: Index, rem: float) -> _Option | None:
        """M3: double the TP of an active deployment and put type i on it too."""
        t = self.t
        assert self.up is not None
        active = np.flatnonzero((st.r > 0) & (self.up >= 0))
        best: _Option | None = None
        for d in active:
            d2 = int(self.up[d])
            if self.banned is not None and self.banned[d2]:
                continue
            if not t.feasible[i, d2] or st.r[d2] > 0:
                continue
            on = np.flatnonzero(st.x[:, d] > 0)
            if not t.feasible[on, d2].all():
                continue
            moved = float((st.x[on, d] * t.load[on, d2]).sum())
            # accuracy: moving types keeps their error unless precision/model changes
            # (same model and precision: unchanged), so only type i's share matters.
            gain = st.acc_gain[i, d2]
            lim = rem if gain >= 0 else min(rem, max(0.0, st.acc_slack[i] / -gain))
            if lim <= 1e-12:
                continue
            r_new = st.replicas_for(moved + lim * t.load[i, d2])
            extra_gpus = r_new * t.gpus_per_replica[d2] - st.r[d] * t.gpus_per_replica[d]
            if self.mech.m1 and extra_gpus > t.gpu_available[t.gpu[d]] - st.gpu_used[t.gpu[d]]:
                continue
            rent = (
                r_new * t.replica_cost[d2]
                - st.r[d] * t.replica_cost[d]
                + t.storage_cost[d2]
                - t.storage_cost[d]
            )
            if self.mech.m1 and st.budget is not None and st.spend + rent > st.budget + 1e-9:
                continue
            delta = (
                self.rw[d2] * rent
                + lim * t.delay_cost[i, d2]
                + float((st.x[on, d] * (t.delay_cost[on, d2] - t.delay_cost[on, d])).sum())
                + st.change_delta(d2, r_new)
                + st.change_delta(d, 0)
            )
            if best is None or delta / lim < best.cost / best.frac:
                best = _Option("upgrade", d2, lim, float(delta), d_from=int(d))
        return best

    def _apply(self, st: AllocationState, i: Index, opt: _Option) -> None:
        if opt.kind == "unmet":
            st.u[i] += opt.frac
            return
        if opt.kind == "upgrade":
            d, d2 = opt.d_from, opt.d
            for j in np.flatnonzero(st.x[:, d] > 0):
                f = float(st.x[j, d])
                st.route(j, d, -f)
                st.route(j, d2, f)
            st.set_replicas(d, 0)
            st.route(i, d2, opt.frac)
            st.fit_replicas(d2)
            return
        st.route(i, opt.d, opt.frac)
        need = st.replicas_for(st.used[opt.d])
        if need > st.r[opt.d]:
            st.set_replicas(opt.d, need)
        if opt.d_with >= 0 and opt.frac_with > 1e-12:
            # The mix's partner in the same step: otherwise the next pick spends
            # the accuracy slack a just bought on the cheapest (least accurate)
            # candidate instead.
            self._add_partner(st, i, opt.d_with, opt.frac_with)

    def _add_partner(self, st: AllocationState, i: Index, b: int, frac: float) -> None:
        """Route up to `frac` of type i to b, as far as b's spare capacity, the
        GPUs and money left (M1) and the type's accuracy slack allow."""
        t = self.t
        load = float(t.load[i, b])
        spare = max(0.0, st.max_util * float(st.r[b]) - float(st.used[b]))
        room = spare
        if self.mech.m1:
            free = int(t.gpu_available[t.gpu[b]] - st.gpu_used[t.gpu[b]])
            new = free // int(t.gpus_per_replica[b])
            if st.budget is not None:
                left = st.budget - st.spend - (t.storage_cost[b] if st.r[b] == 0 else 0.0)
                new = min(new, int(max(0.0, left) // max(float(t.replica_cost[b]), 1e-12)))
            room += max(0, new) * st.max_util
            excess = -float(st.acc_gain[i, b])
            if excess > 0:
                frac = min(frac, max(0.0, float(st.acc_slack[i])) / excess)
        frac = min(frac, room / load, st.remaining(i))
        if frac <= 1e-12:
            return
        st.route(i, b, frac)
        need = st.replicas_for(st.used[b])
        if need > st.r[b]:
            st.set_replicas(b, need)


def greedy(
    table: CandidateTable,
    order: Sequence[int] | None = None,
    mech: Mechanisms = Mechanisms(),
    current: Plan | None = None,
    rng: np.random.Generator | None = None,
    alpha: float = 0.0,
    give_up: Callable[[], bool] | None = None,
) -> AllocationState:
    """GH: phase 1 checks every type has a feasible path (a type with none is left
    unmet: the evaluator reports it with the reason); phase 2 serves the types in
    `order` (default: arrival rate descending) by cost per effective coverage.

    Constraints come first: when the plan breaks the budget or a cap on unmet
    demand (every mechanism on; an ablation is the single pass), GH tries again
    (`GH_RETRIES` passes at most) with the types in other orders (scarcest
    first, biggest footprint first) and shadow prices
    on what ran out — the budget (`BUDGET_PRICES`) and each GPU type a failed
    pass used up — that make M2 spend the scarce resource where nothing else
    will do. It returns the first feasible plan, else the best-ranked one
    (least shortfall, then cheapest). `give_up()` true (AGH's deadline) ends the
    retries."""
    order = list(order) if order is not None else type_order(table, "lambda_desc")
    st = _pass(table, order, mech, current, rng, alpha, 0.0)
    if mech != Mechanisms() or st.shortfall() <= 1e-9:
        return st  # ablations measure the paper's single pass without one mechanism
    best, best_sc = st, st.score()

    def attempt(o: list[int], weight: float | np.ndarray) -> AllocationState:
        nonlocal best, best_sc
        cand = _pass(table, o, mech, current, rng, alpha, weight)
        sc = cand.score()
        if sc[0] < best_sc[0] - 1e-9 or (sc[0] <= best_sc[0] + 1e-9 and sc[1] < best_sc[1]):
            best, best_sc = cand, sc
        return cand

    # Other orders (scarcest types first, biggest footprint first), and prices on
    # what ran out: the budget (fixed steps) and every GPU type a failed pass
    # used up (raised each time it runs out again).
    orders = [type_order(table, "scarcity"), type_order(table, "footprint_desc"), order]
    prices = BUDGET_PRICES if table.scenario.policy.budget is not None else (0.0, 0.0)
    lam_gpu = np.zeros(len(table.scenario.gpus))
    last, passes = st, 0
    for round_, lam in enumerate(prices):
        for o in orders:
            if passes >= GH_RETRIES or (give_up is not None and give_up()):
                return best
            if round_ > 0:  # orders alone first
                full = last.gpu_used >= 0.97 * np.maximum(table.gpu_available, 1)
                lam_gpu[full] = np.maximum(1.0, 4.0 * lam_gpu[full])
            # Multiplicative: a scarce GPU stays dearer than a plentiful one
            # however high the budget's price goes.
            last = attempt(o, (1.0 + lam) * (1.0 + lam_gpu[table.gpu]) - 1.0)
            passes += 1
            if best_sc[0] <= 1e-9:
                return best
    return best


# GH's retries when its plan breaks the budget or a cap (see `greedy`).
BUDGET_PRICES = (0.0, 10.0, 1000.0)
GH_RETRIES = 8


def _pass(
    table: CandidateTable,
    order: list[int],
    mech: Mechanisms,
    current: Plan | None,
    rng: np.random.Generator | None,
    alpha: float,
    rental_weight: float | np.ndarray,
) -> AllocationState:
    """One pass of GH over `order` (see `greedy`)."""
    st = AllocationState(table, current)
    g = Greedy(table, mech, rng=rng, alpha=alpha, rental_weight=rental_weight)
    servable = np.asarray(table.feasible.any(axis=1), dtype=bool)
    for i in order:
        if not servable[i]:
            st.u[i] = 1.0  # phase 1: no path; reported as unmet (and infeasible if ζ < 1)
    if (table.max_unmet > 0).any() and (table.scenario.policy.budget is not None or mech.m1):
        # Caps on unmet demand are hard, penalties soft: when scarce money or GPUs
        # may run out, first serve every type's mandatory share (1 − ζ), then the rest.
        for i in order:
            if servable[i] and table.max_unmet[i] > 0:
                g.insert(st, i, leave=float(table.max_unmet[i]))
    rest = order
    if table.scenario.policy.budget is not None:
        # With a budget, the optional shares go first to the types that avoid the
        # most penalty per $ of capacity (a knapsack's greedy order).
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = (
                np.where(table.feasible, table.load * table.replica_cost, np.inf).min(
                    axis=1, initial=np.inf
                )
                / table.scenario.policy.max_utilization
            )
            value = np.where(unit > 0, table.unmet_cost / unit, np.inf)
        rank = {i: k for k, i in enumerate(order)}
        rest = sorted(order, key=lambda i: (-value[i], rank[i]))
    for i in rest:
        if not servable[i]:
            continue
        g.insert(st, i)
        rem = st.remaining(i)
        if rem > 1e-9:
            st.u[i] += rem  # nothing left to serve it with: report honestly as unmet
    for d in np.flatnonzero(st.r > 0):
        st.fit_replicas(d)
    return st
