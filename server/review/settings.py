"""The review service's settings (`wildscreen-review`), read by the same loader as the server's:
flag > WILDSCREEN_REVIEW_* variable > default (e.g. --database-url, WILDSCREEN_REVIEW_DATABASE_URL).

Two layers, as the command line has them: `ReviewSettings` (where the queue lives) before the
command, for every command; `ReviewServeSettings` (address, keys, cookies, logs) after `serve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from server.logs import LogSettings
from server.settings import setting

ENV_PREFIX = "WILDSCREEN_REVIEW_"


@dataclass(frozen=True)
class ReviewSettings:
    data_dir: Path = setting("images, the SQLite file and the signing key", default=Path("review-data"))
    database_url: str | None = setting("SQLAlchemy URL; default: SQLite in --data-dir", default=None)
    claim_seconds: float = setting("how long a reviewer holds an item before others may take it", default=600.0)
    own_bank: str = setting("the hash bank confirmed photos go to (created at start, action FLAG); '' for none",
                            default="confirmed")
    own_bank_organisation: str = setting("the owner named on the own bank when it is created (what partners see in "
                                         "an export)", default="")


@dataclass(frozen=True)
class ReviewServeSettings:
    host: str = setting("address to listen on", default="127.0.0.1")
    port: int = setting("port to listen on", default=8080)
    keys: Path | None = setting("keys file of wildscreen-serve; review keys may queue items, admin keys also "
                                       "manage hash banks (/api/banks)", default=None)
    no_loopback: bool = setting("ask loopback callers to log in too (behind a reverse proxy every caller is loopback)",
                                default=False)
    secure_cookies: bool = setting("send the session cookie over HTTPS only", default=False)
    bank_import_max_mib: int = setting("the largest list POST /api/banks/NAME/import takes, in MiB; larger lists go "
                                       "through `wildscreen-review banks import`", default=16)
    log: LogSettings = field(default_factory=lambda: LogSettings(log_format="text"))
    """Plain text by default, as people at a terminal run it; --log-format json behind a collector."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 0..65535")
        if self.bank_import_max_mib < 1:
            raise ValueError(f"bank_import_max_mib {self.bank_import_max_mib} is under 1")
