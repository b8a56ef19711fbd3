"""The `arbiter` command: serve, decide, log, keys (create, list, revoke, rotate), spec, eval."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from service.auth import SCOPES
from service.errors import ArbiterError
from service.limits import MAX_SEQ
from service.settings import get_settings, redact_url

if TYPE_CHECKING:
    from service.kinds.registry import Kinds

app = typer.Typer(help="Arbiter: decisions for order operations.", no_args_is_help=True)
log_app = typer.Typer(help="The decision log.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
spec_app = typer.Typer(
    help="Specs: lint, push, list, show, diff, promote, rollback.", no_args_is_help=True
)
app.add_typer(log_app, name="log")
app.add_typer(spec_app, name="spec")
eval_app = typer.Typer(help="Eval suites: run, compare, add cases from the log.")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


_handed_kinds: ContextVar[Kinds | None] = ContextVar("arbiter_cli_kinds", default=None)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Arbiter: decisions for order operations."""
    _handed_kinds.set(ctx.obj)  # a registry handed in (app(obj=kinds)), or None: the shipped


def _kinds() -> Kinds:
    """The registry of decision kinds: the one handed to the CLI, else the kinds that ship."""
    from service.kinds.registry import KINDS

    kinds = _handed_kinds.get()
    return KINDS if kinds is None else kinds


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def db_passwords(url: str) -> list[str]:
    """The password in a database URL, as written and percent-decoded (none without one)."""
    from urllib.parse import unquote

    found = re.search(r"://[^:/@]*:([^@]*)@", url)
    return [found.group(1), unquote(found.group(1))] if found else []


def on_terminal() -> bool:
    """Whether stdout is a terminal (not a file, a pipe or a log collector)."""
    return sys.stdout.isatty()


