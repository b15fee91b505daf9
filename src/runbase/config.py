"""runbase's settings: the only place that reads the environment.

Every field can be set as `RUNBASE_<NAME>` (for example `RUNBASE_DATA_DIR`). The defaults
are the embedded set-up: SQLite and output files in `./runbase-data`, workers inside the
server process, the preview engine.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNBASE_", extra="ignore")

    data_dir: Path = Path("runbase-data")
    """Holds the SQLite database, output files and the URL-signing secret."""

    database_url: str | None = None
    """SQLAlchemy URL; default `sqlite:///<data_dir>/runbase.db`."""

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

    executor: Literal["local", "ray"] = "local"
    """Where workers run their engines: "local" (a child process per worker) or "ray" (a Ray
    actor per worker, placed by Ray; needs the `ray` extra; docs/deploy.md "Ray")."""

    ray_address: str | None = None
    """The Ray cluster to join (`127.0.0.1:6379`, `auto`, `ray://head:10001`); default: a
    cluster found by Ray's own rules, else a local one started inside this process."""

    ray_num_gpus: float | None = None
    """GPUs each engine actor asks Ray for; default: 1 when the first engine is ltx2 on a
    CUDA device, else 0."""

    ray_num_cpus: float = 1.0
    """CPUs each engine actor asks Ray for (held while the actor lives)."""

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

    # Beyond the contract (README "Beyond the contract")
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line, with the request id and run id when known."""

    cancel_wait_seconds: float = 10.0
    """How long `POST .../cancel` waits for a processing run's engine to stop."""

    test_engine: str = "preview"
    """The engine that serves runs of test keys (`sk-test-...`)."""

    webhook_http_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Hosts that webhooks may reach over plain http (https is needed for all others)."""

    allow_private_webhook_hosts: bool = False
    """Let webhooks reach loopback and private addresses (tests, trusted networks only)."""

    webhook_timeout_seconds: float = 10.0
    """How long one webhook delivery attempt may take."""

    webhook_retry_seconds: float = 5.0
    """Delay before the first retry of a failed delivery; it doubles each time (max 1 h)."""

    webhook_max_age_seconds: float = 24 * 3600
    """A delivery not made within this time of its event is given up."""

    openai_model_map: dict[str, str] | None = None
    """`model` names that the OpenAI-compatible `POST /v1/videos` reads as a catalog model
    (catalog ids are always accepted as they are). JSON, e.g. `{"sora-2": "bytedance/..."}`;
    `{}` refuses every other name. Default: OpenAI's `sora-2` names (`sora-2`, `sora-2-pro`
    and their dated names) map to Seedance 1.5 Pro."""

    # The admin API and console (README "Administration")
    admin: bool = True
    """Serve the admin API (`/admin/api/`) and console (`/admin`); `off` turns both off."""

    admin_token: SecretStr | None = None
    """The admin token; default: one generated into `<data_dir>/admin-token` on first start."""

    admin_host: str | None = None
    """Serve the admin API and console on this address instead of the public listener
    (default 127.0.0.1 when only `admin_port` is set); the public one then answers 404."""

    admin_port: int | None = None
    """The port of the separate admin listener (default: the public port, when only
    `admin_host` is set)."""

    # Prices in micro-USD per million video tokens.
    price_silent_per_million_tokens: int = 1_200_000
    """What a run without audio costs its owner, in micro-USD per million video tokens."""

    price_audio_per_million_tokens: int = 2_400_000
    """What a run with audio costs its owner, in micro-USD per million video tokens."""

    @field_validator("trusted_proxies", "engines", "webhook_http_hosts", mode="before")
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
        return self.database_url or f"sqlite:///{self.data_dir / 'runbase.db'}"

    @property
    def admin_listener_is_separate(self) -> bool:
        """The admin API and console have their own listener (`admin_host`/`admin_port`)."""
        return self.admin and (self.admin_host is not None or self.admin_port is not None)

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    # LTX-2 engine (engines/ltx2/)
    ltx2_model: str = "Lightricks/LTX-2.5-Diffusers"
    """LTX-2 weights in diffusers layout: a local folder, or a Hugging Face repo id that is
    already in the Hugging Face cache (see `allow_downloads`)."""

    ltx2_upsampler: str | None = None
    """The x2 latent upsampler for the two-stage recipe: a folder or repo id; default: the
    `latent_upsampler` subfolder of `ltx2_model`."""

    ltx2_device: str = "cuda"
    """Torch device. Give each worker its own GPU with CUDA_VISIBLE_DEVICES; "cpu" is for
    development only (very slow)."""

    ltx2_dtype: str = "bfloat16"
    """Weights and compute precision: bfloat16, float16 or float32."""

    ltx2_distilled: bool = True
    """The distilled 8-step schedule with guidance 1.0 (needs a distilled checkpoint)."""

    ltx2_steps: int = 30
    """Denoising steps when `ltx2_distilled` is false (guided sampling, about 4x slower)."""

    ltx2_fp8: bool = False
    """FP8 transformer weights on GPUs that have FP8 (compute capability 8.9+); FP8 matmuls
    when torchao works, FP8 storage with bf16 compute otherwise. Ignored elsewhere. Needs
    `ltx2_dtype` bfloat16."""

    ltx2_compile: bool = False
    """torch.compile the transformer's blocks: faster steps after a slow first run."""

    ltx2_vae_tiling: str = "auto"
    """Decode the video in spatial tiles and runs of frames: "auto" (1080p, and 720p from
    8 s), "on" or "off"."""

    ltx2_cpu_offload: str = "off"
    """Keep weights in CPU memory for small GPUs: "off", "model" (one model on the GPU at a
    time, for about 48 GB cards) or "sequential" (layer by layer; slowest, least memory)."""

    ltx2_two_stage: str = "auto"
    """Generate at half size, upsample the latents x2 and refine: "auto" (for 1080p), "on"
    or "off". Needs the latent upsampler and the distilled schedule."""

    ltx2_max_generation_side: int | None = None
    """Test and development knob: cap the generated size's longer side (the result is still
    resized to the exact output size). Leave unset in production."""

    ltx2_context_parallel: int = 1
    """GPUs of this node that share every LTX-2 generation (Ulysses sequence parallelism,
    one rank process per GPU on cuda:0 .. cuda:N-1 of CUDA_VISIBLE_DEVICES); 1: off."""

    allow_downloads: bool = False
    """Let engines download model weights at start-up when they are not found locally."""

    # ModelArk provider (providers/ark.py)
    ark_api_key: SecretStr | None = None
    """BytePlus ModelArk (or Volcengine Ark) API key; never logged, never in run objects."""

    ark_base_url: str = "https://ark.ap-southeast.bytepluses.com/api/v3"
    """The Ark API base; Volcengine: https://ark.cn-beijing.volces.com/api/v3."""

    ark_model: str = "seedance-1-5-pro-251215"
    """Upstream model or endpoint id (Volcengine: doubao-seedance-1-5-pro-251215)."""

    ark_poll_interval_seconds: float = 2.0
    """First wait between task polls (it grows to 5x); also the first retry backoff."""

    ark_timeout_seconds: float = 1800.0
    """Longest wait for one upstream task, download included."""

    ark_allow_private_hosts: bool = False
    """Let video downloads reach loopback and private addresses (tests only)."""

    ark_submit_retry_seconds: float = 10.0
    """How long a submit answered with 429 or 5xx (or a refused connection) is retried
    before the run moves to the next provider of the route (or fails, refunded)."""

    ark_max_in_flight: int = Field(default=100, ge=1)
    """ModelArk tasks in flight at once from one process (ModelArk queues at most 120 per
    account; more runs wait here, or go to the next provider of the route)."""

    ark_max_poll_interval_seconds: float = 10.0
    """Longest wait between polls of one task (callbacks, when `public_url` is set, cut
    the wait short)."""

    ark_price_silent_per_million_tokens: int = 1_200_000
    """What ModelArk charges runbase, in micro-USD per million video tokens, without audio
    (its published online price); recorded on each attempt as its upstream cost."""

    ark_price_audio_per_million_tokens: int = 2_400_000
    """The same, with audio."""

    # Provider routing (dispatch/gateway.py)
    breaker_failures: int = Field(default=5, ge=1)
    """A provider that fails this many runs in a row (its own faults, not the users') is
    skipped for `breaker_cooldown_seconds` (circuit breaker)."""

    breaker_cooldown_seconds: float = 30.0
    """How long a tripped provider is skipped before one run probes it again."""

    # Scale-out (storage, shared limits)
    storage_url: str | None = None
    """Where outputs go: `s3://bucket/prefix` for S3-compatible storage (needs the `s3`
    extra; credentials from the usual AWS settings); default: `<data_dir>/outputs`."""

    s3_endpoint_url: str | None = None
    """S3 endpoint for non-AWS servers (MinIO, Ceph, R2...); default: boto3's own choice."""

    s3_region: str | None = None
    """S3 region; default: boto3's own choice (AWS_REGION, ~/.aws/config)."""

    s3_multipart_threshold_mb: int = 64
    """Outputs at least this large are uploaded in parts."""

    s3_multipart_chunk_mb: int = 16
    """Part size of multipart uploads (S3's minimum is 5)."""

    rate_limit_storage_url: str | None = None
    """Where rate-limit counts live: `redis://host:6379/0` shares one limit per key across
    API replicas (needs the `redis` extra); default: each process's memory."""

    # Providers fal, replicate and runbase (providers/fal.py, replicate.py, runbase.py)
    fal_key: SecretStr | None = None
    """fal API key (`key_id:key_secret`), sent as `Authorization: Key ...`; never logged."""

    fal_queue_url: str = "https://queue.fal.run"
    """fal's queue API."""

    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    """fal's public keys for webhook signatures (Ed25519), read at most once an hour."""

    fal_poll_interval_seconds: float = 2.0
    """First wait between polls of a fal request (it grows 1.5x per poll)."""

    fal_max_poll_interval_seconds: float = 10.0
    """Longest wait between polls of a fal request (callbacks, when `public_url` is set, cut
    the wait short)."""

    fal_submit_retry_seconds: float = 10.0
    """How long a submit answered with 429 or 5xx (or a refused connection) is retried
    before the run moves to the next provider of the route (or fails, refunded)."""

    fal_timeout_seconds: float = 1800.0
    """Longest time one fal attempt may take, download included."""

    fal_max_in_flight: int = Field(default=40, ge=1)
    """fal requests in flight at once from one process (fal runs up to 40 per account at
    once and queues the rest)."""

    fal_allow_private_hosts: bool = False
    """Let video downloads from fal reach loopback and private addresses (tests only)."""

    fal_price_silent_per_million_tokens: int = 1_200_000
    """What fal charges, in micro-USD per million video tokens, without audio (its
    published price); recorded on each attempt as its upstream cost."""

    fal_price_audio_per_million_tokens: int = 2_400_000
    """The same, with audio."""

    replicate_api_token: SecretStr | None = None
    """Replicate API token, sent as `Authorization: Bearer ...`; never logged."""

    replicate_base_url: str = "https://api.replicate.com"
    """Replicate's HTTP API."""

    replicate_model: str = "bytedance/seedance-1.5-pro"
    """The Replicate model (`owner/name`) that runs Seedance 1.5 Pro."""

    replicate_poll_interval_seconds: float = 2.0
    """First wait between polls of a prediction (it grows 1.5x per poll)."""

    replicate_max_poll_interval_seconds: float = 10.0
    """Longest wait between polls of a prediction (callbacks, when `public_url` is set, cut
    the wait short)."""

    replicate_submit_retry_seconds: float = 10.0
    """How long a submit answered with 429 or 5xx (or a refused connection) is retried
    before the run moves to the next provider of the route (or fails, refunded)."""

    replicate_timeout_seconds: float = 1800.0
    """Longest time one Replicate attempt may take, download included."""

    replicate_max_in_flight: int = Field(default=100, ge=1)
    """Replicate predictions in flight at once from one process."""

    replicate_allow_private_hosts: bool = False
    """Let video downloads from Replicate reach loopback and private addresses (tests
    only)."""

    replicate_price_silent_per_million_tokens: int = 1_200_000
    """What Replicate charges, in micro-USD per million video tokens, without audio
    (ByteDance's published price: Replicate's own was not found; set yours)."""

    replicate_price_audio_per_million_tokens: int = 2_400_000
    """The same, with audio."""

    runbase_base_url: str = "https://runbase.net"
    """A Runbase-compatible server to forward runs to: runbase.net or another runbase."""

    runbase_api_key: SecretStr | None = None
    """The `sk-...` key for `runbase_base_url`; never logged."""

    runbase_allow_private_hosts: bool = False
    """Let video downloads from the upstream reach loopback and private addresses (an
    upstream runbase on this machine or a private network; tests)."""

    runbase_rate_limit: str = "20/10seconds"
    """The upstream's rate limit over create and get together (`limits` notation); every
    run in flight shares it (runbase.net: 20 per 10 s per key)."""

    runbase_poll_interval_seconds: float = 2.0
    """First wait between polls of an upstream run (it grows 1.5x per poll)."""

    runbase_max_poll_interval_seconds: float = 10.0
    """Longest wait between polls of an upstream run (callbacks, when `public_url` is set, cut
    the wait short)."""

    runbase_submit_retry_seconds: float = 10.0
    """How long a create answered with 5xx (or a refused connection) is retried before the
    run moves to the next provider of the route (or fails, refunded); the upstream's 429s
    are waited out, not counted here."""

    runbase_timeout_seconds: float = 1800.0
    """Longest time one attempt at the upstream may take, download included."""

    runbase_max_in_flight: int = Field(default=100, ge=1)
    """Upstream runs in flight at once from one process."""
