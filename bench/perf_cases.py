"""Measured cases for calibrating and validating the performance model
(`app/engine/perf/`): loaders for the shared measurement tables, the model
architectures they need that are not in the built-in catalog, MAPE helpers, and
the calibration draws of the benchmark.

Used by `bench/validate_perf.py`, `tests/test_perf.py` and
`tests/test_calibration.py`. Needs only numpy and the project's own package (no
scipy).
"""

from __future__ import annotations

import csv
import itertools
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.engine.model.catalog import catalog_gpu, catalog_model, catalog_precision  # noqa: E402
from app.engine.model.domain import GPU, Model, Precision  # noqa: E402
from app.engine.perf.calibration import (  # noqa: E402
    CalibrationPrior,
    GroupKey,
    calibrate_ratios,
)
from app.engine.perf.model import Hardware, hardware_arrays, tpot_s, ttft_s  # noqa: E402
from app.engine.perf.profiles import EngineProfile  # noqa: E402

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "measured"
SPLITWISE_FILE = "splitwise_perf_model.csv"
SILICON_FILE = "silicon_h100_llama.csv"

# Models of the Splitwise table (not in the built-in catalog).
# Llama-2-70B: meta-llama/Llama-2-70b-hf config.json (num_hidden_layers 80, hidden_size
# 8192, intermediate_size 28672, num_attention_heads 64, num_key_value_heads 8,
# vocab_size 32000); parameters = 80·(2·8192² + 2·8192·1024 + 3·8192·28672)
# + 2·32000·8192 = 68.98e9 (untied embeddings).
LLAMA2_70B = Model(
    id="llama2-70b",
    params_b=68.98,
    active_params_b=68.98,
    layers=80,
    hidden=8192,
    intermediate=28672,
    heads=64,
    kv_heads=8,
    head_dim=128,
    vocab=32000,
    max_context=8192,  # config says 4096; the Splitwise runs go to 8192-token prompts
)
# BLOOM-176B: bigscience/bloom config.json (n_layer 70, hidden_size 14336, n_head 112,
# multi-head attention so 112 KV heads, head_dim 128, vocab_size 250880, 4·h MLP);
# parameters = 70·12·14336² + 250880·14336 (tied embeddings) ≈ 176.2e9.
BLOOM_176B = Model(
    id="bloom-176b",
    params_b=176.2,
    active_params_b=176.2,
    layers=70,
    hidden=14336,
    intermediate=4 * 14336,
    heads=112,
    kv_heads=112,
    head_dim=128,
    vocab=250880,
    max_context=8192,  # trained at 2048 (ALiBi); the Splitwise runs go to 8192
)

SPLITWISE_MODELS = {"llama2-70b": LLAMA2_70B, "bloom-176b": BLOOM_176B}
# h100-80gb-pcap is the same H100-SXM run under a power cap: same silicon, reported
# as its own group (the model has no notion of a power cap).
SPLITWISE_GPUS = {
    "a100-80gb": "A100-SXM-80GB",
    "h100-80gb": "H100-SXM",
    "h100-80gb-pcap": "H100-SXM",
}
SILICON_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": ("Llama-3.1-8B", "bf16"),
    "meta-llama/Llama-3.1-70B": ("Llama-3.1-70B", "fp8"),
}
SILICON_MAX_CONCURRENCY = 16  # the calibration target is stated at concurrency <= 16