def write_private(path: Path, text: str) -> None:
    """Write a secret to a file only its owner can read (mode 0600, also if it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (ARBITER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ARBITER_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes. Shared: the log, keys, idempotency. Per process: breakers,"
            " metrics, the rate limit unless ARBITER_REDIS_URL (README: Several workers)."
        ),
    ] = 1,
) -> None:
    """Start the HTTP service; on first start, create and print an admin key."""
    import uvicorn

    from service.http import configure_logging
    from service.services import build_services

    settings = get_settings()
    # every line carries [request id]; arbiter.access logs each request; no line a secret
    configure_logging(secrets=[*db_passwords(settings.db_url()), settings.llm_key() or ""])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stores = build_services(settings, engine=False, kinds=_kinds()).stores
    if stores.keys.count() == 0:
        row, secret = stores.keys.create(name="first admin", scopes=["admin"], actor="serve")
        if on_terminal():  # a person reads it; it goes nowhere else
            out.print("[bold]First start: created an admin API key. It is shown only once:[/bold]")
            out.print(f"  {secret}    (id {row.id}, scopes: admin)")
        else:  # stdout may be a log shipped elsewhere: the key goes to a file only we read
            path = settings.admin_key_file.resolve()
            write_private(path, secret + "\n")
            out.print(
                f"First start: created an admin API key ({row.id}); it is in {path} "
                "(mode 0600, not printed because stdout is not a terminal): "
                "read it, store it, delete the file."
            )
        out.print("Create narrower keys with: arbiter keys create --scopes decide")
    stores.close()
    mode = "enabled" if settings.llm_enabled else "disabled (rules only)"
    out.print(f"database: {redact_url(settings.db_url())}   LLM: {mode}")
    uvicorn.run(
        "service.main:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
        log_config=None,  # keep configure_logging's format and request-id filter
        access_log=False,  # arbiter.access logs each request, with its request id
        # behind a TLS-terminating proxy: trust its X-Forwarded-Proto/For, so the request's
        # scheme is https and the session cookie is Secure (ARBITER_FORWARDED_ALLOW_IPS)
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


@app.command()
def decide(
    kind: Annotated[str, typer.Argument(help="A decision kind, e.g. the name of a spec's `kind:`")],
    file: Annotated[Path, typer.Argument(help="A JSON case file, or - for stdin.")],
) -> None:
    """Decide one case from a JSON file and print the envelope (logged like any decision)."""
    from service.services import build_services

    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        _fail(f"cannot read a JSON case from {file}: {exc}", 2)
    settings = get_settings()

    async def run() -> str:
        services = build_services(settings, kinds=_kinds())
        try:
            engine = services.require_engine()
            case = engine.parse_case(kind, data)
            result = await engine.decide(kind=kind, case=case, caller="cli")
            return result.model_dump_json(indent=2)
        finally:
            await services.aclose()

    try:
        print(asyncio.run(run()))
    except ArbiterError as exc:
        details = "" if exc.details is None else "\n" + json.dumps(exc.details, indent=2)
        _fail(f"{exc.message}{details}", 2 if exc.status < 500 else 1)


@log_app.command("verify")
def log_verify(
    from_seq: Annotated[
        int | None, typer.Option(help="First seq to check", min=1, max=MAX_SEQ)
    ] = None,
    to_seq: Annotated[
        int | None, typer.Option(help="Last seq to check", min=1, max=MAX_SEQ)
    ] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(help="Checkpoint directory, or an Arbiter's /v1/audit/checkpoints URL"),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="Verifier key to pin, or a file holding it (default: settings)"),
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Verify an exported file offline instead of the database")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="ARBITER_AUDIT_KEY", help="Audit key for a URL")
    ] = None,
) -> None:
    """Walk every chain; with --checkpoints, check it against every signed checkpoint;
    exit 1 and name the first record whose history changed."""
    from service.log.checkpoints import read_source, verifier_from
    from service.log.verify import audit, verify_export

    settings = get_settings()
    if export is not None and checkpoints is None:
        _fail("--export needs --checkpoints: an exported file is verified against them", 2)
    if checkpoints is not None and (from_seq or to_seq):
        _fail("--checkpoints checks the whole log; leave out --from-seq and --to-seq", 2)
    try:
        published = read_source(checkpoints, api_key=api_key) if checkpoints else None
        verifier = verifier_from(settings, public_key) if checkpoints else None
    except (ArbiterError, OSError) as exc:
        _fail(getattr(exc, "message", str(exc)), 2)
    if export is not None:
        assert published is not None
        if verifier is None:
            _fail("no verifier key: give --public-key or ARBITER_CHECKPOINT_PUBLIC_KEY", 2)
        report = verify_export(export, published=published, verifier=verifier or "")
        _print_report(report.ok, report.checked, report.first_bad, "exported file")
        if report.uncovered:
            out.print(f"not yet covered by a checkpoint: {report.uncovered}")
        return
    from service.services import build_services

    stores = build_services(settings, engine=False, migrate=False, kinds=_kinds()).stores
    try:
        if published is None:
            plain = stores.log.verify(from_seq=from_seq, to_seq=to_seq)
            _print_report(plain.ok, plain.checked, plain.first_bad, "chain")
            return
        report = audit(stores, published=published, verifier=verifier)
    finally:
        stores.close()
    _print_report(report.ok, report.checked, report.first_bad, "log")
    out.print(
        f"{report.checkpoints} signed checkpoint(s) verified"
        + (
            f", the latest of {report.latest['time']} covers {report.latest['size']} records"
            if report.latest
            else ""
        )
        + f"; not yet covered: {sum(report.uncovered.values())} record(s)."
    )


def _print_report(ok: bool, checked: int, bad: dict[str, Any] | None, what: str) -> None:
    if ok:
        out.print(f"[green]{what} OK[/green]: {checked} records verified; heads match.")
        return
    bad = bad or {}
    where = f" in {bad['chain']}" if bad.get("chain") else ""
    name = f"record {bad.get('id')} (seq {bad.get('seq')}){where}: " if bad.get("id") else ""
    err.print(f"[red]{what} BROKEN[/red] after {checked} good records: {name}{bad.get('problem')}")
    raise typer.Exit(1)


@log_app.command("checkpoint")
def log_checkpoint() -> None:
    """Sign the heads of every chain now and publish the checkpoint (ARBITER_CHECKPOINT_DIR)."""
    from service.log.checkpoints import checkpoint_now
    from service.services import build_services

    settings = get_settings()
    stores = build_services(settings, engine=False, migrate=False, kinds=_kinds()).stores
    try:
        path, cp = checkpoint_now(stores, settings)
    except ArbiterError as exc:
        _fail(exc.message, 2)
    finally:
        stores.close()
    out.print(f"checkpoint of {cp.size} records ({len(cp.chains)} chains) published: {path}")


@log_app.command("keygen")
def log_keygen(
    out_file: Annotated[Path, typer.Option("--out", help="Private key file to create (0600)")],
) -> None:
    """Create an Ed25519 checkpoint key; print the verifier key auditors pin."""
    import os

    from service.log.checkpoints import Ed25519Signer, new_key_text, vkey

    settings = get_settings()
    text = new_key_text()
    try:
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        _fail(f"cannot create {out_file}: {exc}", 2)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    signer = Ed25519Signer.from_text(settings.checkpoint_key_name, text)
    print(vkey(signer.name, signer.public_key()))
    err.print(
        f"private key in {out_file}: set ARBITER_CHECKPOINT_KEY_FILE={out_file}; keep it "
        "off the database host's backups. Auditors pin the verifier key printed above."
    )


@log_app.command("export")
def log_export(
    format: Annotated[str, typer.Option(help="jsonl | csv")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="UTC time, e.g. 2026-11-01")] = None,
    until: Annotated[str | None, typer.Option(help="UTC time, exclusive")] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="File (default: stdout)")] = None,
    pii: Annotated[bool, typer.Option(help="Include personal data unmasked")] = False,
    include_shadow: Annotated[
        bool, typer.Option(help="Include shadow evaluations (every record of the chains)")
    ] = False,
) -> None:
    """Stream the log as JSON lines or CSV, oldest first, in constant memory."""
    from service.api.filters import parse_time
    from service.audit import export_lines
    from service.log.decisions import DecisionFilter
    from service.services import build_services

    if format not in ("jsonl", "csv"):
        _fail("--format must be jsonl or csv", 2)
    try:
        flt = DecisionFilter(
            kind=kind,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            include_shadow=include_shadow,
        )
    except ArbiterError as exc:
        _fail(exc.message, 2)
    stores = build_services(get_settings(), engine=False, migrate=False, kinds=_kinds()).stores
    counted = [0]
    sink = out_file.open("w", encoding="utf-8") if out_file else sys.stdout
    try:
        for chunk in export_lines(
            stores.log, flt, format, pii=pii, counted=counted, kinds=_kinds()
        ):
            sink.write(chunk)
    finally:
        if out_file:
            sink.close()
        stores.close()
    err.print(f"exported {counted[0]} record(s)")


def _key_stores() -> Any:
    from service.services import build_services

    return build_services(get_settings(), engine=False, kinds=_kinds()).stores


@keys_app.command("create")
def keys_create(
    scopes: Annotated[str, typer.Option(help="Comma-separated: " + ", ".join(sorted(SCOPES)))],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "unnamed",
    expires_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="The key stops working after N days.")
    ] = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from datetime import timedelta

    from service.log.models import KEY_NAME_MAX, utcnow

    if not 1 <= len(name) <= KEY_NAME_MAX:
        _fail(f"--name: 1 to {KEY_NAME_MAX} characters", 2)
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = sorted(set(wanted) - SCOPES)
    if not wanted or unknown:
        _fail(f"unknown scopes {unknown or '(none given)'}; choose from {sorted(SCOPES)}", 2)
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    stores = _key_stores()
    try:
        row, secret = stores.keys.create(name=name, scopes=wanted, expires_at=expires)
    finally:
        stores.close()
    out.print(f"{secret}")
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
    err.print(
        f"id {row.id}, scopes: {', '.join(row.scopes)}{until} — store it now, it is not shown again"
    )


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, name, scopes, state, created, expires and last used (UTC); never a
    secret."""
    from rich.table import Table

    from service.log.keys import usable
    from service.log.models import aware, utcnow

    stores = _key_stores()
    try:
        rows = stores.keys.all()
    finally:
        stores.close()
    now = utcnow()

    def when(t: Any) -> str:
        return f"{aware(t):%Y-%m-%d %H:%M}" if t else "—"

    table = Table("id", "name", "scopes", "state", "created", "expires", "last used")
    for r in rows:
        state = "revoked" if r.revoked_at else "active" if usable(r, now) is not None else "expired"
        table.add_row(
            r.id, r.name, ",".join(r.scopes), state,
            when(r.created_at), when(r.expires_at), when(r.last_used_at),
        )  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key at once: its requests and web sessions are refused from now on."""
    stores = _key_stores()
    try:
        row = stores.keys.get(key_id=key_id)
        done = stores.keys.revoke(key_id=key_id)
    finally:
        stores.close()
    if row is None or not done:
        _fail(f"no active key {key_id} (see arbiter keys list)", 2)
    err.print(f"revoked {key_id} ({row.name if row else ''}); recorded in the admin chain")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace_minutes: Annotated[
        int, typer.Option(min=0, max=7 * 24 * 60, help="Keep the old key working this long.")
    ] = 0,
) -> None:
    """A new key with the same name, scopes and expiry; the old one is revoked (or expires
    after --grace-minutes). The new key is printed once."""
    from datetime import timedelta

    stores = _key_stores()
    try:
        row, secret = stores.keys.rotate(key_id=key_id, grace=timedelta(minutes=grace_minutes))
    except KeyError:
        _fail(f"no active key {key_id} (see arbiter keys list)", 2)
    finally:
        stores.close()
    out.print(secret)
    old = f"expires in {grace_minutes} min" if grace_minutes else "is revoked"
    err.print(f"new id {row.id} ({row.name}), scopes: {', '.join(row.scopes)}; {key_id} {old}")


def _registry() -> Any:
    from service.services import build_services

    return build_services(get_settings(), use_llm=False, kinds=_kinds()).require_engine().registry


@spec_app.command("lint")
def spec_lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Spec files or folders of them (default: specs/)"),
    ] = None,
) -> None:
    """Check spec files; exit 1 when any has an error (warnings don't fail)."""
    from service.specs.lint import lint_file, report

    settings = get_settings()
    files = [
        f
        for p in paths or [settings.specs_dir]
        for f in (sorted(p.glob("*.md")) if p.is_dir() else [p])
    ]
    if not files:
        _fail(f"no spec files in {', '.join(map(str, paths or [settings.specs_dir]))}", 2)
    failed = 0
    for path in files:
        analysis = lint_file(
            path,
            prompts_dir=settings.prompts_dir,
            token_budget=settings.prompt_token_budget,
            settings=settings,
            kinds=_kinds(),
        )
        failed += not analysis.ok
        print(report(analysis))
    print(f"\n{len(files)} file(s) checked, {failed} with errors.")
    if failed:
        raise typer.Exit(1)


@spec_app.command("list")
def spec_list() -> None:
    """The versions serving (from the database), then the spec files and any refused edit."""
    from rich.table import Table

    registry = _registry()
    serving = Table(
        "kind", "policy", "role", "version", "effective from", "sha256", title="serving"
    )
    for s in registry.serving():
        serving.add_row(
            s["kind"],
            s["name"],
            s["role"],
            s["version"],
            str(s["effective_from"] or "-"),
            s["sha256"][:12],
        )
    out.print(serving)
    table = Table(
        "file", "kind", "version", "rollout", "effective from", "sha256", "status", title="specs/"
    )
    for st in registry.status():
        live = st["version"] or {}
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
    kind: Annotated[str, typer.Argument(help="A decision kind, e.g. the name of a spec's `kind:`")],
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
    kind: Annotated[str, typer.Argument(help="A decision kind, e.g. the name of a spec's `kind:`")],
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


def _cli_actor() -> str:
    import getpass

    from service.specs.deployments import ACTOR_MAX

    try:
        return f"cli:{getpass.getuser()}"[:ACTOR_MAX]
    except Exception:  # no user name in a bare container
        return "cli"


@spec_app.command("push")
def spec_push(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Spec files or folders of them (default: specs/)"),
    ] = None,
) -> None:
    """Lint spec files and store them as versions in the database, each deployed in the
    role its front matter names when its content is new (the GitOps path). Nothing is
    pushed when any file has an error."""
    from service.specs.lint import lint_file, report

    settings = get_settings()
    files = [
        f
        for p in paths or [settings.specs_dir]
        for f in (sorted(p.glob("*.md")) if p.is_dir() else [p])
    ]
    if not files:
        _fail(f"no spec files in {', '.join(map(str, paths or [settings.specs_dir]))}", 2)
    analyses = [
        lint_file(
            path,
            prompts_dir=settings.prompts_dir,
            token_budget=settings.prompt_token_budget,
            settings=settings,
        )
        for path in files
    ]
    for a in analyses:
        print(report(a))
    if any(a.spec is None for a in analyses):
        _fail("nothing pushed: fix the errors above", 1)
    registry = _registry()
    specs = {a.spec.name: a.spec for a in analyses if a.spec is not None}
    for spec in specs.values():
        registry.remember(spec)
    for line in registry.deployments.sync_files(files=specs, present=specs, via="push"):
        out.print(line)
    registry.load()
    kinds = {s.kind for s in specs.values()}
    for s in registry.serving():
        if s["kind"] in kinds:
            out.print(f"serving: {s['name']} {s['role']} version {s['version']} {s['sha256'][:12]}")
    out.print("running services pick changes up on their next poll of the database.")


