"""The difference between two plans as actions an orchestrator can apply.

Actions come in a safe order (make before break): create new deployments and
scale up first, then shift routing and unmet shares, then scale down and delete,
so traffic never moves to capacity that does not exist yet. Deployment ids are
stable (`model@gpu/precision/tpNppM`), so "same id" means "same deployment".
"""

from __future__ import annotations

from typing import Any

_EPS = 1e-9


def _deployments(plan: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in (plan or {}).get("deployments", [])}


def _routes(plan: dict[str, Any] | None) -> dict[tuple[str, str], float]:
    return {
        (r["query_type"], r["deployment"]): float(r["fraction"])
        for r in (plan or {}).get("routing", [])
    }


def _unmet(plan: dict[str, Any] | None) -> dict[str, float]:
    return {u["query_type"]: float(u["fraction"]) for u in (plan or {}).get("unmet", [])}


def _spec(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in ("model", "gpu", "precision", "tp", "pp")}


def plan_diff(
    previous: dict[str, Any] | None, new: dict[str, Any], from_version: int | None
) -> dict[str, Any]:
    """Actions turning `previous` (None: nothing deployed) into `new`."""
    grow, shrink, added, removed = _replica_actions(previous, new)
    routing = _routing_actions(previous, new)
    actions = grow + routing + shrink
    return {
        "from_version": from_version,
        "actions": actions,
        "summary": {
            "created": sum(1 for a in actions if a["op"] == "create"),
            "scaled": sum(1 for a in actions if a["op"] == "scale"),
            "deleted": sum(1 for a in actions if a["op"] == "delete"),
            "routing_changes": len(routing),
            "gpus_added": dict(sorted(added.items())),
            "gpus_removed": dict(sorted(removed.items())),
        },
    }


def _replica_actions(
    previous: dict[str, Any] | None, new: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int], dict[str, int]]:
    """(creates and scale-ups, scale-downs and deletes, GPUs added by type, GPUs
    removed by type)."""
    before, after = _deployments(previous), _deployments(new)
    grow: list[dict[str, Any]] = []
    shrink: list[dict[str, Any]] = []
    added: dict[str, int] = {}
    removed: dict[str, int] = {}
    for did in sorted(before.keys() | after.keys()):
        a, b = after.get(did), before.get(did)
        r_new = int(a["replicas"]) if a else 0
        r_old = int(b["replicas"]) if b else 0
        if r_new == r_old:
            continue
        d = a or b
        assert d is not None
        delta = (r_new - r_old) * int(d["tp"]) * int(d["pp"])
        bucket = added if delta > 0 else removed
        bucket[d["gpu"]] = bucket.get(d["gpu"], 0) + abs(delta)
        op = "create" if r_old == 0 else "delete" if r_new == 0 else "scale"
        described = {
            "create": f"create {did} with {r_new} replica(s)",
            "delete": f"delete {did} ({r_old} replica(s))",
            "scale": f"scale {did} from {r_old} to {r_new} replicas",
        }
        action = {
            "op": op,
            "deployment": did,
            "from_replicas": r_old,
            "to_replicas": r_new,
            "gpus_delta": delta,
            **_spec(d),
            "description": described[op],
        }
        (grow if r_new > r_old else shrink).append(action)
    return grow, shrink, added, removed


def _routing_actions(previous: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Routing and unmet-share changes."""
    out: list[dict[str, Any]] = []
    r_before, r_after = _routes(previous), _routes(new)
    for qt, did in sorted(r_before.keys() | r_after.keys()):
        f_old, f_new = r_before.get((qt, did), 0.0), r_after.get((qt, did), 0.0)
        if abs(f_new - f_old) > _EPS:
            out.append(
                {
                    "op": "route",
                    "query_type": qt,
                    "deployment": did,
                    "from_fraction": f_old,
                    "to_fraction": f_new,
                    "description": f"route {f_new:.4g} of {qt} to {did} (was {f_old:.4g})",
                }
            )
    u_before, u_after = _unmet(previous), _unmet(new)
    for qt in sorted(u_before.keys() | u_after.keys()):
        f_old, f_new = u_before.get(qt, 0.0), u_after.get(qt, 0.0)
        if abs(f_new - f_old) > _EPS:
            out.append(
                {
                    "op": "unmet",
                    "query_type": qt,
                    "from_fraction": f_old,
                    "to_fraction": f_new,
                    "description": f"leave {f_new:.4g} of {qt} unserved (was {f_old:.4g})",
                }
            )
    return out
