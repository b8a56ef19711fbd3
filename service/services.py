"""build_services(settings): the one place the database, stores, registry and engine are made."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.engine import Engine
from service.kinds.registry import KINDS, Kinds
from service.llm.client import LLMClient
from service.llm.prompts import PromptLibrary
from service.log.stores import Stores, open_stores
from service.settings import Settings
from service.shadow import ShadowRunner
from service.specs.registry import SpecRegistry

log = logging.getLogger("arbiter")


@dataclass
class Services:
    """What a process runs on; `aclose()` releases the LLM client and the database."""

    settings: Settings
    stores: Stores
    kinds: Kinds
    registry: SpecRegistry | None = None
    engine: Engine | None = None
    llm: LLMClient | None = None
    shadow: ShadowRunner | None = None

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("these services were built without the engine")
        return self.engine

    async def aclose(self) -> None:
        if self.shadow is not None:
            await self.shadow.stop()
        if self.llm is not None:
            await self.llm.aclose()
        self.stores.close()


def build_services(
    settings: Settings,
    *,
    kinds: Kinds | None = None,
    llm: LLMClient | None = None,
    use_llm: bool = True,
    engine: bool = True,
    migrate: bool = True,
    url: str | None = None,
) -> Services:
    """Stores on the configured database (or `url`); with `engine`, also the spec registry,
    prompts, LLM client (`llm`, else one from the settings unless `use_llm` is off) and the
    engine. `engine=False, migrate=False` only opens the stores, for commands that read.
    `kinds` is the registry of decision kinds (default: the kinds that ship)."""
    if settings.unsafe_null_log:
        log.warning("ARBITER_UNSAFE_NULL_LOG is set: decisions are NOT logged (benchmarks only)")
    stores = open_stores(
        url or settings.db_url(),
        migrate=migrate,
        null_log=settings.unsafe_null_log,
        timeouts=settings.db_timeouts(),
        shards=settings.log_shards,
    )
    services = Services(settings=settings, stores=stores, kinds=KINDS if kinds is None else kinds)
    if not engine:
        return services
    try:
        registry = SpecRegistry(
            directory=settings.specs_dir,
            specs=stores.spec_versions,
            prompts_dir=settings.prompts_dir,
            kinds=services.kinds,
            token_budget=settings.prompt_token_budget,
        )
        registry.load()
        if llm is None and use_llm and settings.llm_enabled:
            llm = LLMClient(settings=settings)
    except BaseException:
        stores.close()
        raise
    services.registry = registry
    services.llm = llm
    services.engine = Engine(
        settings=settings,
        log=stores.log,
        idempotency=stores.idempotency,
        registry=registry,
        prompts=PromptLibrary(settings.prompts_dir),
        llm=llm,
        kinds=services.kinds,
    )
    return services


def start_shadow(services: Services) -> ShadowRunner:
    """Start the shadow workers (inside a running event loop) and hand them to the engine."""
    engine = services.require_engine()
    settings = services.settings
    services.shadow = ShadowRunner(
        engine=engine,
        queue_size=settings.shadow_queue_size,
        concurrency=settings.shadow_concurrency,
    )
    engine.shadow = services.shadow
    services.shadow.start()
    return services.shadow