def _policy_ref(target: str) -> tuple[str, str]:
    """(kind, default ref) of a promote target: a kind, or a candidate name (returns.next)."""
    kind = target.split(".", 1)[0]
    return kind, "candidate"


@spec_app.command("promote")
def spec_promote(
    target: Annotated[str, typer.Argument(help="The kind (or the candidate's name, <kind>.next)")],
    ref: Annotated[
        str | None, typer.Argument(help="candidate (default), a version label or sha256")
    ] = None,
) -> None:
    """Make a stored version (default: the kind's shadow or canary) live in the database."""
    from service.specs.publish import promote

    kind, default = _policy_ref(target)
    registry = _registry()
    try:
        spec, slot = promote(
            registry,
            get_settings(),
            kind=kind,
            ref=ref or default,
            actor=_cli_actor(),
            source="cli",
            checked=False,
        )
    except ArbiterError as exc:
        _fail(exc.message, 2)
    out.print(
        f"promoted {kind} version {spec.version} ({spec.sha256[:12]}) → live as {slot}; "
        f"running services serve it on their next poll. Roll back with: "
        f"arbiter spec rollback {kind}"
    )


@spec_app.command("rollback")
def spec_rollback(
    kind: Annotated[str, typer.Argument(help="A decision kind, e.g. the name of a spec's `kind:`")],
    to: Annotated[
        str | None, typer.Option(help="version label or sha256 (default: the previous version)")
    ] = None,
    slot: Annotated[str | None, typer.Option(help="the policy name (default: the kind)")] = None,
) -> None:
    """Serve the previous (or a named) stored version again, in the database."""
    from service.specs.publish import rollback

    registry = _registry()
    try:
        spec = rollback(registry, kind=kind, actor=_cli_actor(), to=to, slot=slot, source="cli")
    except ArbiterError as exc:
        _fail(exc.message, 2)
    out.print(
        f"rolled back {slot or kind} to version {spec.version} ({spec.sha256[:12]}); "
        "running services serve it on their next poll."
    )


