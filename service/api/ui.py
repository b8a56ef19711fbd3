"""Server-rendered pages for auditors, reviewers and ops (no JavaScript needed)."""

from __future__ import annotations

import json
import secrets
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import anyio
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from service.api import audit as audit_api
from service.api.filters import ListFilters, decode_cursor, encode_cursor, summary
from service.api.review_form import build_form, read_form
from service.audit import decision_detail, stats, submit_review
from service.auth import POLICY_READERS, Caller
from service.deps import (
    KeysDep,
    KindsDep,
    LogDep,
    RegistryDep,
    ServicesDep,
    SessionsDep,
    SettingsDep,
)
from service.errors import (
    ArbiterError,
    Forbidden,
    InvalidInput,
    VerdictRefused,
    validation_details,
)
from service.kinds.base import unstorable
from service.kinds.registry import AnyKind, Kinds
from service.log.chain import utc_iso
from service.log.decisions import DecisionFilter, DecisionLog
from service.log.masking import masked_verdict_fields
from service.log.models import DecisionRow, utcnow
from service.settings import Settings
from service.specs import publish
from service.specs.markdown import render as render_markdown
from service.specs.registry import SpecRegistry
from service.specs.rollout import rollout_report
from service.specs.versions import diff_by_ref, spec_by_ref, version_detail

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
templates.env.filters["md"] = render_markdown
COOKIE = "arb_session"
UI_SCOPES = frozenset(
    {"audit", "audit:pii", "review", "policy:read", "policy:edit", "policy:publish", "admin"}
)
"""Keys that may open a session (a decide-only key may not)."""
LOGIN_CSRF = "arb_login_csrf"


class LoginRequired(ArbiterError):
    """No valid session: the page redirects to the login form."""

    status = 401
    code = "login_required"

    def __init__(self) -> None:
        super().__init__("log in to see this page")


async def ui_caller(
    request: Request, sessions: SessionsDep, keys: KeysDep, settings: SettingsDep
) -> tuple[Caller, str]:
    """The caller behind the session cookie, and the session's CSRF token."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired
    sess = await sessions.db.call(
        lambda: sessions.get(
            token=token, hours=settings.session_hours, idle_minutes=settings.session_idle_minutes
        )
    )
    if sess is None:
        raise LoginRequired
    key_id = sess.key_id
    key = await keys.db.call(lambda: keys.by_id(key_id=key_id))
    if key is None:
        raise LoginRequired
    return Caller(key_id=key.id, scopes=frozenset(key.scopes), name=key.name), sess.csrf


UiCaller = Annotated[tuple[Caller, str], Depends(ui_caller)]


def secure_cookie(request: Request) -> bool:
    """Secure when configured, or when the request came over https (behind a trusted proxy,
    uvicorn --proxy-headers turns X-Forwarded-Proto into the request's scheme)."""
    settings: Settings = request.app.state.settings
    return settings.secure_cookies or request.url.scheme == "https"


def page(
    request: Request, name: str, caller: Caller | None, csrf: str | None, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"caller": caller, "csrf": csrf, **context})


def check_csrf(csrf: str, sent: str) -> None:
    if not secrets.compare_digest(csrf, sent):
        raise Forbidden("the form expired or did not come from this site; reload and retry")


@router.get("/login")
async def login_form(
    request: Request, next: str = "/ui/decisions", error: str | None = None
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = page(request, "login.html", None, None, login_csrf=token, next=next, error=error)
    resp.set_cookie(
        LOGIN_CSRF,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        max_age=3600,
    )
    return resp


@router.post("/login")
async def login(
    request: Request,
    sessions: SessionsDep,
    keys: KeysDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/ui/decisions",
) -> Response:
    if not secrets.compare_digest(request.cookies.get(LOGIN_CSRF, ""), csrf):
        return RedirectResponse("/ui/login?error=expired", status_code=303)
    key = await anyio.to_thread.run_sync(lambda: keys.by_secret(secret=api_key.strip()))
    if key is None or not (UI_SCOPES & set(key.scopes)):
        return RedirectResponse("/ui/login?error=denied", status_code=303)
    token, _ = await anyio.to_thread.run_sync(
        lambda: sessions.create(
            key_id=key.id, hours=settings.session_hours, idle_minutes=settings.session_idle_minutes
        )
    )
    target = next if next.startswith("/ui/") else "/ui/decisions"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        max_age=settings.session_hours * 3600,
    )
    resp.delete_cookie(LOGIN_CSRF)
    return resp


