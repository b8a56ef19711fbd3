"""The `arbiter` command: serve, decide, log verify, keys create."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from service.auth import SCOPES
from service.errors import ArbiterError
from service.settings import get_settings

app = typer.Typer(help="Arbiter: decisions for order operations.", no_args_is_help=True)
log_app = typer.Typer(help="The decision log.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
spec_app = typer.Typer(
    help="Specs: lint, list, show, diff, promote, rollback.", no_args_is_help=True
)
app.add_typer(log_app, name="log")
app.add_typer(spec_app, name="spec")
app.add_typer(keys_app, name="keys")
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
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


def _registry() -> Any:
    from service.log.store import Store
    from service.specs.registry import SpecRegistry

    settings = get_settings()
    store = Store(url=settings.database_url)
    store.create_all()
    registry = SpecRegistry(
        directory=settings.specs_dir,
        store=store,
        prompts_dir=settings.prompts_dir,
        token_budget=settings.prompt_token_budget,
    )
    registry.load()
    return registry


@spec_app.command("lint")
def spec_lint(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Spec files (default: specs/*.md)")
    ] = None,
) -> None:
    """Check spec files; exit 1 when any has an error (warnings don't fail)."""
    from service.specs.lint import lint_file, report

    settings = get_settings()
    files = paths or sorted(settings.specs_dir.glob("*.md"))
    if not files:
        _fail(f"no spec files in {settings.specs_dir}", 2)
    failed = 0
    for path in files:
        analysis = lint_file(
            path, prompts_dir=settings.prompts_dir, token_budget=settings.prompt_token_budget
        )
        failed += not analysis.ok
        print(report(analysis))
    print(f"\n{len(files)} file(s) checked, {failed} with errors.")
    if failed:
        raise typer.Exit(1)


@spec_app.command("list")
def spec_list() -> None:
    """The spec files, the version live for each, and any refused edit."""
    from rich.table import Table

    registry = _registry()
    table = Table("file", "kind", "version", "rollout", "effective from", "sha256", "status")
    for st in registry.status():
        live = st["live"] or {}
        status = (
            "OK"
            if not st["errors"]
            else ("REFUSED on disk; last good version live" if live else "REFUSED")
        )
        table.add_row(
            st["file"],
            st["kind"] or "?",
            str(live.get("version", "-")),
            str(live.get("rollout", "-")),
            str(live.get("effective_from") or "-"),
            str(live.get("sha256", ""))[:12],
            status,
        )
    out.print(table)
    for st in registry.status():
        for e in st["errors"]:
            err.print(f"{st['file']} line {e['line'] or '?'}: {e['field'] or ''} {e['message']}")


@spec_app.command("show")
def spec_show(
    kind: Annotated[str, typer.Argument(help="returns | exceptions | routing")],
    ref: Annotated[str, typer.Argument(help="live, candidate, a version label or sha256")] = "live",
) -> None:
    """Print one version of a spec: its identity, then its text."""
    from service.specs.versions import version_detail

    try:
        d = version_detail(_registry(), kind, ref)
    except ArbiterError as exc:
        _fail(exc.message, 2)
    out.print(
        f"{kind} version {d['version']} ({d['rollout']}), sha256 {d['sha256']}, "
        f"effective from {d['effective_from'] or '-'}, first seen {d['first_seen']}"
    )
    print(d["text"])


@spec_app.command("diff")
def spec_diff(
    kind: Annotated[str, typer.Argument(help="returns | exceptions | routing")],
    old: Annotated[str, typer.Argument(help="from: live, a version label or sha256")],
    new: Annotated[str, typer.Argument(help="to: live, candidate, a version label or sha256")],
) -> None:
    """Parameter changes, then the text diff, between two versions."""
    from service.specs.versions import diff_by_ref

    try:
        d = diff_by_ref(_registry(), kind, old, new)
    except ArbiterError as exc:
        _fail(exc.message, 2)
    out.print(f"from {d['from']}\nto   {d['to']}\n")
    if d["parameters"]:
        out.print("Parameter changes:")
        for c in d["parameters"]:
            out.print(f"  {c['key']}: {c['from']!r} → {c['to']!r} ({c['change']})")
    else:
        out.print("No parameter changes.")
    print()
    print(d["text"] or "No text changes.")


def _print_write(analysis: Any, target: Path) -> None:
    from service.specs.lint import report

    print(report(analysis))
    if not analysis.ok:
        _fail(f"nothing written: {target.name} keeps its current version", 1)


@spec_app.command("promote")
def spec_promote(
    name: Annotated[str, typer.Argument(help="The candidate file, e.g. returns.next")],
) -> None:
    """Lint a candidate, then make it the live <kind>.md (the service reloads it)."""
    from service.specs.files import promote

    registry = _registry()
    try:
        target, analysis = promote(registry, name)
    except ArbiterError as exc:
        _fail(exc.message, 2)
    _print_write(analysis, target)
    out.print(
        f"promoted {name}.md → {target.name}; the running service picks it up on its "
        "next reload. Roll back with: arbiter spec rollback "
        f"{analysis.spec.kind if analysis.spec else ''}"
    )


@spec_app.command("rollback")
def spec_rollback(
    kind: Annotated[str, typer.Argument(help="returns | exceptions | routing")],
    to: Annotated[
        str | None, typer.Option(help="version label or sha256 (default: the previous version)")
    ] = None,
) -> None:
    """Write a stored earlier version back to <kind>.md (the service reloads it)."""
    from service.specs.files import rollback

    registry = _registry()
    try:
        target, analysis, _ = rollback(registry, kind, to)
    except ArbiterError as exc:
        _fail(exc.message, 2)
    _print_write(analysis, target)
    out.print(f"rolled back {target.name}; the running service picks it up on its next reload.")
