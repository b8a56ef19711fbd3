"""The `arbiter` command: serve, decide, log verify, keys create."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.auth import SCOPES
from service.errors import ArbiterError
from service.settings import get_settings

app = typer.Typer(help="Arbiter: decisions for order operations.", no_args_is_help=True)
log_app = typer.Typer(help="The decision log.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(log_app, name="log")
app.add_typer(keys_app, name="keys")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (ARBITER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ARBITER_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Start the HTTP service; on first start, create and print an admin key."""
    import uvicorn

    from service.log.store import Store

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = Store(url=settings.database_url)
    store.create_all()
    if store.key_count() == 0:
        row, secret = store.create_key(name="first admin", scopes=["admin"])
        out.print("[bold]First start: created an admin API key. It is shown only once:[/bold]")
        out.print(f"  {secret}    (id {row.id}, scopes: admin)")
        out.print("Create narrower keys with: arbiter keys create --scopes decide")
    store.close()
    mode = "enabled" if settings.llm_enabled else "disabled (rules only)"
    out.print(f"database: {settings.database_url}   LLM: {mode}")
    uvicorn.run(
        "service.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


@app.command()
def decide(
    kind: Annotated[str, typer.Argument(help="returns | exceptions | routing")],
    file: Annotated[Path, typer.Argument(help="A JSON case file, or - for stdin.")],
) -> None:
    """Decide one case from a JSON file and print the envelope (logged like any decision)."""
    from service.app import build_engine

    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read a JSON case from {file}: {exc}", 2)
    settings = get_settings()

    async def run() -> str:
        engine = build_engine(settings)
        try:
            case = engine.parse_case(kind, data)
            result = await engine.decide(kind=kind, case=case, caller="cli")
            return result.model_dump_json(indent=2)
        finally:
            if engine.llm is not None:
                await engine.llm.aclose()
            engine.store.close()

    try:
        print(asyncio.run(run()))
    except ArbiterError as exc:
        details = "" if exc.details is None else "\n" + json.dumps(exc.details, indent=2)
        _fail(f"{exc.message}{details}", 2 if exc.status < 500 else 1)


@log_app.command("verify")
def log_verify() -> None:
    """Walk the hash chain; exit 1 and name the first bad record if it is broken."""
    from service.log.store import Store

    store = Store(url=get_settings().database_url)
    store.create_all()
    report = store.verify()
    store.close()
    if report.ok:
        out.print(f"[green]chain OK[/green]: {report.checked} records verified; head matches.")
        return
    bad = report.first_bad or {}
    err.print(
        f"[red]chain BROKEN[/red] after {report.checked} good records: "
        f"record {bad.get('id')} (seq {bad.get('seq')}): {bad.get('problem')}"
    )
    raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    scopes: Annotated[str, typer.Option(help="Comma-separated: " + ", ".join(sorted(SCOPES)))],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "unnamed",
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from service.log.store import Store

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = sorted(set(wanted) - SCOPES)
    if not wanted or unknown:
        _fail(f"unknown scopes {unknown or '(none given)'}; choose from {sorted(SCOPES)}", 2)
    store = Store(url=get_settings().database_url)
    store.create_all()
    row, secret = store.create_key(name=name, scopes=wanted)
    store.close()
    out.print(f"{secret}")
    err.print(f"id {row.id}, scopes: {', '.join(row.scopes)} — store it now, it is not shown again")
