"""POST /v1/decisions/{kind} (one typed route per kind) and GET /v1/decisions/{id}."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query

from service.auth import Caller
from service.deps import EngineDep, StoreDep, require
from service.engine import DecisionResponse
from service.errors import NotFound
from service.kinds.registry import AnyKind
from service.log.chain import utc_iso

DecideCaller = Annotated[Caller, Depends(require("decide"))]
AuditCaller = Annotated[Caller, Depends(require("audit"))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
PinSha = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=r"^[0-9a-fA-F]{8,64}$",
        description="Judge under this spec version (sha256 or a prefix of 8+ characters).",
    ),
]
PinVersion = Annotated[
    str | None, Query(max_length=32, description="Judge under the spec with this version label.")
]


class DecisionDetail(DecisionResponse):
    """The full record of a decision, for auditors."""

    case: dict[str, Any]
    llm_verdict: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    prompt: dict[str, Any] | None
    prompt_sha256: str | None
    prompt_template_sha256: str | None
    guardrails_version: str
    caller: str | None
    idempotency_key: str | None
    shadow_of: str | None
    supersedes: str | None
    chain: dict[str, Any]


def _decide_route(kind: AnyKind) -> Callable[..., Awaitable[DecisionResponse]]:
    case_model: Any = kind.Case

    async def decide(
        case: case_model,
        engine: EngineDep,
        caller: DecideCaller,
        idempotency_key: IdempotencyKey = None,
        spec_sha: PinSha = None,
        spec_version: PinVersion = None,
    ) -> DecisionResponse:
        return await engine.decide(
            kind=kind.name,
            case=case,
            caller=caller.key_id,
            idempotency_key=idempotency_key,
            pin_sha=spec_sha,
            pin_version=spec_version,
        )

    decide.__doc__ = f"Decide a {kind.name} case. {type(kind).__doc__ or ''}"
    return decide


def build_router(kinds: dict[str, AnyKind]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["decisions"])
    for kind in kinds.values():
        router.add_api_route(
            f"/decisions/{kind.name}",
            _decide_route(kind),
            methods=["POST"],
            response_model=DecisionResponse,
            name=f"decide_{kind.name}",
            summary=f"Decide a {kind.name} case",
        )

    @router.post("/decisions/{kind}", include_in_schema=False)
    async def unknown_kind(kind: str) -> None:
        raise NotFound(f"unknown decision kind {kind!r}", details={"known": sorted(kinds)})

    @router.get("/decisions/{decision_id}", response_model=DecisionDetail)
    async def get_decision(decision_id: str, store: StoreDep, _: AuditCaller) -> DecisionDetail:
        """The full record of one decision."""
        row = await anyio.to_thread.run_sync(lambda: store.get(decision_id=decision_id))
        if row is None:
            raise NotFound(f"no decision {decision_id}")
        base = DecisionResponse.from_row(row).model_dump()
        return DecisionDetail(
            **base,
            case=row.case,
            llm_verdict=row.llm_verdict,
            attempts=row.attempts,
            prompt=row.prompt,
            prompt_sha256=row.prompt_sha256,
            prompt_template_sha256=row.prompt_template_sha256,
            guardrails_version=row.guardrails_version,
            caller=row.caller,
            idempotency_key=row.idempotency_key,
            shadow_of=row.shadow_of,
            supersedes=row.supersedes,
            chain={
                "seq": row.seq,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
                "created_at": utc_iso(row.created_at),
            },
        )

    return router
