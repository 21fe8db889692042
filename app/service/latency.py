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
in the spec, else the policy's. An observation is accepted only for a deployment
and request shape the performance model stands for (`observation_problem`: the
engine's own checks, as `/v1/perf/estimate` and the evaluator make them); a
stored one that no longer passes (the spec changed, or it was stored before the
check) is skipped by the fit and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

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
    policy: api.Policy  # the spec's (its TP and PP options)


def resolve(d: Deployed, scenario: api.Scenario, where: str) -> Resolved:
    """The deployment's model, GPU and precision (ids: the spec's, else the
    catalog's; inline: as given) and engine. InvalidInput names `where.<field>`.
    Callers parse the spec once per batch (`api.parse_scenario`)."""
    errors: list[tuple[str, str]] = []

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
    return Resolved(model, gpu, precision, engine, scenario.policy)


def observation_problem(item: LatencyObservationIn, r: Resolved) -> str | None:
    """Why `item` cannot be an observation of a deployment the performance model
    stands for, or None: `api.deployment_error`, the engine's checks (those
    `/v1/perf/estimate` answers with an error, weights or KV cache that do not
    fit, TP or PP outside the policy's options), not a copy of them."""
    case = api.PerfCase(
        r.model,
        r.gpu,
        r.precision,
        item.tp,
        item.pp,
        item.input_tokens,
        item.output_tokens,
        max(1, round(item.concurrency)),
        r.engine,
    )
    return api.deployment_error(case, r.policy)


def _ref(x: Any) -> Any:
    """A hashable stand-in for a deployment reference (an id, or an inline object)."""
    return x if isinstance(x, str) else x.model_dump_json()


class ObservationCheck:
    """Resolve and check observations against one spec (`resolve`, then
    `observation_problem`): the spec is parsed once, and each distinct deployment
    and request shape is checked once — a refit re-checks every stored
    observation, thousands of them of a few shapes, at every post."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.scenario = api.parse_scenario(spec)
        self._problems: dict[tuple[Any, ...], str | None] = {}

    def __call__(self, item: LatencyObservationIn, where: str) -> Resolved:
        """The item's deployment, or InvalidInput naming `where` (or its fields)."""
        r = resolve(item, self.scenario, where)
        key = (
            _ref(item.model), _ref(item.gpu), _ref(item.precision), r.engine, item.tp,
            item.pp, item.input_tokens, item.output_tokens, max(1, round(item.concurrency)),
        )  # fmt: skip
        if key not in self._problems:
            self._problems[key] = observation_problem(item, r)
        why = self._problems[key]
        if why is not None:
            raise InvalidInput([(where, why)])
        return r


def invalid_items(
    items: Sequence[LatencyObservationIn], spec: dict[str, Any], prefix: str
) -> dict[int, list[tuple[str, str]]]:
    """Item index -> its errors (unresolvable ids or engine, then
    `observation_problem` naming the item)."""
    check = ObservationCheck(spec)
    out: dict[int, list[tuple[str, str]]] = {}
    for k, item in enumerate(items):
        try:
            check(item, f"{prefix}[{k}]")
        except InvalidInput as exc:
            out[k] = list(exc.errors)
    return out


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
        if through >= stored[-1][0]:  # the latest fit is the one in force (fit once)
            self.current = self.latest
            return
        counts = self.observations, self.skipped  # the report counts every stored one
        used = [d for seq, d in stored if seq <= through]
        self.current = await asyncio.to_thread(self._fit, used) if used else None
        self.observations, self.skipped = counts

    async def ingest(
        self, items: Sequence[LatencyObservationIn], *, skip_invalid: bool = False
    ) -> LatencyAccepted:
        """Validate every item (all or nothing: InvalidInput naming each bad one),
        store them, refit, and put the new calibration in force if it moved beyond
        the dead band (a new generation). `skip_invalid` (the Prometheus source):
        bad items are logged and left out instead, so that one odd window (a mean
        prompt beyond the context) does not hold up its whole chunk forever."""
        spec = self.cp.cluster.spec
        bad = await asyncio.to_thread(invalid_items, items, spec, "observations")
        if bad and not skip_invalid:
            raise InvalidInput([e for k in sorted(bad) for e in bad[k]])
        if bad:
            first = bad[min(bad)][0]
            log.warning("%d latency observation(s) skipped, e.g. %s: %s", len(bad), *first)
            items = [item for k, item in enumerate(items) if k not in bad]
            if not items:
                return LatencyAccepted(
                    accepted=0,
                    observations=self.observations,
                    changed=False,
                    generation=self.cp.cluster.generation,
                )
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
        """Fit from stored observation documents; ones that are no longer valid
        (ids that do not resolve, an `observation_problem`, or values stored before
        the schema refused them, such as a TPOT of 1e-300 s) are skipped (counted)."""
        check = ObservationCheck(self.cp.cluster.spec)
        obs: list[api.LatencyObservation] = []
        skipped = 0
        for doc in docs:
            try:
                item = LatencyObservationIn.model_validate(doc, strict=False)  # stored JSON
                r = check(item, "observation")
            except (ValidationError, InvalidInput):
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
