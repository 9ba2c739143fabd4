"""The review service SIGKILLed three times while four reviewers decide and results keep arriving:
every answer it acknowledged (an item taken in, a decision made) is there after the restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx

from server.review.accounts import Accounts, load_secret
from server.review.database import connect, default_url
from server.review.store import ReviewStore
from tests.support.ports import free_port
from tests.support.review import listing_image, screen_line

REVIEWERS = ("ana", "ben", "chi", "dev")
CLI = {"x-requested-by": "wildscreen"}


class Service:
    """`wildscreen-review serve` as its own process, killed and started again on the same port."""

    def __init__(self, data_dir) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "server.review.main", "--data-dir", str(self.data_dir),
                                      "serve", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("the review service did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def test_nothing_acknowledged_is_lost_across_three_sigkills(tmp_path):
    data_dir = tmp_path / "review"
    data_dir.mkdir()
    engine = connect(default_url(data_dir))
    accounts = Accounts(engine, load_secret(data_dir))
    for name in REVIEWERS:
        accounts.add(name, f"{name}-password")
    cookies = {name: accounts.login(name, f"{name}-password") for name in REVIEWERS}
    csrf = {name: accounts.csrf_token(name) for name in REVIEWERS}
    engine.dispose()

    service = Service(data_dir)
    service.start()
    taken_in: set[int] = set()
    decided: dict[int, str] = {}
    lock, stop = threading.Lock(), threading.Event()

    def intake(first: int, count: int) -> None:
        for seed in range(first, first + count):
            while not stop.is_set():
                try:
                    answer = httpx.post(f"{service.url}/api/items", headers=CLI, timeout=5,
                                        files={"image": ("x.jpg", listing_image(seed))},
                                        data={"result": json.dumps(screen_line(f"r{seed}")), "listing_id": f"L{seed}"})
                except httpx.TransportError:
                    time.sleep(0.05)  # killed: the same post again, as the feed and the CLI do
                    continue
                assert answer.status_code in (200, 201), answer.text
                with lock:
                    taken_in.add(answer.json()["id"])
                break

    def reviewer(name: str) -> None:
        headers = {"x-csrf-token": csrf[name]}
        actions = ("confirm", "reject", "fix")
        while not stop.is_set():
            try:
                with httpx.Client(base_url=service.url, cookies={"wildscreen_review": cookies[name]},
                                  headers=headers, timeout=5) as client:
                    item = client.post("/api/next", json={}).json()["item"]
                    if item is None:
                        time.sleep(0.05)
                        continue
                    action = actions[item["id"] % 3]
                    boxes = [{"label": "ivory", "x_min": 5, "y_min": 5, "x_max": 50, "y_max": 40}]
                    answer = client.post(f"/api/items/{item['id']}/decision", json={"action": action, "boxes": boxes})
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                with lock:
                    decided[item["id"]] = action

    intake(0, 30)
    threads = [threading.Thread(target=reviewer, args=(name,)) for name in REVIEWERS]
    threads.append(threading.Thread(target=intake, args=(30, 30)))  # results keep arriving throughout
    for t in threads:
        t.start()
    try:
        for kills in range(1, 4):
            deadline = time.monotonic() + 60
            while len(decided) < 8 * kills and time.monotonic() < deadline:
                time.sleep(0.02)
            service.kill()  # mid-flight: reviewers and intake are posting now
            service.start()
        threads[-1].join(60)  # the intake thread: all 60 results taken in
        deadline = time.monotonic() + 60
        while httpx.get(f"{service.url}/healthz").json()["decided"] < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        service.kill()

    assert len(decided) >= 24 and len(taken_in) == 60  # (a decision whose answer the kill cut off is not counted)
    engine = connect(default_url(data_dir))
    store = ReviewStore(engine, data_dir)
    try:
        for item_id in taken_in:
            assert store.get(item_id) is not None
        for item_id, action in decided.items():
            item = store.get(item_id)
            assert item.decision == action, (item_id, item.decision, action)
            assert [h["action"] for h in store.history(item_id)].count(action) == 1
    finally:
        engine.dispose()
