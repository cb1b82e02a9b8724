"""Write `robustbench_mm/catalog_listing.json`, the lines `rbmm list` prints for the built-in
entries, from the registries (the source of truth), so that listing them loads no torch:

    python tools/build_listing.py            # rewrite the file
    python tools/build_listing.py --check    # exit 1 if the file is not what the registries give

Run it after adding or changing a built-in corruption, metric, backbone, dataset, condition family
or report section; tests/test_listing.py fails until then. Plug-ins are never written there: they
depend on where `rbmm` runs, and `rbmm list` imports the registries whenever one can be present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robustbench_mm.listing import LISTING_FILE, build_declared  # noqa: E402


def render(declared: dict) -> str:
    return json.dumps(declared, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date (exit 1 if not)")
    args = parser.parse_args()
    text = render(build_declared())
    if args.check:
        current = LISTING_FILE.read_text(encoding="utf-8") if LISTING_FILE.exists() else ""
        if current != text:
            print(f"{LISTING_FILE.relative_to(ROOT)} is stale: run python tools/build_listing.py", file=sys.stderr)
            return 1
        return 0
    LISTING_FILE.write_text(text, encoding="utf-8")
    print(f"written: {LISTING_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