@dataclass
class Cases:
    """One row per measured point (duplicates averaged). Times in seconds."""

    name: str
    models: list[Model]
    gpus: list[GPU]
    precisions: list[Precision]
    tp: np.ndarray
    pp: np.ndarray
    h: np.ndarray  # prompt tokens
    f: np.ndarray  # output tokens
    batch: np.ndarray  # batch size / concurrency
    ttft: np.ndarray  # measured
    tpot: np.ndarray  # measured
    group: list[str]  # model×GPU×TP label
    engine: list[str] = field(default_factory=list)  # serving engine per point ('' if one)
    gpu_label: list[str] = field(default_factory=list)  # GPU as measured (e.g. power-capped)
    raw_rows: int = 0  # source rows behind these points
    excluded_rows: int = 0
    excluded: list[str] = field(default_factory=list)  # labels of excluded points
    _hw: Hardware | None = field(default=None, repr=False, compare=False)

    def hardware(self) -> Hardware:
        """The cases' hardware arrays (built once: calibration evaluates them often)."""
        if self._hw is None:
            self._hw = hardware_arrays(self.models, self.gpus, self.precisions, self.tp, self.pp)
        return self._hw

    def __len__(self) -> int:
        return len(self.group)

    def subset(self, mask: np.ndarray, name: str | None = None) -> Cases:
        idx = np.flatnonzero(mask)
        return Cases(
            name=name or self.name,
            models=[self.models[i] for i in idx],
            gpus=[self.gpus[i] for i in idx],
            precisions=[self.precisions[i] for i in idx],
            tp=self.tp[idx],
            pp=self.pp[idx],
            h=self.h[idx],
            f=self.f[idx],
            batch=self.batch[idx],
            ttft=self.ttft[idx],
            tpot=self.tpot[idx],
            group=[self.group[i] for i in idx],
            engine=[self.engine[i] for i in idx] if self.engine else [],
            gpu_label=[self.gpu_label[i] for i in idx] if self.gpu_label else [],
        )

    def groups(self) -> list[str]:
        return sorted(set(self.group), key=self.group.index)

    def engines(self) -> list[str]:
        return sorted(set(self.engine), key=self.engine.index)

    def of_engine(self, engine: str) -> Cases:
        return self.subset(np.array([e == engine for e in self.engine]), f"{self.name} {engine}")

    def calibration_keys(self, engine: str = "") -> list[GroupKey]:
        """(engine, GPU as measured, model, precision) of every point: the groups a
        calibration corrects."""
        gpus = self.gpu_label or [g.id for g in self.gpus]
        engines = self.engine or [engine] * len(self)
        return [
            (e, g, m.id, p.id)
            for e, g, m, p in zip(engines, gpus, self.models, self.precisions, strict=True)
        ]


def _gpu(gid: str) -> GPU:
    g = catalog_gpu(gid)
    if g is None:
        raise LookupError(f"GPU {gid!r} not in the catalog")
    return g


def _precision(pid: str) -> Precision:
    p = catalog_precision(pid)
    if p is None:
        raise LookupError(f"precision {pid!r} not in the catalog")
    return p


def _grouped_runs(
    path: Path, labels: tuple[str, ...], sizes: tuple[str, ...], times: tuple[str, str]
) -> tuple[dict[tuple[Any, ...], list[tuple[float, float]]], int]:
    """A measurement CSV's (TTFT, TPOT) pairs (the `times` columns, ms) grouped by
    configuration — the `labels` columns as read, then the `sizes` columns as
    integers — and the number of rows read."""
    acc: dict[tuple[Any, ...], list[tuple[float, float]]] = defaultdict(list)
    raw = 0
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            raw += 1
            key = (*(row[c] for c in labels), *(int(row[c]) for c in sizes))
            acc[key].append((float(row[times[0]]), float(row[times[1]])))
    return acc, raw


def load_splitwise(data_dir: Path = DEFAULT_DATA_DIR) -> Cases:
    """The Splitwise table, duplicates averaged, artefacts excluded.

    Exclusion rule (stated, applied mechanically): within a series that differs only
    in batch size (same model, hardware, TP, prompt and output length), a point whose
    prompt_time is below half the prompt_time of the next-smaller batch is excluded
    (both metrics). Prefilling more prompts cannot take less than half the time of
    prefilling half as many; in this table it hits batch 64 at TP 2 for Llama-2-70B
    (e.g. A100: 796 ms at batch 64 vs 6607 ms at batch 32), where the fp16 weights
    (138 GB) leave almost no KV memory on 2×80 GB, so the batch was evidently not
    run in full."""
    acc, raw = _grouped_runs(
        Path(data_dir) / SPLITWISE_FILE,
        ("model", "hardware"),
        ("tensor_parallel", "prompt_size", "token_size", "batch_size"),
        ("prompt_time", "token_time"),
    )
    means = {k: (np.mean([a for a, _ in v]), np.mean([b for _, b in v])) for k, v in acc.items()}

    excluded: set[tuple[Any, ...]] = set()
    series: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for k in means:
        series[k[:5]].append(k[5])
    for s, batches in series.items():
        batches.sort()
        for prev, cur in itertools.pairwise(batches):
            if means[(*s, cur)][0] < 0.5 * means[(*s, prev)][0]:
                excluded.add((*s, cur))

    keys = sorted(k for k in means if k not in excluded)
    models = [SPLITWISE_MODELS[k[0]] for k in keys]
    gpus = [_gpu(SPLITWISE_GPUS[k[1]]) for k in keys]
    fp16 = _precision("bf16")  # 2-byte weights at the 16-bit tensor rate (= fp16 on A100/H100)
    return Cases(
        name="splitwise",
        models=models,
        gpus=gpus,
        precisions=[fp16] * len(keys),
        tp=np.array([k[2] for k in keys], dtype=float),
        pp=np.ones(len(keys)),
        h=np.array([k[3] for k in keys], dtype=float),
        f=np.array([k[4] for k in keys], dtype=float),
        batch=np.array([k[5] for k in keys], dtype=float),
        ttft=np.array([means[k][0] for k in keys]) / 1e3,
        tpot=np.array([means[k][1] for k in keys]) / 1e3,
        group=[f"{k[0]}×{k[1]}×TP{k[2]}" for k in keys],
        engine=["splitwise"] * len(keys),
        gpu_label=[k[1] for k in keys],
        raw_rows=raw,
        excluded_rows=sum(len(acc[k]) for k in excluded),
        excluded=[
            f"{k[0]} {k[1]} TP{k[2]} prompt {k[3]} batch {k[5]}: prompt_time "
            f"{means[k][0]:.0f} ms, token_time {means[k][1]:.1f} ms"
            for k in sorted(excluded)
        ],
    )


