"""Annotated dependency aliases for routes; tests override the underlying providers.

The providers are `async def` though they never await: FastAPI runs a plain `def`
dependency in the thread pool, a thread hop per dependency per request on the hot path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Caller
from service.engine import Engine
from service.errors import Forbidden, RateLimited, Unauthenticated, UnsupportedMediaType
from service.kinds.registry import Kinds
from service.limits import RateLimiter
from service.log.decisions import DecisionLog
from service.log.keys import KeyStore, SessionStore
from service.log.stores import Stores
from service.services import Services
from service.settings import Settings
from service.specs.registry import SpecRegistry


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_engine(services: ServicesDep) -> Engine:
    return services.require_engine()


async def get_stores(services: ServicesDep) -> Stores:
    return services.stores


async def get_log(services: ServicesDep) -> DecisionLog:
    return services.stores.log


async def get_keys(services: ServicesDep) -> KeyStore:
    return services.stores.keys


async def get_sessions(services: ServicesDep) -> SessionStore:
    return services.stores.sessions


async def get_registry(services: ServicesDep) -> SpecRegistry:
    return services.require_engine().registry


async def get_kinds(services: ServicesDep) -> Kinds:
    return services.kinds


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoresDep = Annotated[Stores, Depends(get_stores)]
LogDep = Annotated[DecisionLog, Depends(get_log)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
RegistryDep = Annotated[SpecRegistry, Depends(get_registry)]
KindsDep = Annotated[Kinds, Depends(get_kinds)]


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An Arbiter API key: `Authorization: Bearer <key>` (arbiter keys create).",
)
"""Declares the bearer scheme in OpenAPI (Swagger's Authorize button); the key is read
and checked below, with Arbiter's own error answers."""


async def get_caller(
    request: Request,
    keys: KeysDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Caller:
    """The caller behind the bearer key; 401 without a valid key."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    row = await keys.db.call(lambda: keys.by_secret(secret=secret.strip()))
    if row is None:
        raise Unauthenticated("unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    limiter: RateLimiter = request.app.state.limiter
    wait = await limiter.take(row.id)
    if wait > 0:
        request.app.state.engine.metrics.count("rate_limited")
        raise RateLimited(
            f"rate limit of {limiter.per_minute} requests per minute for this key",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    return Caller(key_id=row.id, scopes=frozenset(row.scopes))


CallerDep = Annotated[Caller, Depends(get_caller)]


async def metrics_reader(request: Request, keys: KeysDep) -> None:
    """With ARBITER_METRICS_REQUIRE_KEY, /metrics needs a key with the `metrics` scope."""
    if request.app.state.settings.metrics_require_key:
        await require("metrics")(await get_caller(request, keys))


async def json_body(request: Request) -> None:
    """415 unless the request says its body is JSON (any case, any parameters)."""
    sent = request.headers.get("content-type", "")
    media = sent.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        got = f"got {sent!r}" if sent else "no Content-Type was sent"
        raise UnsupportedMediaType(
            f"send the body as JSON with the header 'Content-Type: application/json' ({got})",
            details={"expected": "application/json", "got": sent or None},
        )


def require(scope: str, *others: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets through only callers holding `scope` or one of `others`
    (or admin)."""
    scopes = (scope, *others)

    async def check(caller: CallerDep) -> Caller:
        if not caller.has_any(scopes):
            wanted = " or ".join(repr(s) for s in scopes)
            raise Forbidden(
                f"this API key lacks the {wanted} scope",
                details={
                    "required": scope if not others else list(scopes),
                    "held": sorted(caller.scopes),
                },
            )
        return caller

    return check
