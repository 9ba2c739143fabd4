"""Reading a real server's Prometheus /metrics, the way a scraper would."""

from __future__ import annotations

import re
import urllib.request


def screened_count(metrics_port: int) -> float:
    """wildscreen_images_total{code="OK"} of the server whose --metrics-port this is."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(r'^wildscreen_images_total\{code="OK"\} (\S+)$', text, re.M))
