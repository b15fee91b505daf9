"""runbase's settings: the only place that reads the environment.

Every field can be set as `RUNBASE_<NAME>` (for example `RUNBASE_DATA_DIR`). The defaults
are the embedded set-up: SQLite and output files in `./runbase-data`, workers inside the
server process, the preview engine.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runbase.core.seedance import PriceRates


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNBASE_", extra="ignore")

    data_dir: Path = Path("runbase-data")
    """Holds the SQLite database, output files and the URL-signing secret."""

    database_url: str | None = None
    """SQLAlchemy URL; default `sqlite+aiosqlite:///<data_dir>/runbase.db`."""

    public_url: str | None = None
    """Base of output URLs (e.g. https://video.example.com); default: the request's own."""

    file_url_ttl_seconds: int = 7 * 24 * 3600
    """How long a signed output URL stays valid after the run is read."""

    access_log: bool = True
    """Log one line per HTTP request (uvicorn's access log)."""

    starting_balance_usd: float = 10.0
    """Balance of the `default` account created on first start."""

    # Limits
    rate_limit: str = "20/10seconds"
    """Per-key moving-window limit over create and get together (`limits` notation)."""

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or CIDR blocks whose X-Forwarded-For is believed; empty = socket peer only."""

    # Workers and the queue
    workers: int = 1
    """In-process workers; each runs engines in its own child process. 0 = none (API only)."""

    engines: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["preview"])
    """Engines to try in order, by name or `module:Class`; the first that starts serves runs."""

    poll_interval_seconds: float = 0.5
    """How often an idle worker looks for pending runs."""

    lease_seconds: float = 30.0
    """A processing run whose worker has not heartbeated for this long counts as lost."""

    max_attempts: int = 2
    """A run whose worker was lost is retried until it has been tried this many times."""

    max_processing_seconds: float = 30 * 60
    """A run processing longer than this fails with `timeout` and is refunded."""

    allow_private_image_hosts: bool = False
    """Let image_urls reach loopback and private addresses (tests, trusted networks only)."""

    # Prices in micro-USD per million video tokens.
    price_silent_per_million_tokens: int = 1_200_000
    price_audio_per_million_tokens: int = 2_400_000

    @field_validator("trusted_proxies", "engines", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'runbase.db'}"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def price_rates(self) -> PriceRates:
        return PriceRates(
            silent=self.price_silent_per_million_tokens, audio=self.price_audio_per_million_tokens
        )
