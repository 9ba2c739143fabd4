"""`python -m bench.review_queue`: the review service with a queue of 100k items, over real HTTP.

Fills a fresh SQLite data dir (one real image shared by every row, rows inserted in bulk next to
one added through the store), starts `wildscreen-review serve` as its own process on a free
loopback port, and times what a reviewer's browser asks for: the queue page, a page of the queue
(first and deep), taking the next item (a claim), the held item again, a decision, the stats
page; then several reviewers claiming and deciding at once (no item handed out twice).

    python -m bench.review_queue [--rows 100000] [--decided 10000] [--repeat 200] [--reviewers 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
from sqlalchemy import insert

from server.review.accounts import Accounts, load_secret
from server.review.database import connect, default_url
from server.review.schema import DECIDED, QUEUED, Item
from server.review.store import ReviewStore

LABELS = ("ivory", "pangolin_scales", "tiger_parts", "live_reptile")
PASSWORD = "bench-password"


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {len(os.sched_getaffinity(0))} cores usable, Python {platform.python_version()}"


def result_line(request_id: str, verdict: str, confidence: float, label: str) -> dict:
    """A result as `wildscreen screen` prints it, for a 320x240 image with one box."""
    return {
        "path": f"/listings/{request_id}.jpg", "request_id": request_id, "verdict": f"VERDICT_{verdict}",
        "image_width": 320, "image_height": 240, "model": {"name": "wildscreen-yolo", "version": "v2", "sha256": "ab" * 32},
        "thresholds": [{"id": i, "label": name, "review_threshold": 0.3, "flag_threshold": 0.7} for i, name in enumerate(LABELS)],
        "detections": [{"label": label, "confidence": confidence, "box": {"x_min": 40, "y_min": 30, "x_max": 200, "y_max": 170}}],
    }


def fill(data_dir: Path, rows: int, decided: int, seed: int = 0) -> float:
    """`rows` queued items and `decided` decided ones; returns the seconds it took."""
    started = time.monotonic()
    engine = connect(default_url(data_dir))
    store = ReviewStore(engine, data_dir)
    image = cv2.imencode(".jpg", np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8))[1].tobytes()
    store.add(image, result_line("bench-template", "REVIEW", 0.5, "ivory"), "listing-template")
    template = store.page(0, 1)[0]
    rng = random.Random(seed)
    moment = datetime.now(timezone.utc)
    batch: list[dict] = []

    def row(i: int, state: str) -> dict:
        flag = rng.random() < 0.1
        confidence = rng.uniform(0.7, 1.0) if flag else rng.uniform(0.3, 0.7)
        label = rng.choice(LABELS)
        detections = [dict(template.detections[0], label=label, class_id=LABELS.index(label), confidence=confidence)]
        out = dict(
            image_sha256=hashlib.sha256(f"bench-{i}".encode()).hexdigest(), image_file=template.image_file,
            source_path=f"/listings/{i}.jpg", width=320, height=240, request_id=f"bench-{i}", listing_id=f"listing-{i // 3}",
            verdict="FLAG" if flag else "REVIEW", priority=3 if flag else 2, top_confidence=confidence, top_label=label,
            detections=detections, thresholds=template.thresholds, model_name="wildscreen-yolo",
            model_version=rng.choice(("v1", "v2")), model_sha256="ab" * 32, arrived_at=moment - timedelta(seconds=rows - i),
            state=state, claimed_by=None, claim_expires=None, decision=None, final_boxes=None, decided_by=None, decided_at=None,
        )
        if state == DECIDED:
            out |= dict(decision=rng.choice(("confirm", "confirm", "reject", "fix")), decided_by="bench",
                        decided_at=moment - timedelta(days=rng.randrange(30)), final_boxes=[])
        return out

    with engine.begin() as connection:
        for i in range(rows + decided):
            batch.append(row(i, QUEUED if i < rows else DECIDED))
            if len(batch) == 10_000:
                connection.execute(insert(Item), batch)
                batch.clear()
        if batch:
            connection.execute(insert(Item), batch)
    accounts = Accounts(engine, load_secret(data_dir))
    for n in range(8):
        accounts.add(f"reviewer-{n}", PASSWORD)
    engine.dispose()
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server.review.main", "--data-dir", str(data_dir), "serve",
                             "--port", str(port), "--no-loopback"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the review service exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("the review service did not start in 60 s")


def reviewer(url: str, name: str) -> httpx.Client:
    """A logged-in reviewer: the session cookie, and the CSRF token from the page."""
    client = httpx.Client(base_url=url, timeout=60)
    answer = client.post("/login", data={"name": name, "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)[1]
    client.headers["x-csrf-token"] = token
    return client


def timed(call) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - start) * 1000
    assert answer.status_code < 400, (answer.status_code, answer.text[:300])
    return elapsed, answer


def summary(name: str, ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"request": name, "n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))],
            "max_ms": ms[-1]}


def single_reviewer(url: str, repeat: int, rows: int) -> list[dict]:
    client = reviewer(url, "reviewer-0")
    times: dict[str, list[float]] = {k: [] for k in (
        "GET / (queue page)", "GET /api/queue (first 50)", f"GET /api/queue (offset {rows - 100})",
        "POST /api/next (claims one)", "POST /api/next (the held one)", "GET /api/items/{id}",
        "POST decision (confirm)", "GET /stats")}
    names = list(times)
    for i in range(repeat + 5):  # the first 5 warm up
        rounds = [
            timed(lambda: client.get("/")),
            timed(lambda: client.get("/api/queue", params={"limit": 50})),
            timed(lambda: client.get("/api/queue", params={"offset": rows - 100, "limit": 50})),
        ]
        claim = timed(lambda: client.post("/api/next", json={}))
        item_id = claim[1].json()["item"]["id"]
        rounds += [claim, timed(lambda: client.post("/api/next", json={})),
                   timed(lambda: client.get(f"/api/items/{item_id}")),
                   timed(lambda: client.post(f"/api/items/{item_id}/decision", json={"action": "confirm"}))]
        if i % 5 == 0:
            rounds.append(timed(lambda: client.get("/stats")))
        if i >= 5:
            for name, (ms, _) in zip(names, rounds):
                times[name].append(ms)
    client.close()
    return [summary(name, ms) for name, ms in times.items()]


def many_reviewers(url: str, reviewers: int, each: int) -> dict:
    """`reviewers` threads taking and confirming `each` items: throughput, latency, no item twice."""
    clients = [reviewer(url, f"reviewer-{n + 1}") for n in range(reviewers)]
    taken: list[int] = []
    next_ms: list[float] = []
    lock = threading.Lock()

    def work(client: httpx.Client) -> None:
        for _ in range(each):
            ms, answer = timed(lambda: client.post("/api/next", json={}))
            item_id = answer.json()["item"]["id"]
            timed(lambda: client.post(f"/api/items/{item_id}/decision", json={"action": "confirm"}))
            with lock:
                taken.append(item_id)
                next_ms.append(ms)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for c in clients:
        c.close()
    assert len(set(taken)) == len(taken), "an item was handed to two reviewers"
    return summary(f"POST /api/next, {reviewers} reviewers at once", next_ms) | {
        "decisions_per_s": len(taken) / seconds, "distinct_items": len(set(taken))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.review_queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="queued items")
    parser.add_argument("--decided", type=int, default=10_000, help="decided items (the stats page reads them)")
    parser.add_argument("--repeat", type=int, default=200, help="timed rounds of the single reviewer")
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--each", type=int, default=50, help="items each of the concurrent reviewers decides")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        data_dir = Path(tmp)
        fill_s = fill(data_dir, args.rows, args.decided)
        size_mb = (data_dir / "review.sqlite3").stat().st_size / 1e6
        proc, url = start_service(data_dir)
        try:
            rows = single_reviewer(url, args.repeat, args.rows)
            concurrent = many_reviewers(url, args.reviewers, args.each)
        finally:
            proc.terminate()
            proc.wait(10)

    print(f"\nreview service, SQLite, {args.rows:,} queued + {args.decided:,} decided items ({size_mb:.0f} MB, "
          f"filled in {fill_s:.1f} s); {machine()}\n")
    print(f"{'request':<44} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for r in [*rows, concurrent]:
        print(f"{r['request']:<44} {r['n']:>5} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['max_ms']:>8.1f}")
    print(f"\n{args.reviewers} reviewers at once: {concurrent['decisions_per_s']:.0f} claims+decisions/s, "
          f"{concurrent['distinct_items']} items, none handed out twice")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": args.rows, "decided": args.decided,
                                         "requests": [*rows, concurrent]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
