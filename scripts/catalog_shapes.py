#!/usr/bin/env python
"""Write lib/models/catalog_shapes.json: every catalog model's shapes, built on the meta device.

    .venv/bin/python scripts/catalog_shapes.py           # write it
    .venv/bin/python scripts/catalog_shapes.py --check   # exit 1 if it is not what a build gives

Run it after changing a catalog entry's configuration (tests/test_shapes.py says when).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.models import shapes  # noqa: E402
from lib.models.catalog import CATALOG, OWN  # noqa: E402


def built() -> dict:
    return {entry.model_id: {"config_key": shapes.config_key(entry),
                             "shapes": dataclasses.asdict(shapes._build(entry))}
            for entry in CATALOG.values() if entry.weights != OWN}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = json.dumps(built(), indent=1, sort_keys=True) + "\n"
    if args.check:
        same = shapes.SHIPPED.read_text() == text
        print("up to date" if same else f"{shapes.SHIPPED} differs from a build: run "
              "scripts/catalog_shapes.py")
        return 0 if same else 1
    shapes.SHIPPED.write_text(text)
    print(f"wrote {shapes.SHIPPED} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
