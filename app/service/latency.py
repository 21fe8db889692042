"""Observed latency -> a calibrated performance model (SPEC §4.1, issue #10).

`LatencyLoop` ingests latency observations (`POST /v1/observations/latency`, or a
Prometheus source): per deployment (model, GPU, precision, TP, PP, engine) and
request shape, the TTFT and TPOT it showed at a concurrency. They are stored
(bounded: the newest `latency_retention_count` within `latency_retention_age_s`)
and the calibration is refitted from all of them (`fit_calibration`:
per (engine, GPU, model, precision), shrunk toward engine × GPU, then engine,
then no correction when points are few).

The calibration in force changes only when some correction moves beyond
`policy.replan_deadband`: then the generation is bumped (source "calibration")
and the next re-plan, the perf estimates and the explanations use it. After a
restart it is refitted from the stored observations (the fit is deterministic),
so it survives restarts without a document of its own.

Ids resolve against the cluster spec first, then the built-in catalog; inline
objects are taken as given. A deployment's engine defaults to its GPU's engine
in the spec, else the policy's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.engine import api
from app.service.demand import to_epoch
from app.service.errors import InvalidInput
from app.service.metrics import Metrics
from app.service.schemas.calibration import LatencyAccepted
from app.service.schemas.perf import Deployed, LatencyObservationIn
from app.service.settings import Settings
from app.service.state import Attached, ControlPlane
from app.service.store import Store

log = logging.getLogger("llm_allocator.service")

_IN_FORCE = "calibration_in_force"  # documents key: which observations it was fitted on


@dataclass(frozen=True, slots=True)
class Resolved:
    """A deployment's domain objects and engine."""

    model: api.Model
    gpu: api.GPU
    precision: api.Precision
    engine: str


def resolve(d: Deployed, spec: dict[str, Any], where: str) -> Resolved:
    """The deployment's model, GPU and precision (ids: the spec's, else the
    catalog's; inline: as given) and engine. InvalidInput names `where.<field>`."""
    errors: list[tuple[str, str]] = []
    scenario = api.parse_scenario(spec)

    def pick(field: str, ref: Any, known: Sequence[Any], catalog: Any, inline: Any) -> Any:
        if not isinstance(ref, str):
            return inline(ref)
        found = next((x for x in known if x.id == ref), None) or catalog(ref)
        if found is None:
            errors.append((f"{where}.{field}", f"unknown {field} {ref!r} (spec or catalog)"))
        return found

    model = pick("model", d.model, scenario.models, api.catalog_model, api.model_from_spec)
    gpu = pick("gpu", d.gpu, scenario.gpus, api.catalog_gpu, api.gpu_from_spec)
    precision = pick(
        "precision", d.precision, scenario.precisions, api.catalog_precision,
        api.precision_from_spec,
    )  # fmt: skip
    engine = d.engine or (gpu.engine if gpu is not None else None) or scenario.policy.engine
    if engine not in api.ENGINE_NAMES:
        known = ", ".join(api.ENGINE_NAMES)
        errors.append((f"{where}.engine", f"unknown engine {engine!r} (known: {known})"))
    if errors:
        raise InvalidInput(errors)
    return Resolved(model, gpu, precision, engine)


class LatencyLoop(Attached):
    def __init__(
        self, cp: ControlPlane, store: Store, settings: Settings, metrics: Metrics
    ) -> None:
        super().__init__(cp, store, settings, metrics)
        self.current: api.Calibration | None = None  # the calibration in force
        self.latest: api.Calibration | None = None  # the latest fit (may be in the band)
        self.observations = 0
        self.skipped = 0

    async def load(self) -> None:
        """Refit from the stored observations: the calibration in force survives a
        restart (refitted from the observations it was made of, recorded as the
        last sequence number it used), and so does the latest fit."""
        stored = await self.store.call(self.store.latency_observations)
        if not stored:
            return
        mark = await self.store.call(self.store.get_document, _IN_FORCE)
        through = int(mark["through_seq"]) if mark else stored[-1][0]
        self.latest = await asyncio.to_thread(self._fit, [d for _, d in stored])
        used = [d for seq, d in stored if seq <= through]
        self.current = await asyncio.to_thread(self._fit, used) if used else None

    async def ingest(self, items: Sequence[LatencyObservationIn]) -> LatencyAccepted:
        """Validate every item (all or nothing), store them, refit, and put the new
        calibration in force if it moved beyond the dead band (a new generation)."""
        spec = self.cp.cluster.spec
        for k, item in enumerate(items):
            resolve(item, spec, f"observations[{k}]")
        docs = [(item.model_dump(mode="json", exclude_none=True), item.start) for item in items]
        async with self._lock:
            await self.store.call(
                self.store.insert_latency,
                [(doc, to_epoch(start) if start else None) for doc, start in docs],
            )
            s = self.settings
            await self.store.call(
                self.store.prune_latency, s.latency_retention_count, s.latency_retention_age_s
            )
            self.metrics.observations.labels("latency").inc(len(items))
            stored = await self.store.call(self.store.latency_observations)
            fitted = await asyncio.to_thread(self._fit, [d for _, d in stored])
            self.latest = fitted
            band = float(spec["policy"]["replan_deadband"])
            moved = self.current is None or fitted.moved_beyond(self.current, band)
            changed = False
            if moved:
                self.current = fitted
                await self.store.call(
                    self.store.put_document, _IN_FORCE, {"through_seq": stored[-1][0]}
                )
                snap = await self.cp.bump(source="calibration")
                changed = True
                log.info("calibration moved beyond the dead band: generation %d", snap.generation)
        return LatencyAccepted(
            accepted=len(items),
            observations=self.observations,
            changed=changed,
            generation=self.cp.cluster.generation,
        )

    def _fit(self, docs: Sequence[dict[str, Any]]) -> api.Calibration:
        """Fit from stored observation documents; ones whose ids no longer resolve
        are skipped (counted)."""
        spec = self.cp.cluster.spec
        obs: list[api.LatencyObservation] = []
        skipped = 0
        for doc in docs:
            item = LatencyObservationIn.model_validate(doc, strict=False)  # stored JSON
            try:
                r = resolve(item, spec, "observation")
            except InvalidInput:
                skipped += 1
                continue
            obs.append(
                api.LatencyObservation(
                    r.engine,
                    r.model,
                    r.gpu,
                    r.precision,
                    item.tp,
                    item.pp,
                    item.input_tokens,
                    item.output_tokens,
                    max(1.0, item.concurrency),
                    item.ttft_s,
                    item.tpot_s,
                )
            )
        self.observations, self.skipped = len(obs), skipped
        return api.fit_calibration(obs)

    def report(self) -> dict[str, Any]:
        """GET /v1/calibration: the calibration in force, per level."""
        cal = self.current
        return {
            "observations": self.observations,
            "skipped": self.skipped,
            "deadband": self.cp.cluster.spec["policy"]["replan_deadband"],
            "in_force": cal.to_document() if cal is not None else None,
            "latest_fit_in_force": self.latest is self.current,
        }