@router.post("/logout")
async def logout(
    request: Request, sessions: SessionsDep, who: UiCaller, csrf: Annotated[str, Form()]
) -> Response:
    check_csrf(who[1], csrf)
    token = request.cookies.get(COOKIE, "")
    await anyio.to_thread.run_sync(lambda: sessions.end(token=token))
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


def _need(caller: Caller, *scopes: str) -> None:
    if not caller.has_any(scopes):
        raise Forbidden(f"your key lacks the {' or '.join(map(repr, scopes))} scope")


@router.get("/decisions")
async def decisions(
    request: Request,
    log: LogDep,
    kinds: KindsDep,
    who: UiCaller,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, "audit")
    raw = {k: v for k, v in request.query_params.items() if v.strip() and k != "cursor"}
    try:
        filters = ListFilters.model_validate(raw)
    except ValidationError as exc:
        why = "; ".join(
            f"{d['field']}: {d['reason']}" for d in validation_details(list(exc.errors()))
        )
        return page(request, "message.html", caller, csrf, title="Check the filters", message=why)
    before = decode_cursor(cursor)
    rows = await anyio.to_thread.run_sync(
        lambda: log.list_decisions(
            filters=filters.to_filter(pii=caller.has("audit:pii")), before_seq=before, limit=51
        )
    )
    params = {
        k: v for k, v in filters.model_dump(mode="json").items() if v not in (None, False, "")
    }
    nxt = None
    if len(rows) > 50 and rows[49].seq:
        nxt = "?" + urlencode({**params, "cursor": encode_cursor(rows[49].seq)})
    return page(
        request,
        "decisions.html",
        caller,
        csrf,
        rows=[summary(r, kinds, pii=caller.has("audit:pii")) for r in rows[:50]],
        f=params,
        next_url=nxt,
        kinds=sorted(kinds),
    )


def _decision_page(
    request: Request,
    caller: Caller,
    csrf: str,
    d: dict[str, Any],
    kind: AnyKind,
    names: dict[str, str],
    *,
    error: str | None = None,
    proposal: dict[str, Any] | None = None,
    repairs: list[dict[str, Any]] | None = None,
    field_errors: dict[str, str] | None = None,
    note: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    changed = d["llm_verdict"] is not None and d["llm_verdict"] != {
        k: v for k, v in d["verdict"].items() if k in d["llm_verdict"]
    }
    pending = d["source"] == "review" and d["needs_review"]
    can_review = (
        caller.has("review")
        and not d["superseded_by"]
        and not d["shadow_of"]
        and (d["source"] != "review" or pending)
        and not (pending and d["caller"] == caller.key_id)
    )
    hidden = sorted(f for f in _unseen(caller, kind) if f in d["verdict"])
    form = build_form(kind.Verdict, proposal or d["verdict"], skip=frozenset(hidden))
    for f in form:
        f.error = (field_errors or {}).get(f.path)
    resp = page(
        request,
        "decision.html",
        caller,
        csrf,
        d=d,
        names=names,
        changed=changed,
        can_review=can_review,
        pending=pending,
        can_accept=d["outcome"] != "needs_review",
        hidden_fields=hidden,
        repairs=repairs or [],
        form=form,
        note=note,
        error=error,
    )
    resp.status_code = status_code
    return resp


def _unseen(caller: Caller, kind: AnyKind) -> frozenset[str]:
    """Verdict fields the caller sees masked (the kind's personal ones): never round-tripped
    through the form (left out, they are kept as stored)."""
    return frozenset() if caller.has("audit:pii") else masked_verdict_fields(kind)


async def _detail(
    log: DecisionLog, registry: SpecRegistry, kinds: Kinds, caller: Caller, decision_id: str
) -> dict[str, Any] | None:
    row = await anyio.to_thread.run_sync(lambda: log.get(decision_id=decision_id))
    if row is None:
        return None
    pii = caller.has("audit:pii")
    detail: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: decision_detail(log, registry, kinds, row, pii=pii)
    )
    return detail


@router.get("/decisions/{decision_id}")
async def decision(
    request: Request,
    decision_id: str,
    log: LogDep,
    registry: RegistryDep,
    kinds: KindsDep,
    keys: KeysDep,
    who: UiCaller,
    error: str | None = None,
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, "audit", "review")  # a reviewer reads the decision being judged
    d = await _detail(log, registry, kinds, caller, decision_id)
    if d is None or d["kind"] not in kinds:
        return page(
            request,
            "message.html",
            caller,
            csrf,
            title="Not found",
            message=f"There is no decision {decision_id}.",
        )
    names = await keys.db.call(keys.names)
    return _decision_page(request, caller, csrf, d, kinds[d["kind"]], names, error=error)


