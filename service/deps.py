"""Annotated dependency aliases for routes; tests override the underlying providers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import Depends, Request

from service.auth import Caller
from service.engine import Engine
from service.errors import Forbidden, RateLimited, Unauthenticated
from service.limits import RateLimiter
from service.log.store import Store
from service.settings import Settings


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[Store, Depends(get_store)]


async def get_caller(request: Request, store: StoreDep) -> Caller:
    """The caller behind the bearer key; 401 without a valid key."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    row = await anyio.to_thread.run_sync(lambda: store.key_for_secret(secret=secret.strip()))
    if row is None:
        raise Unauthenticated("unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(row.id)
    if wait > 0:
        request.app.state.engine.metrics.count("rate_limited")
        raise RateLimited(
            f"rate limit of {limiter.per_minute} requests per minute for this key",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    return Caller(key_id=row.id, scopes=frozenset(row.scopes))


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(scope: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets through only callers holding `scope` (or admin)."""

    async def check(caller: CallerDep) -> Caller:
        if not caller.has(scope):
            raise Forbidden(
                f"this API key lacks the {scope!r} scope",
                details={"required": scope, "held": sorted(caller.scopes)},
            )
        return caller

    return check
