"""Validate (and optionally re-fit) the performance model against measurements.

    python3 bench/validate_perf.py                 # MAPE of the committed profiles
    python3 bench/validate_perf.py --fit           # fit the constants + held-out checks
    python3 bench/validate_perf.py --data-dir DIR  # measurements elsewhere

Data sets (from ../shared/data/measured, see its README for origin and licence):
* Splitwise table (Llama-2-70B, BLOOM-176B, FP16, A100/H100, TP 2/4/8): prompt_time
  is the prefill of the whole batch, token_time the per-token decode without
  prefill interference. Checked against SPLITWISE_PROFILE (static batching: κ = 1,
  γ = 0, no admission wait).
* H100 silicon runs, continuous batching: Llama-3.1-70B fp8 on vLLM (TP 2/4/8,
  concurrency 4/8/16) and Llama-3.1-8B bf16 on TensorRT-LLM (TP 1/2/4/8, concurrency
  8/16). Each row is checked against its engine's profile (column `backend`):
  vLLM -> DEFAULT_PROFILE (vllm-2025, the planning default), TensorRT-LLM ->
  TRTLLM_PROFILE (trtllm-2025, with the admission wait ω: its TTFT carries about one
  inter-completion interval, ω·TPOT·osl/concurrency). Target at concurrency <= 16,
  as a whole and per engine; the rows above 16 are printed for information.

Targets (SPEC §2): TPOT MAPE <= 20% and TTFT MAPE <= 30% on each data set.
`--fit` re-fits all three profiles (each on its own rows) and runs held-out checks:
per engine (re-fit on part of that engine's rows), and cross-engine (a profile fitted
on one engine's rows predicting the other engine's rows: what planning with the
wrong engine's profile costs). It needs scipy (bench only; the app does not).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_cases import (
    DEFAULT_DATA_DIR,
    SILICON_MAX_CONCURRENCY,
    Cases,
    Profiles,
    case_mape,
    load_silicon,
    load_splitwise,
)

from app.engine.perf.model import (
    DEFAULT_PROFILE,
    SPLITWISE_PROFILE,
    TRTLLM_PROFILE,
    EngineProfile,
    with_overrides,
)

TTFT_TARGET = 30.0
TPOT_TARGET = 20.0

FIT_PARAMS: tuple[str, ...] = (
    "bw_efficiency",
    "compute_efficiency",
    "step_overhead_s",
    "step_overhead_per_layer_s",
    "prefill_overhead_s",
    "prefill_contention",
    "prefill_interference",
    "allreduce_latency_s",
    "admission_wait",
)
# Physically sensible ranges: efficiencies are fractions of datasheet peak; overheads
# are non-negative and below what a single decode step could hide; κ and γ are shares;
# ω counts inter-completion intervals (1 = the newcomer waits for the next slot).
BOUNDS: dict[str, tuple[float, float]] = {
    "bw_efficiency": (0.3, 1.0),
    "compute_efficiency": (0.3, 1.0),
    "step_overhead_s": (0.0, 0.05),
    "step_overhead_per_layer_s": (0.0, 1e-3),
    "prefill_overhead_s": (0.0, 0.3),
    "prefill_contention": (0.0, 1.0),
    "prefill_interference": (0.0, 1.0),
    "allreduce_latency_s": (0.0, 1e-4),
    "admission_wait": (0.0, 2.0),
}
# Splitwise: a batch's prompts are prefilled together (κ = 1), token_time is measured
# without prefills interleaved (γ = 0) and prompt_time is the batch's prefill (ω = 0).
SPLITWISE_FIXED = {"prefill_contention": 1.0, "prefill_interference": 0.0, "admission_wait": 0.0}
# Silicon: each engine ran one model (one layer count), so a fixed per-step overhead
# and a per-layer one cannot be told apart; the per-layer form is kept (the shared
# data's README: ~2.5 ms at 32 layers, ~6 ms at 80, i.e. ~75 µs per layer for both).
# vLLM's TTFT shows no admission wait (least squares coefficient 0, see the diagnostic).
VLLM_FIXED = {"step_overhead_s": 0.0, "admission_wait": 0.0}
TRTLLM_FIXED = {"step_overhead_s": 0.0}

# silicon `backend` -> the committed profile for that engine
ENGINE_PROFILES: dict[str, EngineProfile] = {"vllm": DEFAULT_PROFILE, "trtllm": TRTLLM_PROFILE}
ENGINE_FIXED: dict[str, dict[str, float]] = {"vllm": VLLM_FIXED, "trtllm": TRTLLM_FIXED}


@dataclass
class DataSets:
    splitwise: Cases
    silicon: Cases  # concurrency <= 16 (target), both engines
    silicon_high: Cases  # concurrency > 16 (information)
    silicon_rows: int


def load_all(data_dir: Path) -> DataSets:
    sw = load_splitwise(data_dir)
    si = load_silicon(data_dir)
    low = si.batch <= SILICON_MAX_CONCURRENCY
    return DataSets(
        splitwise=sw,
        silicon=si.subset(low, "silicon-h100 c<=16"),
        silicon_high=si.subset(~low, "silicon-h100 c>16 (info)"),
        silicon_rows=si.raw_rows,
    )


def group_mask(cases: Cases, pred: Callable[[int], object]) -> np.ndarray:
    return np.array([bool(pred(i)) for i in range(len(cases))])


def _row(label: str, n: int, ttft: float, tpot: float) -> str:
    return f"{label:<44s} {n:>4d} {ttft:>9.1f}% {tpot:>9.1f}%"


def _pname(profile: Profiles) -> str:
    if isinstance(profile, EngineProfile):
        return profile.name
    return "per engine"


def report(
    cases: Cases, profile: Profiles, title: str, groups: bool = True, indent: str = "  "
) -> tuple[float, float]:
    t1, t2 = case_mape(cases, profile)
    print(_row(f"{title} [{_pname(profile)}]", len(cases), t1, t2))
    if groups:
        for g in cases.groups():
            sub = cases.subset(np.array([x == g for x in cases.group]))
            a, b = case_mape(sub, profile)
            print(_row(indent + g, len(sub), a, b))
    return t1, t2


def verdict(name: str, ttft: float, tpot: float) -> None:
    def pf(v: float, t: float) -> str:
        return "PASS" if v <= t else f"MISS by {v - t:.1f} pt"

    print(
        f"  {name:<20s} TTFT {ttft:5.1f}% (<= {TTFT_TARGET:.0f}%) {pf(ttft, TTFT_TARGET):<16s}"
        f" TPOT {tpot:5.1f}% (<= {TPOT_TARGET:.0f}%) {pf(tpot, TPOT_TARGET)}"
    )


def print_table(
    ds: DataSets, sw_prof: EngineProfile, si_profs: Mapping[str, EngineProfile]
) -> dict[str, tuple[float, float]]:
    """MAPE per data set (silicon: each row with its engine's profile), per engine
    and per group; then the verdicts against the targets."""
    print(f"{'data set / group (profile)':<44s} {'N':>4s} {'TTFT MAPE':>10s} {'TPOT MAPE':>10s}")
    out = {"splitwise": report(ds.splitwise, sw_prof, "splitwise")}
    si = ds.silicon
    out["silicon-h100"] = report(si, si_profs, si.name, groups=False)
    for eng in si.engines():
        out[f"silicon-h100 {eng}"] = report(
            si.of_engine(eng), si_profs[eng], f"  {eng}", indent="    "
        )
    hi = ds.silicon_high
    report(hi, si_profs, hi.name, groups=False)
    for eng in hi.engines():
        report(hi.of_engine(eng), si_profs[eng], f"  {eng}", indent="    ")
    print(f"targets: TTFT MAPE <= {TTFT_TARGET:.0f}%, TPOT MAPE <= {TPOT_TARGET:.0f}%")
    for name, (a, b) in out.items():
        verdict(name, a, b)
    return out


def ttft_diagnostic(cases: Cases) -> None:
    """The evidence for the admission wait: per group, least squares of the measured
    TTFT on [1, TPOT·osl/c, isl]. A coefficient ~1 on the middle term means each new
    request waited one inter-completion interval (osl/c decode steps) before its
    first token (TensorRT-LLM's rows); ~0 means none (vLLM's)."""
    print("silicon TTFT diagnostic, per group: TTFT ~ a + k·TPOT·osl/c + b·isl (least squares)")
    for g in cases.groups():
        m = np.array([x == g for x in cases.group])
        x = cases.tpot[m] * cases.f[m] / cases.batch[m]
        a = np.c_[np.ones(m.sum()), x, cases.h[m]]
        coef, *_ = np.linalg.lstsq(a, cases.ttft[m], rcond=None)
        err = 100.0 * np.mean(np.abs(a @ coef - cases.ttft[m]) / cases.ttft[m])
        print(f"  {g:<42s} k = {round(coef[1], 2) + 0.0:5.2f} -> MAPE {err:4.1f}% (N={m.sum()})")


# ---------------------------------------------------------------- fitting


def fit_profile(
    cases: Cases,
    base: EngineProfile,
    fixed: dict[str, float] | None = None,
    seed: int = 0,
    maxiter: int = 200,
) -> EngineProfile:
    """Constants minimising 0.5·(TTFT MAPE + TPOT MAPE) on `cases`, within BOUNDS:
    a seeded differential evolution (global, derivative-free: the objective has
    kinks from max() and |·|) polished by bounded Nelder–Mead."""
    try:
        from scipy.optimize import differential_evolution, minimize
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("--fit needs scipy: pip install scipy") from exc
    fixed = fixed or {}
    free = [p for p in FIT_PARAMS if p not in fixed]
    bounds = [BOUNDS[p] for p in free]

    def make(x: np.ndarray) -> EngineProfile:
        return with_overrides(base, **dict(zip(free, map(float, x), strict=True)), **fixed)

    def objective(x: np.ndarray) -> float:
        a, b = case_mape(cases, make(x))
        return 0.5 * (a + b)

    de = differential_evolution(
        objective, bounds, seed=seed, maxiter=maxiter, tol=1e-7, polish=False
    )
    nm = minimize(
        objective,
        de.x,
        method="Nelder-Mead",
        bounds=bounds,
        options={"maxiter": 4000, "xatol": 1e-10, "fatol": 1e-6},
    )
    best = nm.x if nm.fun <= de.fun else de.x
    return make(np.clip(best, [lo for lo, _ in bounds], [hi for _, hi in bounds]))


def _fmt(p: EngineProfile) -> str:
    return ", ".join(f"{k}={getattr(p, k):.4g}" for k in FIT_PARAMS)


def _held_out_header() -> None:
    print(
        f"  {'train -> held-out':<40s} {'Ntr':>4s} {'Nte':>4s} "
        f"{'train TTFT/TPOT':>16s} {'held-out TTFT/TPOT':>19s} {'full-fit on held-out':>21s}"
    )


def held_out(
    cases: Cases,
    base: EngineProfile,
    fixed: dict[str, float],
    full: Profiles,
    splits: list[tuple[str, Callable[[int], object]]],
) -> list[EngineProfile]:
    """Re-fit on the rows a split leaves in, predict the rows it holds out; the last
    column is the committed-form full fit (`full`) on the same held-out rows.
    Returns the profiles fitted on each split's training rows."""
    fitted = []
    for label, test_pred in splits:
        test = group_mask(cases, test_pred)
        tr, te = cases.subset(~test), cases.subset(test)
        prof = fit_profile(tr, base, fixed)
        fitted.append(prof)
        a, b = case_mape(tr, prof)
        c, d = case_mape(te, prof)
        e, f = case_mape(te, full)
        print(
            f"  {label:<40s} {len(tr):>4d} {len(te):>4d} {a:>7.1f}/{b:>5.1f}% "
            f"{c:>11.1f}/{d:>5.1f}% {e:>13.1f}/{f:>5.1f}%"
        )
    return fitted


def run_fit(ds: DataSets) -> None:
    t0 = time.perf_counter()
    print("\n== fit (minimise 0.5·(TTFT MAPE + TPOT MAPE), bounds:", end=" ")
    print(", ".join(f"{k}∈[{lo:g},{hi:g}]" for k, (lo, hi) in BOUNDS.items()) + ")")
    print(f"   fixed: splitwise {SPLITWISE_FIXED}; vllm {VLLM_FIXED}; trtllm {TRTLLM_FIXED}")
    si = ds.silicon
    sw_fit = fit_profile(ds.splitwise, SPLITWISE_PROFILE, SPLITWISE_FIXED)
    fits = {
        e: fit_profile(si.of_engine(e), ENGINE_PROFILES[e], ENGINE_FIXED[e]) for e in si.engines()
    }
    print(f"SPLITWISE_PROFILE fitted: {_fmt(sw_fit)}")
    print(f"DEFAULT_PROFILE (vllm) fitted: {_fmt(fits['vllm'])}")
    print(f"TRTLLM_PROFILE fitted:   {_fmt(fits['trtllm'])}")
    print("\nMAPE with the fitted constants:")
    print_table(ds, sw_fit, fits)

    sw = ds.splitwise
    print("\n== held-out checks (re-fit on train, predict held-out), splitwise:")
    _held_out_header()
    held_out(
        sw,
        SPLITWISE_PROFILE,
        SPLITWISE_FIXED,
        sw_fit,
        [
            ("TP{2,4} -> TP8", lambda i: sw.tp[i] == 8),
            ("llama2-70b -> bloom-176b", lambda i: sw.models[i].id == "bloom-176b"),
            ("A100 -> H100 (+pcap)", lambda i: sw.gpus[i].id == "H100-SXM"),
        ],
    )
    vl, tr = si.of_engine("vllm"), si.of_engine("trtllm")
    print("== held-out checks, silicon-h100 c<=16, vLLM rows (70B fp8), ω = 0:")
    _held_out_header()
    held_out(
        vl,
        DEFAULT_PROFILE,
        VLLM_FIXED,
        fits["vllm"],
        [
            ("TP{2,4} -> TP8", lambda i: vl.tp[i] == 8),
            ("TP{4,8} -> TP2", lambda i: vl.tp[i] == 2),
            ("isl 1024 -> isl 8192", lambda i: vl.h[i] == 8192),
            ("concurrency {4,8} -> 16", lambda i: vl.batch[i] == 16),
        ],
    )
    print("== held-out checks, silicon-h100 c<=16, TensorRT-LLM rows (8B bf16), ω fitted:")
    _held_out_header()
    held_out(
        tr,
        TRTLLM_PROFILE,
        TRTLLM_FIXED,
        fits["trtllm"],
        [
            ("TP{1,2,4} -> TP8", lambda i: tr.tp[i] == 8),
            ("TP{2,4,8} -> TP1", lambda i: tr.tp[i] == 1),
            ("isl {1024,2048} -> isl 4096", lambda i: tr.h[i] == 4096),
            ("concurrency 8 -> 16", lambda i: tr.batch[i] == 16),
        ],
    )
    print(
        "== cross-engine (honest: one engine's profile predicting the other engine's rows;"
        "\n   last column: the held-out engine's own profile):"
    )
    _held_out_header()
    is_trt = lambda i: si.engine[i] == "trtllm"  # noqa: E731
    held_out(si, DEFAULT_PROFILE, VLLM_FIXED, fits, [("70B/vLLM (ω=0) -> 8B/TRT-LLM", is_trt)])
    (trt_fit,) = held_out(
        si,
        TRTLLM_PROFILE,
        TRTLLM_FIXED,
        fits,
        [("8B/TRT-LLM (ω fitted) -> 70B/vLLM", lambda i: not is_trt(i))],
    )
    a, b = case_mape(vl, with_overrides(trt_fit, admission_wait=0.0))
    print(f"  the same with its ω set to 0 -> 70B/vLLM: {a:.1f}/{b:.1f}%")
    joint = fit_profile(si, DEFAULT_PROFILE, VLLM_FIXED)
    a, b = case_mape(si, joint)
    print(f"  one profile for both engines, ω = 0 (in-sample, N={len(si)}): {a:.1f}/{b:.1f}%")
    print(f"\nfit time {time.perf_counter() - t0:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--fit", action="store_true", help="fit the constants (needs scipy)")
    args = ap.parse_args(argv)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ python3 bench/validate_perf.py {shown}".rstrip())
    ds = load_all(args.data_dir)
    sw = ds.splitwise
    print(f"data: {args.data_dir}")
    print(
        f"splitwise: {sw.raw_rows} rows -> {len(sw)} points (repeated runs averaged); "
        f"excluded {sw.excluded_rows} rows ({len(sw.excluded)} points) by the rule "
        "'prompt_time < 0.5 x that of the next-smaller batch in the same series':"
    )
    for label in sw.excluded:
        print(f"  - {label}")
    si = ds.silicon
    per_eng = ", ".join(f"{e} {len(si.of_engine(e))}" for e in si.engines())
    print(
        f"silicon: {ds.silicon_rows} rows; {len(si)} at concurrency <= "
        f"{SILICON_MAX_CONCURRENCY} (target: {per_eng}), {len(ds.silicon_high)} above "
        "(info only)\n"
    )
    print("committed constants:")
    print(f"  SPLITWISE_PROFILE: {_fmt(SPLITWISE_PROFILE)}")
    print(f"  DEFAULT_PROFILE:   {_fmt(DEFAULT_PROFILE)}")
    print(f"  TRTLLM_PROFILE:    {_fmt(TRTLLM_PROFILE)}\n")
    print_table(ds, SPLITWISE_PROFILE, ENGINE_PROFILES)
    ttft_diagnostic(ds.silicon)
    if args.fit:
        run_fit(ds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