@router.post("/decisions/{decision_id}/review")
async def review(
    request: Request,
    decision_id: str,
    log: LogDep,
    kinds: KindsDep,
    keys: KeysDep,
    registry: RegistryDep,
    who: UiCaller,
    csrf: Annotated[str, Form()],
    note: Annotated[str, Form(max_length=2000)],
    action: Annotated[str, Form()],
) -> Response:
    """Accept the proposed verdict, or record the reviewer's own from the form. On an error
    the page comes back with the reviewer's note and every value as they typed it."""
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "review")
    back = f"/ui/decisions/{quote(decision_id)}"
    d = await _detail(log, registry, kinds, caller, decision_id)
    if d is None or d["kind"] not in kinds:
        return RedirectResponse(back, status_code=303)
    kind = kinds[d["kind"]]
    names = await keys.db.call(keys.names)
    sent = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    unseen = _unseen(caller, kind)
    verdict = (
        None
        if action == "accept"
        else read_form(kind.Verdict, sent, d["verdict"], skip=frozenset(unseen))
    )

    def again(message: str, status: int = 422, **kw: Any) -> HTMLResponse:
        return _decision_page(
            request, caller, csrf, d, kind, names, error=message, note=note,
            proposal=kw.pop("proposal", verdict), status_code=status, **kw,
        )  # fmt: skip

    problem = "is empty: write a note for the record" if not note.strip() else unstorable(note)
    if problem:
        return again(f"Not recorded: the note {problem}.", field_errors={})
    try:
        await submit_review(
            log,
            kinds,
            registry,
            decision_id=decision_id,
            verdict=verdict,
            note=note.strip(),
            reviewer=caller.key_id,
            pii=caller.has("audit:pii"),
        )
    except VerdictRefused as exc:
        details = exc.details or {}
        return again(
            exc.message,
            status=exc.status,
            proposal=details.get("repaired_verdict") or verdict,
            repairs=[*details.get("failed", []), *details.get("repairs", [])],
        )
    except InvalidInput as exc:
        errors = {
            str(e["field"]).removeprefix("verdict."): str(e["reason"])
            for e in exc.details or []
            if isinstance(e, dict) and "field" in e
        }
        listed = "; ".join(f"{f}: {r}" for f, r in errors.items())
        return again(f"Not recorded: {exc.message}. {listed}", field_errors=errors)
    except ArbiterError as exc:
        return RedirectResponse(back + "?error=" + quote(exc.message), 303)
    return RedirectResponse(back, status_code=303)


def resolution(log: DecisionLog, row: DecisionRow) -> DecisionRow | None:
    """The review that settles a decision: the newest of a chain of reviews that waited for
    a second reviewer (that one may itself still wait)."""
    review = log.superseding(decision_id=row.id)
    while review is not None and review.needs_review:
        confirmed = log.superseding(decision_id=review.id)
        if confirmed is None:
            break
        review = confirmed
    return review


@router.get("/reviews")
async def reviews(
    request: Request,
    log: LogDep,
    keys: KeysDep,
    kinds: KindsDep,
    who: UiCaller,
    status: str = "open",
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, "review")
    resolved = status == "resolved"
    pii = caller.has("audit:pii")

    def load() -> list[dict[str, Any]]:
        rows = log.open_reviews(kind=None, limit=200, before_seq=None, resolved=resolved)
        out = []
        for r in rows:
            if resolved and r.source == "review":
                continue  # a step of a two-reviewer chain: shown with the decision it settles
            item: dict[str, Any] = {
                **summary(r, kinds, pii=pii),
                "review_reasons": r.review_reasons,
            }
            if resolved:
                final = resolution(log, r)
                item["review"] = None
                if final is None:
                    out.append(item)
                    continue
                seen = {"rationale": final.rationale, "verdict": final.verdict}
                item["review"] = {
                    "decision_id": final.id,
                    "reviewer": final.caller,
                    "note": seen["rationale"],
                    "outcome": final.outcome,
                    "verdict": seen["verdict"],
                    "at": utc_iso(final.created_at),
                    "awaiting_second_reviewer": final.needs_review,
                }
            out.append(item)
        return out

    rows = await log.db.call(load)
    names = await keys.db.call(keys.names)
    return page(request, "reviews.html", caller, csrf, status=status, rows=rows, names=names)