def _evals_root() -> Path:
    return get_settings().evals_dir


def _run_eval(kinds: list[str], config: Any, label: str) -> Any:
    from rich.progress import Progress

    from service.evals.runner import run_suites
    from service.evals.suite import load_suites

    suites = load_suites(_evals_root(), kinds)
    total = sum(len(s.cases) for s in suites)
    if total == 0:
        _fail(f"no eval cases for {', '.join(kinds)} in {_evals_root()}", 2)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"{label} {config.mode}", total=total)
        return run_suites(
            settings=get_settings(),
            config=config,
            suites=suites,
            kinds=_kinds(),
            progress=lambda _: bar.advance(task),
        )


def _print_summary(result: Any) -> None:
    from rich.table import Table

    s = result.summary
    t = Table(
        "metric",
        "value",
        title=f"mode {result.config.mode}, spec "
        f"{result.config.spec or 'live'}, model {result.config.model or 'from spec'}",
    )
    for k in (
        "cases",
        "agreement",
        "hard_violations",
        "fallback_rate",
        "review_rate",
        "llm_call_rate",
        "decided_by_rules_alone",
        "tokens_per_decision",
        "cost_per_decision_usd",
        "needs_rerecording",
        "errors",
    ):
        v = s[k]
        t.add_row(
            k.replace("_", " "),
            f"{v:.1%}" if isinstance(v, float) and k not in ("tokens_per_decision",) else str(v),
        )
    t.add_row(
        "latency p50 / p95 ms", f"{s['latency_ms']['p50']:.0f} / {s['latency_ms']['p95']:.0f}"
    )
    if result.config.mode != "rules":
        mv = s["model_verdicts"]
        t.add_row("model verdicts", " / ".join(f"{k.replace('_', ' ')} {v}" for k, v in mv.items()))
    out.print(t)
    if result.config.mode != "rules":
        per = Table("case", "model verdict", "source", "status", title="per case")
        for c in result.cases:
            per.add_row(
                f"{c.suite}/{c.id}",
                str(c.got.get("model_verdict", "-")),
                str(c.got.get("source", "-")),
                c.status,
            )
        out.print(per)
    tags = Table("tag", "cases", "agreement", title="by tag")
    for tag, row in s["by_tag"].items():
        tags.add_row(tag, str(row["cases"]), f"{row['agreement']:.0%}")
    out.print(tags)
    bad = [c for c in result.cases if c.status != "passed"]
    if bad:
        out.print(f"[bold]{len(bad)} case(s) did not pass:[/bold]")
        for c in bad:
            out.print(
                f"  {c.suite}/{c.id} [{c.status}] expected {c.expected.get('fields', {})}"
                f" got {c.got}: {'; '.join(c.hard + c.misses)}"
            )


