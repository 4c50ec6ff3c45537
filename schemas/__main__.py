"""``python -m schemas [DIR]``: write the JSON Schema of every wire type into DIR.

DIR defaults to ``docs/schemas``. One file per NATS message, named after its
``type`` tag, plus ``http-api.json`` with the HTTP bodies.
"""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.jsonschema import write_schemas


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0] if args else "docs/schemas")
    for path in write_schemas(out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
