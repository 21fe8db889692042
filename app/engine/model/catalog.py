"""The built-in catalog: models, their error rates, GPU types, precisions and
default prices, read from the CSV files shipped in `app/data` (provenance and
licences in `app/data/README.md`).

Choices where the source tables are silent (documented here, overridable by any
scenario document):
* intra-node link = half the NVLink bidirectional figure; GPUs without NVLink (or
  with only a 2-GPU bridge) use their PCIe host link (PCIe4 x16 = 32 GB/s, PCIe5
  x16 = 64 GB/s per direction) — conservative for bridged pairs;
* inter-node link = 50 GB/s per GPU (400 Gb/s InfiniBand) for SXM/OAM parts,
  25 GB/s (200 Gb/s Ethernet) for PCIe cards; 8 GPUs per node everywhere;
* int4 is weight-only (W4A16): it computes at the bf16 rate; fp8 only where the
  GPU lists fp8 TFLOPS; int8 (W8A8) at the int8 TOPS figure;
* max context of each model family from its published config.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from app.engine.model.domain import GPU, Model, Precision

DEFAULT_PRICES: dict[str, float] = {
    "H200-SXM": 4.5,
    "H100-SXM": 3.0,
    "H100-PCIe": 2.5,
    "A100-SXM-80GB": 1.8,
    "A100-PCIe-80GB": 1.8,
    "A100-SXM-40GB": 1.3,
    "L40S": 1.2,
    "RTX-A6000": 0.8,
    "RTX-4090": 0.6,
    "A10G": 1.0,
    "L4": 0.6,
    "MI300X": 1.9,
}

DEFAULT_AVAILABLE = 64

_MAX_CONTEXT = {
    "Llama-3.1": 131072,
    "Qwen2.5": 32768,
    "Mistral-7B": 32768,
    "Mixtral": 32768,
    "Gemma-2": 8192,
    "Phi-3": 4096,
}

DEFAULT_PRECISIONS: tuple[Precision, ...] = (
    Precision("bf16", 2.0, 1.00, compute="bf16"),
    Precision("fp8", 1.0, 1.05, compute="fp8"),
    Precision("int8", 1.0, 1.15, compute="int8"),
    Precision("int4", 0.5, 1.35, compute="bf16"),
)


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("app.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _error_rates() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in _rows("model_error_rates.csv"):
        rates = {
            task: float(row[task])
            for task in ("general", "code", "math_easy", "math_hard")
            if row.get(task, "").strip()
        }
        out[row["model"]] = rates
    return out


def _rates_for(model_id: str, table: dict[str, dict[str, float]]) -> dict[str, float]:
    # The error table names models without their variant suffix (Phi-3-mini vs
    # Phi-3-mini-4k, Mistral-7B vs Mistral-7B-v0.3): take the longest prefix match.
    best = max((k for k in table if model_id.startswith(k)), key=len, default=None)
    return dict(table[best]) if best else {}


@cache
def catalog_models() -> tuple[Model, ...]:
    rates = _error_rates()
    models = []
    for row in _rows("model_catalog.csv"):
        mid = row["model"]
        ctx = next((v for k, v in _MAX_CONTEXT.items() if mid.startswith(k)), 8192)
        models.append(
            Model(
                id=mid,
                params_b=float(row["params_B_computed"]),
                active_params_b=float(row["active_params_B"]),
                layers=int(row["layers"]),
                hidden=int(row["hidden"]),
                intermediate=int(row["intermediate"]),
                heads=int(row["n_heads"]),
                kv_heads=int(row["n_kv_heads"]),
                head_dim=int(row["head_dim"]),
                vocab=int(row["vocab"]),
                max_context=ctx,
                error_rates=_rates_for(mid, rates),
            )
        )
    return tuple(models)


def _host_link_gbps(text: str) -> float:
    return 64.0 if "PCIe5" in text else 32.0


@cache
def catalog_gpus() -> tuple[GPU, ...]:
    gpus = []
    for row in _rows("gpu_catalog.csv"):
        gid = row["gpu"]
        tflops = {"bf16": float(row["bf16_dense_TFLOPS"])}
        if row["fp8_dense_TFLOPS"].strip():
            tflops["fp8"] = float(row["fp8_dense_TFLOPS"])
        if row["int8_dense_TOPS"].strip():
            tflops["int8"] = float(row["int8_dense_TOPS"])
        link = row["scale_up_interconnect"]
        full_mesh = any(w in link for w in ("NVSwitch", "Infinity Fabric"))
        bidir = float(row["scale_up_GBps_per_gpu_bidir"] or 0.0)
        intra = bidir / 2.0 if full_mesh and bidir > 0 else _host_link_gbps(row["host_link"])
        datacenter = "SXM" in gid or gid.startswith("MI300")
        gpus.append(
            GPU(
                id=gid,
                memory_gb=float(row["mem_GB"]),
                memory_bandwidth_gbps=float(row["mem_bw_GBps"]),
                tflops=tflops,
                intra_node_gbps=intra,
                inter_node_gbps=50.0 if datacenter else 25.0,
                gpus_per_node=8,
                price_per_hour=DEFAULT_PRICES.get(gid, 2.0),
                available=DEFAULT_AVAILABLE,
            )
        )
    return tuple(gpus)


def catalog_model(model_id: str) -> Model | None:
    return next((m for m in catalog_models() if m.id == model_id), None)


def catalog_gpu(gpu_id: str) -> GPU | None:
    return next((g for g in catalog_gpus() if g.id == gpu_id), None)


def catalog_precision(precision_id: str) -> Precision | None:
    return next((p for p in DEFAULT_PRECISIONS if p.id == precision_id), None)
