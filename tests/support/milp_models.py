"""Hand-written MILP files for the solver-process tests (test_milp,
test_plan_quality): models whose difficulty does not depend on the performance
model."""

from __future__ import annotations

import random
from pathlib import Path


def market_split_lp(path: Path, m: int = 4, n: int = 36, seed: int = 7) -> Path:
    """A deliberately hard MILP (Cornuéjols–Dawande market split) written to
    `path` in LP format: CBC finds incumbents at once and cannot close it in
    minutes, whatever the performance model says."""
    rng = random.Random(seed)
    a = [[rng.randint(0, 99) for _ in range(n)] for _ in range(m)]
    lines = ["minimize", " obj: " + " + ".join(f"sp{i} + sm{i}" for i in range(m)), "subject to"]
    for i in range(m):
        terms = " + ".join(f"{a[i][j]} x{j}" for j in range(n))
        lines.append(f" c{i}: {terms} + sp{i} - sm{i} = {sum(a[i]) // 2}")
    lines += ["binary", " " + " ".join(f"x{j}" for j in range(n)), "end"]
    path.write_text("\n".join(lines) + "\n")
    return path