@eval_app.callback(invoke_without_command=True)
def eval_run(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="A decision kind (default: all)")] = None,
    spec: Annotated[str | None, typer.Option(help="A spec file or a stored sha256")] = None,
    model: Annotated[str | None, typer.Option(help="Use this model instead of the spec's")] = None,
    mode: Annotated[str, typer.Option(help="rules | recorded | live")] = "rules",
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
    record: Annotated[
        bool, typer.Option(help="live mode: store every reply as a cassette")
    ] = False,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Run two configurations, each a spec file, a sha256, or model:NAME"),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where reports are written")] = Path(
        "eval-report"
    ),
) -> None:
    """Run the eval suites; exit 1 below the thresholds of evals/thresholds.yaml."""
    if ctx.invoked_subcommand is not None:
        return
    from service.evals.compare import compare_runs, print_compare
    from service.evals.report import write_reports
    from service.evals.runner import MODES, RunConfig, gate, load_thresholds

    known = _kinds()
    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}", 2)
    if record and mode != "live":
        _fail("--record needs --mode live (recording stores real model replies)", 2)
    if kind is not None and kind not in known:
        _fail(f"unknown kind {kind!r}; known: {', '.join(known)}", 2)
    kinds = [kind] if kind else list(known)
    try:
        if compare:
            configs = []
            for ref in compare:
                m = ref.removeprefix("model:") if ref.startswith("model:") else model
                sp = None if ref.startswith("model:") else ref
                configs.append(
                    RunConfig(
                        mode=mode, spec=sp or spec, model=m, concurrency=concurrency, label=ref
                    )
                )
            a = _run_eval(kinds, configs[0], compare[0])
            b = _run_eval(kinds, configs[1], compare[1])
            print_compare(out, compare_runs(a, b))
            return
        config = RunConfig(
            mode=mode, spec=spec, model=model, concurrency=concurrency, record=record
        )
        result = _run_eval(kinds, config, "eval")
    except ArbiterError as exc:
        _fail(exc.message, 2)
    _print_summary(result)
    j, h = write_reports(result, out_dir)
    out.print(f"reports: {j} {h}")
    if result.cassettes_recorded:
        out.print(f"recorded {result.cassettes_recorded} cassette(s) under evals/<kind>/cassettes/")
    failures = gate(result, load_thresholds(_evals_root() / "thresholds.yaml"))
    if failures:
        for f in failures:
            err.print(f"[red]below threshold:[/red] {f}")
        raise typer.Exit(1)
    out.print("[green]thresholds met[/green]")


