"""Write the OpenAPI document of the service: `python -m app.service.openapi
[path] [--check]` (default `openapi/openapi.json`; `--check` writes nothing and
exits 1 when the file differs from the app's document). Sorted keys, indent 2,
so diffs are readable; tests/test_service_openapi.py fails when the committed
file drifts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.service.app import create_app
from app.service.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    # Defaults only: the document must not depend on the caller's environment.
    settings = Settings.model_construct(
        **{
            name: field.get_default(call_default_factory=True)
            for name, field in Settings.model_fields.items()
        }
    )
    doc: dict[str, Any] = create_app(settings).openapi()
    return doc


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m app.service.openapi",
        description="Write the service's OpenAPI document (or check the committed one).",
    )
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help="where to write it")
    ap.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the file differs from the app's document",
    )
    args = ap.parse_args(argv)
    path: Path = args.path
    text = render()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is stale: run `python -m app.service.openapi`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
