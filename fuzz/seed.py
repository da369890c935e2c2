"""Write the fuzz targets' seed corpora: real demo records and a few hostile ones."""

from __future__ import annotations

import sys
from pathlib import Path

from common import seed_lines, write_seeds


def main() -> None:
    root = Path(sys.argv[1])
    write_seeds(root / "formats", seed_lines())
    write_seeds(root / "detectors", seed_lines())


if __name__ == "__main__":
    main()