@router.get("/specs")
async def specs(
    request: Request,
    services: ServicesDep,
    registry: RegistryDep,
    kinds: KindsDep,
    who: UiCaller,
    error: Annotated[str | None, Query(max_length=2000)] = None,
    done: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, *POLICY_READERS)
    versions = await anyio.to_thread.run_sync(
        lambda: {k: services.stores.spec_versions.of_kind(kind=k) for k in sorted(kinds)}
    )
    serving = registry.serving()
    roles: dict[str, list[str]] = {}
    for s in serving:
        roles.setdefault(s["sha256"], []).append(s["role"])
    return page(
        request,
        "specs.html",
        caller,
        csrf,
        files=registry.status(),
        serving=serving,
        versions=versions,
        roles=roles,
        error=error,
        done=done,
    )


@router.get("/specs/{kind}/versions/{sha}")
async def spec_version(
    request: Request, kind: str, sha: str, registry: RegistryDep, kinds: KindsDep, who: UiCaller
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, *POLICY_READERS)
    if kind not in kinds:
        return page(request, "message.html", caller, csrf, title="Not found", message=kind)
    try:
        v = await anyio.to_thread.run_sync(lambda: version_detail(registry, kind, sha))
    except ArbiterError as exc:
        return page(request, "message.html", caller, csrf, title="Not found", message=exc.message)
    roles = [s["role"] for s in registry.serving() if s["sha256"] == v["sha256"]]
    return page(request, "spec_version.html", caller, csrf, kind=kind, v=v, roles=roles)


@router.get("/specs/{kind}/diff")
async def spec_diff(
    request: Request,
    kind: str,
    registry: RegistryDep,
    who: UiCaller,
    from_: Annotated[str, Query(alias="from", max_length=64)],
    to: Annotated[str, Query(max_length=64)] = "live",
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, *POLICY_READERS)
    try:
        d = await anyio.to_thread.run_sync(lambda: diff_by_ref(registry, kind, from_, to))
    except ArbiterError as exc:
        return page(
            request, "message.html", caller, csrf, title="Cannot compare", message=exc.message
        )
    return page(request, "diff.html", caller, csrf, kind=kind, d=d)


CHART_DAYS = 14
"""The audit chart always spans this many days (days without decisions are empty), so one
day of data is one normal bar, not one bar stretched across the card."""


def chart_days(per_day: dict[str, Any], today: date) -> list[tuple[str, dict[str, Any]]]:
    """The last CHART_DAYS UTC days up to `today`, each with its stats (zeros when none)."""
    empty = {"decisions": 0, "llm_cost_usd": "0.00", "by_source": {}, "by_outcome": {}}
    days = [(today - timedelta(days=n)).isoformat() for n in range(CHART_DAYS - 1, -1, -1)]
    return [(day, per_day.get(day, empty)) for day in days]


@router.get("/audit")
async def audit(request: Request, log: LogDep, kinds: KindsDep, who: UiCaller) -> HTMLResponse:
    caller, csrf = who
    _need(caller, "audit")
    report = await anyio.to_thread.run_sync(log.verify)
    st = await anyio.to_thread.run_sync(
        lambda: stats(log, kinds, since=None, until=None, kind=None)
    )
    days = chart_days(st["per_day"], utcnow().date())
    peak = max(d["decisions"] for _, d in days) or 1
    return page(
        request,
        "audit.html",
        caller,
        csrf,
        report=report,
        st=st,
        days=days,
        table_days=[(day, v) for day, v in days if v["decisions"]],
        peak=peak,
        flt=DecisionFilter(),
    )


