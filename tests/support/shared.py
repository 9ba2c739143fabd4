"""Where ../shared is: real images and pretrained weights that are not ours to commit."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("WILDSCREEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))

