"""The real-weights benchmark lives in bench/ (scripts, not a package): make ``real`` importable.

bench/ goes to the end of sys.path, so its other scripts' names shadow nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))
