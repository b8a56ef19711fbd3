"""Process settings, read from the environment (prefix ARBITER_) or a .env file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.log.db import Timeouts

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# USD per million tokens: (prompt, completion). Override with ARBITER_LLM_PRICES.
DEFAULT_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
}


StructuredMode = Literal["tools", "json_schema", "json"]
"""How a model is asked for structured output: a forced tool call, a JSON-schema
`response_format` (OpenAI, vLLM, Ollama structured outputs), or JSON mode plus validation."""


class ModelAlias(BaseModel):
    """One name a policy may use (`primary: fast`): the provider model and where it is served."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the provider's model (or Azure deployment) name")
    base_url: str | None = Field(default=None, description="default: ARBITER_LLM_BASE_URL")
    api_key: SecretStr | None = Field(default=None, description="default: ARBITER_LLM_API_KEY")
    api_key_file: Path | None = None
    api_key_header: str | None = Field(
        default=None, description="send the key in this header (Azure: api-key), not as Bearer"
    )
    api_version: str | None = Field(default=None, description="Azure: sent as ?api-version=")
    mode: StructuredMode | None = Field(default=None, description="default: ARBITER_LLM_MODE")
    price: tuple[Decimal, Decimal] | None = Field(
        default=None, description="USD per 1M prompt / completion tokens (default: the table)"
    )


@dataclass(frozen=True)
class ResolvedModel:
    """A model name from a policy, resolved against the settings."""

    alias: str
    model: str
    base_url: str | None
    api_key: str | None
    api_key_header: str | None
    api_version: str | None
    mode: StructuredMode
    price: tuple[Decimal, Decimal]

    @property
    def endpoint(self) -> tuple[str | None, str | None, str | None, str | None]:
        """What one HTTP client is built for (several aliases may share it)."""
        return (self.base_url, self.api_key, self.api_key_header, self.api_version)

    @property
    def where(self) -> str:
        """The endpoint for logs and /readyz: the base URL without credentials, never a key."""
        return redact_url(self.base_url or "https://api.openai.com/v1")


