"""Write the OpenAPI document of the service: `python -m app.service.openapi
[path]` (default `openapi/openapi.json`). Sorted keys, indent 2, so diffs are
readable; tests/test_service_openapi.py fails when the committed file drifts."""

from __future__ import annotations

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
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