def load_silicon(data_dir: Path = DEFAULT_DATA_DIR) -> Cases:
    """All H100 silicon runs (filter on `batch` for the concurrency <= 16 target)."""
    acc, raw = _grouped_runs(
        Path(data_dir) / SILICON_FILE,
        ("model_path", "backend"),
        ("tp_size", "pp_size", "isl", "osl", "batch_size"),
        ("silicon_ttft_ms", "silicon_tpot_ms"),
    )
    keys = sorted(acc)
    models, precs, labels = [], [], []
    for k in keys:
        mid, pid = SILICON_MODELS[k[0]]
        m = catalog_model(mid)
        if m is None:
            raise LookupError(f"model {mid!r} not in the catalog")
        models.append(m)
        precs.append(_precision(pid))
        labels.append(f"{mid}-{pid}({k[1]})×H100-SXM×TP{k[2]}")
    h100 = _gpu("H100-SXM")
    return Cases(
        name="silicon-h100",
        models=models,
        gpus=[h100] * len(keys),
        precisions=precs,
        tp=np.array([k[2] for k in keys], dtype=float),
        pp=np.array([k[3] for k in keys], dtype=float),
        h=np.array([k[4] for k in keys], dtype=float),
        f=np.array([k[5] for k in keys], dtype=float),
        batch=np.array([k[6] for k in keys], dtype=float),
        ttft=np.array([np.mean([a for a, _ in acc[k]]) for k in keys]) / 1e3,
        tpot=np.array([np.mean([b for _, b in acc[k]]) for k in keys]) / 1e3,
        group=labels,
        engine=[k[1] for k in keys],
        raw_rows=raw,
    )


Profiles = EngineProfile | Mapping[str, EngineProfile]


def predict_cases(cases: Cases, profile: Profiles) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (TTFT, TPOT) in seconds for every case. `profile` is one profile for
    all cases, or one per engine (`cases.engine`, e.g. the silicon `backend` column)."""
    if not isinstance(profile, EngineProfile):
        t1, t2 = np.empty(len(cases)), np.empty(len(cases))
        for eng in cases.engines():
            m = np.array([e == eng for e in cases.engine])
            t1[m], t2[m] = predict_cases(cases.subset(m), profile[eng])
        return t1, t2
    hw = cases.hardware()
    return (
        ttft_s(hw, cases.h, cases.batch, profile, f=cases.f),
        tpot_s(hw, cases.h, cases.f, cases.batch, profile),
    )


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Absolute percentage errors, in percent."""
    out: np.ndarray = 100.0 * np.abs(np.asarray(pred) - np.asarray(meas)) / np.asarray(meas)
    return out


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(ape(pred, meas))) if len(meas) else float("nan")


def case_mape(cases: Cases, profile: Profiles) -> tuple[float, float]:
    """(TTFT MAPE, TPOT MAPE) in percent."""
    t1, t2 = predict_cases(cases, profile)
    return mape(t1, cases.ttft), mape(t2, cases.tpot)


# ---------------------------------------------------------------- calibration draws