class Settings(BaseSettings):
    """Everything the process is configured with."""

    model_config = SettingsConfigDict(env_prefix="ARBITER_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./arbiter.db"
    specs_dir: Path = PROJECT_ROOT / "specs"
    prompts_dir: Path = PROJECT_ROOT / "prompts"
    evals_dir: Path = PROJECT_ROOT / "evals"

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_api_key_file: Path | None = None
    llm_mode: StructuredMode = "tools"
    llm_models: dict[str, ModelAlias] = Field(
        default_factory=dict, description="JSON: alias -> {model, base_url, api_key, mode, ...}"
    )
    llm_probe_timeout_s: float = Field(default=2.0, gt=0, le=30)
    llm_probe_ttl_s: float = Field(default=15.0, ge=0, description="how long a probe is reused")
    llm_prices: dict[str, tuple[Decimal, Decimal]] = Field(default_factory=lambda: DEFAULT_PRICES)
    llm_max_attempts: int = Field(default=3, ge=1, le=10)
    llm_backoff_max_s: float = Field(default=2.0, ge=0)
    llm_max_concurrency: int = Field(default=64, ge=1)
    llm_connect_timeout_s: float = 3.0
    llm_pool_connections: int = 100
    llm_transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="HTTP transport under the openai SDK: aiohttp (measured fastest, "
        "bench/results) or httpx's own pool",
    )
    deadline_s: float = Field(default=8.0, gt=0, le=120)
    max_deadline_s: float = Field(
        default=30.0, gt=0, le=300, description="upper bound of a per-request deadline"
    )
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    overload_mode: Literal["rules", "reject"] = "rules"
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_json_depth: int = Field(default=32, ge=4)
    rate_limit_per_minute: int = Field(default=1200, ge=0, description="per API key; 0 = off")
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db: share the rate limit across processes"
    )
    redis_prefix: str = "arbiter:"
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    idempotency_purge_s: float = Field(
        default=300.0, ge=0, description="how often expired keys are deleted; 0 = never"
    )
    idempotency_purge_batch: int = Field(default=1000, ge=1, le=100_000)
    database_url_file: Path | None = None
    db_connect_timeout_s: int = Field(
        default=5, ge=2, le=60, description="PostgreSQL connect_timeout; also the pool wait"
    )
    db_statement_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="PostgreSQL statement_timeout"
    )
    db_lock_timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="PostgreSQL lock_timeout; SQLite busy timeout"
    )
    unsafe_null_log: bool = Field(default=False, description="benchmarks only: log nothing")
    log_shards: int = Field(
        default=1, ge=1, le=64, description="decision chains of a NEW log (fixed after that)"
    )
    checkpoint_key: str | None = Field(
        default=None, description="Ed25519 key signing checkpoints (base64 seed or PEM)"
    )
    checkpoint_key_file: Path | None = None
    checkpoint_signer: str | None = Field(
        default=None, description="module:factory of another signer (a KMS); see checkpoints.py"
    )
    checkpoint_key_name: str = Field(default="arbiter", pattern=r"^[A-Za-z0-9._/-]{1,64}$")
    checkpoint_origin: str = Field(default="arbiter decision log", max_length=200)
    checkpoint_dir: Path | None = Field(
        default=None, description="where checkpoints are published (append-only, WORM)"
    )
    checkpoint_interval_s: float = Field(
        default=60.0, ge=0, description="how often the service publishes one; 0 = never"
    )
    checkpoint_public_key: str | None = Field(
        default=None, description="the verifier key an auditor pins (name+id+base64)"
    )

    spec_poll_s: float = Field(default=2.0, ge=0, description="0 turns hot reload off")
    prompt_token_budget: int = Field(default=6000, ge=500)
    policy_publish_requires_eval: bool = Field(
        default=True,
        description="promoting through the API needs a passing rules-mode eval of the version",
    )
    policy_second_person: bool = Field(
        default=False, description="the person who drafted a version may not publish it"
    )
    shadow_queue_size: int = Field(default=200, ge=1)
    shadow_concurrency: int = Field(default=2, ge=1, le=64)

    host: str = "127.0.0.1"
    port: int = 8000
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="proxies whose X-Forwarded-Proto/For `arbiter serve` trusts (comma list)",
    )
    secure_cookies: bool = Field(
        default=False, description="session cookies always Secure (production behind TLS)"
    )
    session_hours: int = Field(default=8, ge=1, le=24, description="a session's longest life")
    session_idle_minutes: int = Field(default=30, ge=1, description="idle time that ends it")
    admin_key_file: Path = Field(
        default=Path("arbiter-admin.key"),
        description="where `arbiter serve` writes the first admin key when stdout is no terminal",
    )
    metrics_require_key: bool = Field(
        default=False, description="GET /metrics needs a key with the `metrics` scope"
    )

    def db_url(self) -> str:
        """The database URL; ARBITER_DATABASE_URL_FILE keeps a password out of the env."""
        if self.database_url_file is not None:
            return self.database_url_file.read_text().strip()
        return self.database_url

    def db_timeouts(self) -> Timeouts:
        """Connect, statement and lock timeouts of the database; a request waits at most
        connect + statement seconds for one database call, then answers 503."""
        return Timeouts(
            connect_s=self.db_connect_timeout_s,
            statement_s=self.db_statement_timeout_s,
            lock_s=self.db_lock_timeout_s,
        )

    def checkpoint_signer_text(self) -> str | None:
        """The checkpoint signing key; ARBITER_CHECKPOINT_KEY_FILE keeps it out of the env."""
        if self.checkpoint_key_file is not None:
            return self.checkpoint_key_file.read_text().strip()
        return self.checkpoint_key

    def llm_key(self) -> str | None:
        """The LLM API key from the environment or the key file, if any."""
        if self.llm_api_key is not None:
            return self.llm_api_key.get_secret_value()
        if self.llm_api_key_file is not None:
            return self.llm_api_key_file.read_text().strip()
        return None

    @property
    def llm_enabled(self) -> bool:
        """The LLM is used only when a key, a base URL or a model alias is configured."""
        return bool(self.llm_key() or self.llm_base_url or self.llm_models)

    @property
    def llm_default_endpoint(self) -> bool:
        """Whether a model name that is no alias is served by ARBITER_LLM_BASE_URL/_API_KEY."""
        return bool(self.llm_key() or self.llm_base_url)

    def resolve_model(self, name: str) -> ResolvedModel | None:
        """An alias from ARBITER_LLM_MODELS, else the name itself on the default endpoint;
        None when neither serves it."""
        alias = self.llm_models.get(name)
        if alias is None:
            if not self.llm_default_endpoint:
                return None
            alias = ModelAlias(model=name)
        if alias.api_key is not None:
            key: str | None = alias.api_key.get_secret_value()
        elif alias.api_key_file is not None:
            key = alias.api_key_file.read_text().strip()
        else:
            key = self.llm_key()
        price = alias.price or self.llm_prices.get(name) or self.llm_prices.get(alias.model)
        return ResolvedModel(
            alias=name,
            model=alias.model,
            base_url=alias.base_url or self.llm_base_url,
            api_key=key,
            api_key_header=alias.api_key_header,
            api_version=alias.api_version,
            mode=alias.mode or self.llm_mode,
            price=price or (Decimal(0), Decimal(0)),
        )


def redact_url(url: str) -> str:
    """A URL without its password or query string, for logs and banners."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url).split("?", 1)[0]


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