@router.get("/audit/export")
async def audit_export(
    log: LogDep,
    kinds: KindsDep,
    who: UiCaller,
    filters: Annotated[ListFilters, Depends()],
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """The export of /v1/audit/export for a logged-in auditor (the session, not a bearer
    key): the same records, masked the same way."""
    caller, _ = who
    _need(caller, "audit")
    return await audit_api.export(
        log=log, kinds=kinds, caller=caller, filters=filters, format=format
    )


# --- the policy editor -------------------------------------------------------------------


def _numbered(text: str, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text's lines, each with the findings located on it."""
    at: dict[int, list[dict[str, Any]]] = {}
    for f in findings:
        if f.get("line"):
            at.setdefault(int(f["line"]), []).append(f)
    return [
        {"n": n, "text": line, "findings": at.get(n, [])}
        for n, line in enumerate(text.splitlines(), 1)
    ]


def _editor_page(
    request: Request,
    caller: Caller,
    csrf: str,
    *,
    kind: str,
    text: str,
    name: str,
    report: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    findings = (report or {}).get("errors", []) + (report or {}).get("warnings", [])
    resp = page(
        request,
        "spec_edit.html",
        caller,
        csrf,
        kind=kind,
        text=text,
        policy_name=name,
        report=report,
        lines=_numbered(text, findings) if report else [],
        unlocated=[f for f in findings if not f.get("line")],
    )
    resp.status_code = status_code
    return resp


@router.get("/specs/{kind}/edit")
async def spec_edit(
    request: Request,
    kind: str,
    registry: RegistryDep,
    kinds: KindsDep,
    who: UiCaller,
    from_: Annotated[str, Query(alias="from", max_length=64)] = "live",
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, "policy:edit")
    if kind not in kinds:
        return page(request, "message.html", caller, csrf, title="Not found", message=kind)
    try:
        v = await anyio.to_thread.run_sync(lambda: version_detail(registry, kind, from_))
    except ArbiterError as exc:
        return page(request, "message.html", caller, csrf, title="Not found", message=exc.message)
    return _editor_page(request, caller, csrf, kind=kind, text=v["text"], name=v["name"])


@router.post("/specs/{kind}/edit")
async def spec_save(
    request: Request,
    kind: str,
    registry: RegistryDep,
    settings: SettingsDep,
    kinds: KindsDep,
    who: UiCaller,
    csrf: Annotated[str, Form()],
    text: Annotated[str, Form(max_length=60_000)],
    name: Annotated[str, Form(max_length=64)] = "",
    action: Annotated[str, Form()] = "check",
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:edit")
    if kind not in kinds:
        return page(request, "message.html", caller, token, title="Not found", message=kind)
    text = text.replace("\r\n", "\n")  # browsers send form text with CRLF
    try:
        analysis = await anyio.to_thread.run_sync(
            lambda: publish.lint_draft(registry, settings, kind=kind, text=text, name=name or None)
        )
    except ArbiterError as exc:
        report = {"ok": False, "errors": exc.details or [{"reason": exc.message}], "warnings": []}
        return _editor_page(
            request, caller, token, kind=kind, text=text, name=name, report=report, status_code=422
        )
    report = publish.lint_report(analysis)
    if action != "save" or not analysis.ok:
        code = 200 if analysis.ok else 422
        return _editor_page(
            request, caller, token, kind=kind, text=text, name=name, report=report, status_code=code
        )
    draft = await anyio.to_thread.run_sync(
        lambda: publish.save_draft(
            registry, settings, kind=kind, text=text, name=name or None, actor=caller.key_id
        )
    )
    return RedirectResponse(f"/ui/specs/{kind}/drafts/{draft.spec.sha256}", status_code=303)


@router.get("/specs/{kind}/drafts/{sha}")
async def spec_draft(
    request: Request,
    kind: str,
    sha: str,
    registry: RegistryDep,
    settings: SettingsDep,
    log: LogDep,
    kinds: KindsDep,
    who: UiCaller,
    error: Annotated[str | None, Query(max_length=2000)] = None,
    done: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    caller, csrf = who
    _need(caller, *POLICY_READERS)
    if kind not in kinds:
        return page(request, "message.html", caller, csrf, title="Not found", message=kind)

    def gather() -> dict[str, Any]:
        spec = spec_by_ref(registry, kind, sha, field="sha")
        analysis = publish.lint_draft(registry, settings, kind=kind, text=spec.text, name=None)
        serving = [s for s in registry.serving() if s["sha256"] == spec.sha256]
        roles = [s["role"] for s in serving]
        live = registry.active(kind)
        rollout = None
        chart: list[dict[str, Any]] = []
        cand = registry.candidate(kind)
        if cand is not None and cand.sha256 == spec.sha256:
            rollout = rollout_report(registry, kind, log=log, limit=1000)
            if cand.meta.rollout == "shadow":
                pairs = log.shadow_pairs(kind=kind, candidate_sha=spec.sha256, limit=1000)
                chart = publish.agreement_buckets(pairs)
        return {
            "spec": spec,
            "warnings": publish.lint_report(analysis)["warnings"],
            "roles": roles,
            "is_live": "live" in roles,
            "is_candidate": cand is not None and cand.sha256 == spec.sha256,
            "live": live,
            "diff": None if "live" in roles else diff_by_ref(registry, kind, "live", spec.sha256),
            "llm": publish.llm_view(registry, kind, spec),
            "evaluation": publish.last_eval(registry, kind, spec.sha256),
            "blocked": publish.publish_check(
                registry, settings, kind=kind, spec=spec, actor=caller.key_id, accept_moved=True
            ),
            "rollout": rollout,
            "chart": chart,
            "author": publish.author_of(registry, kind, spec.sha256),
            "events": registry.deployments.events(kind=kind, sha256=spec.sha256, limit=50),
        }

    try:
        ctx = await anyio.to_thread.run_sync(gather)
    except ArbiterError as exc:
        return page(request, "message.html", caller, csrf, title="Not found", message=exc.message)
    return page(request, "spec_draft.html", caller, csrf, kind=kind, error=error, done=done, **ctx)


async def _policy_action(
    kind: str, sha: str, act: Any, *, ok: str, back: str | None = None
) -> RedirectResponse:
    """Run a policy change; come back to the draft page with what happened."""
    back = back or f"/ui/specs/{quote(kind)}/drafts/{quote(sha)}"
    try:
        await anyio.to_thread.run_sync(act)
    except ArbiterError as exc:
        return RedirectResponse(f"{back}?error=" + quote(exc.message), status_code=303)
    return RedirectResponse(f"{back}?done=" + quote(ok), status_code=303)


@router.post("/specs/{kind}/drafts/{sha}/eval")
async def spec_draft_eval(
    kind: str,
    sha: str,
    registry: RegistryDep,
    settings: SettingsDep,
    who: UiCaller,
    csrf: Annotated[str, Form()],
    mode: Annotated[str, Form(max_length=16)] = "rules",
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:edit")
    return await _policy_action(
        kind,
        sha,
        lambda: publish.eval_version(
            registry, settings, kind=kind, ref=sha, mode=mode, actor=caller.key_id
        ),
        ok=f"the eval suite ran ({mode} mode)",
    )


@router.post("/specs/{kind}/drafts/{sha}/candidate")
async def spec_draft_candidate(
    kind: str,
    sha: str,
    registry: RegistryDep,
    who: UiCaller,
    csrf: Annotated[str, Form()],
    rollout: Annotated[str, Form(max_length=16)] = "shadow",
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:edit" if rollout == "shadow" else "policy:publish")
    return await _policy_action(
        kind,
        sha,
        lambda: publish.start_candidate(
            registry, kind=kind, ref=sha, role=rollout, actor=caller.key_id
        ),
        ok=f"running as {rollout}",
    )


@router.post("/specs/{kind}/drafts/{sha}/stop")
async def spec_draft_stop(
    kind: str, sha: str, registry: RegistryDep, who: UiCaller, csrf: Annotated[str, Form()]
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:edit")
    return await _policy_action(
        kind,
        sha,
        lambda: publish.stop_candidate(registry, kind=kind, actor=caller.key_id),
        ok="the shadow or canary stopped",
    )


@router.post("/specs/{kind}/drafts/{sha}/promote")
async def spec_draft_promote(
    kind: str,
    sha: str,
    registry: RegistryDep,
    settings: SettingsDep,
    who: UiCaller,
    csrf: Annotated[str, Form()],
    accept_moved: Annotated[bool, Form()] = False,
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:publish")
    return await _policy_action(
        kind,
        sha,
        lambda: publish.promote(
            registry, settings, kind=kind, ref=sha, actor=caller.key_id, accept_moved=accept_moved
        ),
        ok="promoted: it is live",
    )


@router.post("/specs/{kind}/rollback")
async def spec_rollback(
    kind: str, registry: RegistryDep, who: UiCaller, csrf: Annotated[str, Form()]
) -> Response:
    caller, token = who
    check_csrf(token, csrf)
    _need(caller, "policy:publish")
    try:
        spec = await anyio.to_thread.run_sync(
            lambda: publish.rollback(registry, kind=kind, actor=caller.key_id)
        )
    except ArbiterError as exc:
        return RedirectResponse("/ui/specs?error=" + quote(exc.message), status_code=303)
    return RedirectResponse(
        f"/ui/specs?done={quote(f'{kind} rolled back to version {spec.version}')}", 303
    )
