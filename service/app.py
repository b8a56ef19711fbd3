"""create_app(settings): routers, error handlers, and a lifespan that builds the engine."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__
from service.api import audit, decisions, health, reviews, specs, ui
from service.errors import (
    ArbiterError,
    BadRequest,
    HTTPError,
    InvalidInput,
    StoreUnavailable,
    validation_details,
)
from service.http import ResponseHeaders
from service.kinds.registry import KINDS, Kinds
from service.limits import BodyLimits, build_limiter
from service.llm.client import LLMClient, describe_probe, model_names
from service.log.idempotency import IdempotencyStore
from service.log.stores import Stores
from service.services import build_services, start_shadow
from service.settings import Settings, get_settings, redact_url

log = logging.getLogger("arbiter")


def text_position(doc: Any, offset: Any) -> str:
    """A character offset into a document as "line L, column C" (both from 1)."""
    text = doc if isinstance(doc, str) else bytes(doc or b"").decode("utf-8", "replace")
    pos = offset if isinstance(offset, int) else 0
    line, line_start = text.count("\n", 0, pos) + 1, text.rfind("\n", 0, pos) + 1
    return f"line {line}, column {pos - line_start + 1}"


async def purge_idempotency(keys: IdempotencyStore, *, every_s: float, batch: int) -> None:
    """Delete expired Idempotency-Keys until cancelled, `batch` rows per transaction:
    again at once while full batches go, else every `every_s` seconds."""
    while True:
        try:
            n = await anyio.to_thread.run_sync(lambda: keys.purge(limit=batch))
        except Exception:  # the database may be away for a while; try again later
            log.exception("idempotency purge failed")
            n = 0
        await asyncio.sleep(0 if n >= batch else every_s)


async def publish_checkpoints(stores: Stores, settings: Settings) -> None:
    """Sign and publish a checkpoint every ARBITER_CHECKPOINT_INTERVAL_S while the log
    grows, until cancelled."""
    from service.log.checkpoints import checkpoint_now

    last: dict[int, int] = {}
    while True:
        try:
            heads = await anyio.to_thread.run_sync(stores.log.heads)
            now = {i: h.count for i, h in heads.items()}
            if now != last:
                path, _ = await anyio.to_thread.run_sync(lambda: checkpoint_now(stores, settings))
                log.info("checkpoint published: %s", path)
                last = now
        except Exception:  # the database or the directory may be away; try again later
            log.exception("checkpoint failed")
        await asyncio.sleep(settings.checkpoint_interval_s)


def create_app(
    settings: Settings | None = None, *, llm: LLMClient | None = None, kinds: Kinds | None = None
) -> FastAPI:
    """The ASGI app for the `kinds` registry (default: the kinds that ship); nothing is
    built before the lifespan starts."""
    settings = settings or get_settings()
    kinds = KINDS if kinds is None else kinds

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await anyio.to_thread.run_sync(
            lambda: build_services(settings, llm=llm, kinds=kinds)
        )
        engine = services.require_engine()
        app.state.settings = settings
        app.state.services = services
        app.state.engine = engine
        app.state.limiter = limiter = build_limiter(settings)
        start_shadow(services)
        watcher = (
            asyncio.create_task(engine.registry.watch(settings.spec_poll_s))
            if settings.spec_poll_s > 0
            else None
        )
        purger = (
            asyncio.create_task(
                purge_idempotency(
                    services.stores.idempotency,
                    every_s=settings.idempotency_purge_s,
                    batch=settings.idempotency_purge_batch,
                )
            )
            if settings.idempotency_purge_s > 0
            else None
        )
        checkpointer = (
            asyncio.create_task(publish_checkpoints(services.stores, settings))
            if settings.checkpoint_interval_s > 0
            and settings.checkpoint_dir is not None
            and (settings.checkpoint_signer or settings.checkpoint_signer_text())
            else None
        )
        mode = "LLM disabled: rules only"
        if engine.llm is not None:
            probes = await engine.llm.probe(model_names(engine.registry.live_specs()), fresh=True)
            for name, p in probes.items():
                log.info("LLM %s: %s", name, describe_probe(p))
            mode = "LLM " + "; ".join(f"{n} → {describe_probe(p)}" for n, p in probes.items())
        log.info("arbiter ready on %s (%s)", redact_url(settings.db_url()), mode)
        log.info("rate limit: %s", await limiter.describe())
        try:
            yield
        finally:
            await limiter.aclose()
            tasks = [t for t in (watcher, purger, checkpointer) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # no thread left on the db
            await services.aclose()

    app = FastAPI(
        title="Arbiter",
        version=__version__,
        lifespan=lifespan,
        description="Decision API for order operations.",
        docs_url=None,  # served below, with a CSP that admits only its own script
        redoc_url=None,
    )
    app.add_middleware(
        BodyLimits, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )
    app.add_middleware(ResponseHeaders)  # outermost: every response, errors too
    app.include_router(decisions.build_router(kinds, max_deadline_s=settings.max_deadline_s))
    app.include_router(reviews.router)
    app.include_router(audit.router)
    app.include_router(audit.proof_router)
    app.include_router(specs.router)
    app.include_router(health.router)
    app.include_router(ui.router)

    # API docs from assets installed with the package (fastapi-offline): no CDN, no internet
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def _docs() -> Response:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Arbiter - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": False},
        )
        return docs_page(page)

    @app.get("/redoc", include_in_schema=False)
    async def _redoc() -> Response:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title="Arbiter - API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        return docs_page(page)

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse("/ui/decisions")

    @app.exception_handler(ui.LoginRequired)
    async def _login(request: Request, _: Exception) -> RedirectResponse:
        return RedirectResponse("/ui/login?next=" + quote(request.url.path), status_code=303)

    @app.exception_handler(ArbiterError)
    async def _arbiter_error(request: Request, exc: ArbiterError) -> Response:
        if request.url.path.startswith("/ui/"):
            return ui.templates.TemplateResponse(
                request,
                "message.html",
                {"caller": None, "csrf": None, "title": "Sorry", "message": exc.message},
                status_code=exc.status,
            )
        return error_response(exc)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database_away(request: Request, exc: Exception) -> Response:
        # down, locked past the lock timeout, or a statement past its timeout: retry later
        log.warning("database unavailable: %s", type(exc).__name__)
        away = StoreUnavailable(
            "the database is unavailable; nothing was written, retry shortly",
            details={"error": type(exc).__name__},
        )
        return await _arbiter_error(request, away)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return error_response(request_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        return error_response(HTTPError(exc.status_code, str(exc.detail), headers=headers))

    return app


DOCS_ASSETS = "/docs/assets"


def docs_assets_dir() -> str:
    """Swagger UI and ReDoc as shipped by the installed fastapi-offline package."""
    return str(resources.files("fastapi_offline").joinpath("static"))


def docs_page(page: HTMLResponse) -> HTMLResponse:
    """A docs page with a CSP that admits only its own assets and inline script."""
    scripts = re.findall(r"<script>(.*?)</script>", bytes(page.body).decode(), re.S)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    # ReDoc injects its styles and runs its search in a worker made from a blob
    page.headers["content-security-policy"] = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'"
    )
    return page


def error_response(exc: ArbiterError) -> JSONResponse:
    """Any error the API answers, as the one error JSON with its status and headers."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def request_error(exc: RequestValidationError) -> ArbiterError:
    """FastAPI's validation error as ours: 400 for a body that is not JSON, else 422 naming
    every bad field."""
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        where = text_position(exc.body, bad_json["loc"][-1])
        why = bad_json.get("ctx", {}).get("error", "not JSON")
        return BadRequest(
            f"the body is not valid JSON: {why} at {where}",
            details=[{"field": where, "reason": why}],
        )
    details = validation_details(errors)
    first = details[0] if details else {"field": "$", "reason": "invalid"}
    name = "$ (the whole JSON body)" if first["field"] == "$" else first["field"]
    return InvalidInput(f"{name}: {first['reason']}", details=details)