@eval_app.command("generate")
def eval_generate(
    kind: Annotated[str, typer.Argument(help="returns | exceptions | routing")],
    spec: Annotated[
        str,
        typer.Option(help="A spec file, or live, candidate, a version label or sha256"),
    ] = "live",
) -> None:
    """Write boundary cases derived from the policy's parameters and clauses to
    evals/KIND/generated.yaml as `proposed` cases (they gate nothing until a person accepts
    them); on a policy change, re-propose them and show which expectations moved."""
    from service.evals.generate import generate, write
    from service.specs.loader import load_spec
    from service.specs.versions import spec_by_ref

    settings = get_settings()
    try:
        path = Path(spec)
        version = (
            load_spec(path)
            if path.suffix == ".md" and path.exists()
            else spec_by_ref(_registry(), kind, spec, field="spec")
        )
        if version.kind != kind:
            _fail(f"{spec} is a {version.kind} policy, not {kind}", 2)
        result = generate(kind=kind, spec=version, evals_dir=_evals_root(), settings=settings)
    except (ArbiterError, ValueError) as exc:
        _fail(getattr(exc, "message", str(exc)), 2)
    target = write(result, _evals_root())
    proposed = sum(c.proposed for c in result.suite.cases)
    out.print(
        f"{target}: {len(result.suite.cases)} case(s) from {kind} version {version.version} "
        f"({version.sha256[:12]}), {len(result.added)} new, {proposed} still proposed"
    )
    for m in result.moved:
        out.print(f"  moved      {m['case']}: {m['from']} → {m['to']}")
    for m in result.contradicted:
        out.print(
            f"  [yellow]contradicts[/yellow] {m['case']} (accepted): expects {m['from']}, "
            f"the policy now gives {m['to']}"
        )
    if not result.moved and not result.contradicted:
        out.print("  no expectation moved")