def calibration_draws(
    cases: Cases,
    pred_ttft: np.ndarray,
    pred_tpot: np.ndarray,
    ks: tuple[int, ...],
    draws: int,
    prior: CalibrationPrior,
    method: str = "hierarchical",
    seed: int = 0,
    outlier: float = 1.0,
) -> dict[tuple[str, int], np.ndarray]:
    """What calibrating on k observations per group buys on the group's other
    points. For each draw and k: k points drawn at random (seeded) in every
    (engine, GPU, model, precision) group, one calibration fitted on all of them
    (`method` "hierarchical": `calibrate_ratios` with `prior`; "median": each
    group's median measured/predicted ratio, the naive alternative), then the
    corrected predictions of the points not drawn. `outlier` != 1 multiplies the
    measured TTFT and TPOT of one drawn point per group (a gross error: a stalled
    window) before fitting. Returns, per (engine, k), an array (draws, 2) of
    (TTFT MAPE, TPOT MAPE) over the engine's undrawn points."""
    keys = cases.calibration_keys()
    groups: dict[GroupKey, np.ndarray] = group_indices(keys)
    engines = sorted({k[0] for k in keys})
    out = {(e, k): np.zeros((draws, 2)) for e in engines for k in ks}
    for k in ks:
        for d in range(draws):
            rng = np.random.default_rng([seed, k, d])
            train = {
                g: rng.choice(idx, size=min(k, len(idx) - 1), replace=False)
                for g, idx in groups.items()
            }
            meas = (cases.ttft.copy(), cases.tpot.copy())
            for idx in train.values():
                if len(idx):
                    meas[0][idx[0]] *= outlier
                    meas[1][idx[0]] *= outlier
            factors = _draw_factors(keys, meas, pred_ttft, pred_tpot, train, prior, method)
            c1, c2 = pred_ttft.copy(), pred_tpot.copy()
            test = np.ones(len(cases), dtype=bool)
            for g, idx in groups.items():
                c1[idx] *= factors[g][0]
                c2[idx] *= factors[g][1]
                test[train[g]] = False
            for e in engines:
                m = test & np.array([key[0] == e for key in keys])
                out[(e, k)][d] = mape(c1[m], cases.ttft[m]), mape(c2[m], cases.tpot[m])
    return out


def group_indices(keys: list[GroupKey]) -> dict[GroupKey, np.ndarray]:
    """The positions of each group's points."""
    acc: dict[GroupKey, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        acc[key].append(i)
    return {key: np.array(v) for key, v in acc.items()}


def _draw_factors(
    keys: list[GroupKey],
    meas: tuple[np.ndarray, np.ndarray],
    pred_ttft: np.ndarray,
    pred_tpot: np.ndarray,
    train: dict[GroupKey, np.ndarray],
    prior: CalibrationPrior,
    method: str,
) -> dict[GroupKey, tuple[float, float]]:
    if method == "median":
        return {
            g: (
                float(np.median(meas[0][i] / pred_ttft[i])) if len(i) else 1.0,
                float(np.median(meas[1][i] / pred_tpot[i])) if len(i) else 1.0,
            )
            for g, i in train.items()
        }
    idx = np.concatenate([i for i in train.values()]).astype(int)
    cal = calibrate_ratios(
        [keys[i] for i in idx],
        meas[0][idx],
        meas[1][idx],
        pred_ttft[idx],
        pred_tpot[idx],
        prior,
    )
    out = {}
    for g in train:
        c = cal.correction_for(*g)
        out[g] = (c.ttft_factor, c.tpot_factor)
    return out


def concat_cases(name: str, *parts: Cases) -> Cases:
    """Several data sets as one (engines and GPU labels kept per point)."""
    return Cases(
        name=name,
        models=[m for c in parts for m in c.models],
        gpus=[g for c in parts for g in c.gpus],
        precisions=[p for c in parts for p in c.precisions],
        tp=np.concatenate([c.tp for c in parts]),
        pp=np.concatenate([c.pp for c in parts]),
        h=np.concatenate([c.h for c in parts]),
        f=np.concatenate([c.f for c in parts]),
        batch=np.concatenate([c.batch for c in parts]),
        ttft=np.concatenate([c.ttft for c in parts]),
        tpot=np.concatenate([c.tpot for c in parts]),
        group=[x for c in parts for x in c.group],
        engine=[e for c in parts for e in (c.engine or [""] * len(c))],
        gpu_label=[g for c in parts for g in (c.gpu_label or [x.id for x in c.gpus])],
    )


def within_factor(pred: np.ndarray, meas: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Whether each prediction is within `factor` of its measurement (both ways)."""
    r = np.asarray(pred) / np.asarray(meas)
    out: np.ndarray = (r <= factor) & (r >= 1.0 / factor)
    return out
