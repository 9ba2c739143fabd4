"""What a `wildscreen screen` run sends: the files as given and the images under folders, what was
skipped, a stable request id per file, and where each file's overlay goes.

The request id is the file's path (a hash of its bytes where the path is too long for the review
queue), never its place in the run: exports group items by listing, and "0", "1", "2" repeated on
every run made unrelated photos look like one listing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""What the server decodes. The client imports nothing of the server, so it keeps this list itself."""
MAX_REQUEST_ID_CHARS = 200
"""The review service's limit on a request id."""


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    """Files under the folders that are not images by their suffix."""
    root: Path = Path(".")
    """The folder the files have in common: overlays mirror the tree below it."""

    def overlay_path(self, overlays: Path, path: Path, suffix: str) -> Path:
        """`overlays/<path below root>.<suffix>`: two a.jpg in different folders stay two overlays."""
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:  # not below the common root (cannot happen for files found here)
            relative = Path(path.name)
        return overlays / relative.with_suffix("." + suffix)


def find_images(paths: Iterable[Path]) -> Inputs:
    """Files as given (each once), and the image files under folders (sorted, recursively)."""
    found = Inputs()
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                (found.files if candidate.suffix.lower() in IMAGE_SUFFIXES else found.skipped).append(candidate)
        else:
            found.files.append(path)
    found.files = [f for f in found.files if not (f.resolve() in seen or seen.add(f.resolve()))]
    if found.files:
        parents = [str(f.resolve().parent) for f in found.files]
        found.root = Path(os.path.commonpath(parents))
    return found


def image_files(paths: Iterable[Path]) -> list[Path]:
    """The image files of `paths` (see find_images)."""
    return find_images(paths).files


def request_id_of(path: Path, data: bytes) -> str:
    """The path as given; `sha256:<hex>` of the bytes when the path is too long."""
    text = str(path)
    return text if len(text) <= MAX_REQUEST_ID_CHARS else "sha256:" + hashlib.sha256(data).hexdigest()