@eval_app.command("add-from-log")
def eval_add_from_log(
    decision_id: Annotated[str, typer.Argument(help="dec_… of a logged decision")],
    suite: Annotated[
        Path | None,
        typer.Option(help="Suite file to append to (default: evals/<kind>/from-log.yaml)"),
    ] = None,
    include_pii: Annotated[
        bool,
        typer.Option(
            "--include-pii", help="Copy names, addresses, e-mails, phones, comments unmasked"
        ),
    ] = False,
) -> None:
    """Turn a logged (possibly human-reviewed) decision into an eval case; personal data
    is masked unless --include-pii (suites are committed to the repository)."""
    from service.evals.fromlog import add_from_log
    from service.services import build_services

    stores = build_services(get_settings(), engine=False, kinds=_kinds()).stores
    try:
        path, case_id, expected, masked = add_from_log(
            stores.log, decision_id, _evals_root(), suite, include_pii=include_pii, kinds=_kinds()
        )
    except ArbiterError as exc:
        _fail(exc.message, 2)
    finally:
        stores.close()
    out.print(f"added case {case_id} to {path} expecting outcome {expected!r}")
    if masked:
        out.print(
            f"masked {len(masked)} field(s) of personal data ({', '.join(masked)}); "
            "--include-pii copies them as logged"
        )


@app.command()
def replay(
    kind: Annotated[str, typer.Option(help="A decision kind, e.g. the name of a spec's `kind:`")],
    since: Annotated[str, typer.Option(help="UTC date or time, e.g. 2026-11-01")],
    spec: Annotated[str, typer.Option(help="Candidate: a spec file or a stored sha256")],
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    mode: Annotated[str, typer.Option(help="rules | live")] = "rules",
    out_dir: Annotated[Path, typer.Option("--out")] = Path("eval-report"),
) -> None:
    """Re-run logged decisions against a candidate spec; report what would change."""
    from service.evals.replay import print_replay, replay_log, write_replay_html

    try:
        result = replay_log(
            settings=get_settings(),
            kind=kind,
            since=since,
            spec=spec,
            limit=limit,
            mode=mode,
            kinds=_kinds(),
        )
    except ArbiterError as exc:
        _fail(exc.message, 2)
    print_replay(out, result)
    path = write_replay_html(result, out_dir)
    out.print(f"report: {path}")
