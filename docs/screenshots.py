"""`.venv/bin/python docs/screenshots.py`: the README's pictures of the review pages, taken by the
real browser (Debian's chromium, headless, driven by Playwright) on a real review service.

The items are ../shared's boxed snake photos queued with their datasets' own boxes (answers fixed
by construction, not a model's), plus decisions by two reviewers for the stats page. Each PNG is
shrunk and reduced to a 64-colour palette so that it stays under 200 KB.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.offline import stay_offline  # noqa: E402
from tests.support.review import photos, review_service, screen_line  # noqa: E402
from tests.support.shared import SHARED  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
OUT = REPO / "docs"
VIEWPORT = {"width": 1200, "height": 760}
SCALE = 0.8
"""Shrunk after the shot, so that a photo's noise does not push a PNG past 200 KB."""


def save_small(png: bytes, path: Path) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((round(image.width * SCALE), round(image.height * SCALE)), Image.Resampling.LANCZOS)
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


def queue(service, photo, request_id: str, listing: str, verdict: str, label: str, confidence: float,
          weak: tuple = (), version: str = "v2") -> None:
    detections = [(label, confidence, photo.boxes[0]), *weak]
    service.store.add(photo.jpeg, screen_line(request_id, verdict, photo.width, photo.height, detections, version), listing)


def decided_history(service, extra: list) -> None:
    """Earlier decisions by two reviewers on two model versions: something for the stats page,
    with rejects for their reasons and a flag relabelled to another class."""
    actions = [("confirm", None), ("confirm", None), ("reject", "not_wildlife"), ("relabel", None), ("reject", "duplicate"),
               ("confirm", None), ("confirm", None), ("reject", "legal_with_papers"), ("confirm", None), ("relabel", None)]
    for i, (photo, (action, reason)) in enumerate(zip(extra, actions)):
        flag = i % 3 != 2
        queue(service, photo, f"upload-{100 + i}", f"listing-{20 + i // 2}", "VERDICT_FLAG" if flag else "VERDICT_REVIEW",
              "live_reptile", 0.9 - 0.02 * i if flag else 0.45, version="v1" if i < 5 else "v2")
        reviewer = ("anna", "ben")[i % 2]
        item = service.store.next_for(reviewer)
        boxes = None
        if action == "relabel":  # the model's live_reptile was a pangolin
            action, boxes = "fix", [{"label": "pangolin_scales", **dict(zip(("x_min", "y_min", "x_max", "y_max"), photo.boxes[0]))}]
        service.store.decide(item.id, reviewer, action, boxes, note="", reason=reason)


def main() -> int:
    stay_offline()
    if not Path(CHROMIUM).exists():
        print("no chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import expect, sync_playwright

    first, second, sibling, *extra = photos(13, SHARED)
    with tempfile.TemporaryDirectory() as tmp, review_service(Path(tmp) / "review") as service:
        decided_history(service, extra)
        w, h = second.width, second.height
        queue(service, first, "upload-7731", "listing-4410", "VERDICT_FLAG", "live_reptile", 0.93)
        queue(service, sibling, "upload-7730", "listing-4410", "VERDICT_REVIEW", "live_reptile", 0.38)
        queue(service, second, "upload-7732", "listing-4411", "VERDICT_REVIEW", "live_reptile", 0.55,
              weak=(("tiger_parts", 0.12, (w * 0.05, h * 0.05, w * 0.3, h * 0.3)),))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(service.url)
            expect(page.locator("#verdict")).to_have_text("FLAG")
            expect(page.locator("#listing-items img")).to_have_count(1)
            page.wait_for_function("[...document.querySelectorAll('#listing-items img, #photo')].every((i) => i.complete)")
            sizes = {"review-queue.png": save_small(page.screenshot(), OUT / "review-queue.png")}
            page.keyboard.press("c")  # confirm: on to the REVIEW item
            expect(page.locator("#verdict")).to_have_text("REVIEW")
            expect(page.locator("#position")).to_have_text("item 1 of 2")
            page.keyboard.press("w")  # the weaker box too, faded
            page.keyboard.press("j")  # select a box: its handles show
            page.keyboard.press("r")  # reject: the reasons to choose from
            expect(page.locator("#reasons")).to_be_visible()
            page.set_viewport_size({"width": VIEWPORT["width"], "height": 880})
            sizes["review-weaker.png"] = save_small(page.screenshot(), OUT / "review-weaker.png")
            page.set_viewport_size(VIEWPORT)
            page.goto(f"{service.url}/list?state=all")
            sizes["review-list.png"] = save_small(page.screenshot(), OUT / "review-list.png")
            page.goto(f"{service.url}/stats")
            sizes["review-stats.png"] = save_small(page.screenshot(full_page=True), OUT / "review-stats.png")
            browser.close()
    for name, size in sizes.items():
        print(f"docs/{name}: {size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
