"""Hot reload, versions, pinning, effective dating, shadow and canary, promote and rollback."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner

from service.cli import app as cli
from service.settings import PROJECT_ROOT, get_settings
from service.specs.registry import canary_bucket
from tests.conftest import LLM_BASE, contract, reply
from tests.test_returns_api import GOOD


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", d)
    return d


def edit(path: Path, old: str, new: str, **fm: str) -> None:
    text = path.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    for key, value in fm.items():
        text = text.replace(f"\n{key}: ", f"\n{key}: {value}\n#{key}: ", 1)
    path.write_text(text)


def variant(specs_dir: Path, name: str, **replacements: str) -> Path:
    text = (specs_dir / "returns.md").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = specs_dir / f"{name}.md"
    path.write_text(text)
    return path


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_hot_reload_good_and_broken_edits_while_serving(
    api_factory: Any, specs_dir: Path
) -> None:
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0.05)
    try:
        first = (await api.decide("returns", contract("returns.request"))).json()["spec"]
        statuses: list[int] = []
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                r = await api.decide("returns", contract("returns.request"))
                statuses.append(r.status_code)

        task = asyncio.create_task(traffic())
        edit(specs_dir / "returns.md", "return_window_days: 30", "return_window_days: 45")
        edit(specs_dir / "returns.md", "version: 1", "version: 2")
        await wait_for(lambda: api.engine.registry.active("returns").version == "2")
        second = (await api.decide("returns", contract("returns.request"))).json()["spec"]
        assert second["version"] == "2" and second["sha256"] != first["sha256"]

        edit(specs_dir / "returns.md", "defect_window_days: 90", "defect_window_days: 5")
        await wait_for(lambda: bool(api.engine.registry.files["returns"].errors))
        stop.set()
        await task
        assert statuses and set(statuses) == {200}
        third = (await api.decide("returns", contract("returns.request"))).json()["spec"]
        assert third == second  # the last good version stays live
        listing = (await api.client.get("/v1/specs", headers=api.auth("audit"))).json()
        entry = next(s for s in listing["specs"] if s["file"] == "returns.md")
        assert entry["version"]["version"] == "2" and entry["on_disk_differs"]
        assert "defect_window_days" in entry["errors"][0]["message"]
        assert entry["errors"][0]["line"] is not None
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_versions_and_diff_api(api_factory: Any, specs_dir: Path) -> None:
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0)
    try:
        old = api.engine.registry.active("returns").sha256
        edit(specs_dir / "returns.md", "return_window_days: 30", "return_window_days: 45")
        edit(specs_dir / "returns.md", "version: 1", "version: 2")
        api.engine.registry.load()
        new = api.engine.registry.active("returns").sha256
        h = api.auth("audit")
        versions = (await api.client.get("/v1/specs/returns/versions", headers=h)).json()
        assert [v["sha256"] for v in versions["versions"]][:2] == [new, old]
        assert versions["versions"][0]["live"] and not versions["versions"][1]["live"]
        one = (await api.client.get(f"/v1/specs/returns/versions/{old[:12]}", headers=h)).json()
        assert one["parameters"]["return_window_days"] == 30 and one["sha256"] == old
        assert any(c["id"] == "R1" and "30" in c["text"] for c in one["clauses"])
        d = (
            await api.client.get(
                "/v1/specs/returns/diff", headers=h, params={"from": old[:8], "to": "live"}
            )
        ).json()
        assert {"key": "return_window_days", "change": "changed", "from": 30, "to": 45} in d[
            "parameters"
        ]
        assert "-  return_window_days: 30" in d["text"] and "+  return_window_days: 45" in d["text"]
        bad = await api.client.get(
            "/v1/specs/returns/diff", headers=h, params={"from": "deadbeefdeadbeef", "to": "live"}
        )
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"
        assert (await api.client.get("/v1/specs/returns/versions")).status_code == 401
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_pinning(api_factory: Any, specs_dir: Path) -> None:
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0)
    try:
        old = api.engine.registry.active("returns").sha256
        edit(specs_dir / "returns.md", "version: 1", "version: 2")
        api.engine.registry.load()
        case = contract("returns.request")
        r = await api.client.post(
            "/v1/decisions/returns", json=case, headers=api.auth(), params={"spec_sha": old}
        )
        assert r.status_code == 200 and r.json()["spec"]["sha256"] == old
        r = await api.client.post(
            "/v1/decisions/returns", json=case, headers=api.auth(), params={"spec_version": "1"}
        )
        assert r.json()["spec"]["sha256"] == old
        r = await api.client.post("/v1/decisions/returns", json=case, headers=api.auth())
        assert r.json()["spec"]["version"] == "2"
        for params, field in (
            ({"spec_sha": "0123456789abcdef"}, "spec_sha"),
            ({"spec_version": "99"}, "spec_version"),
        ):
            r = await api.client.post(
                "/v1/decisions/returns", json=case, headers=api.auth(), params=params
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"]["details"][0]["field"] == field
        r = await api.client.post(
            "/v1/decisions/returns", json=case, headers=api.auth(), params={"spec_sha": "xyz"}
        )
        assert r.status_code == 422
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_effective_dating_across_a_boundary(api_factory: Any, specs_dir: Path) -> None:
    variant(
        specs_dir,
        "returns.holiday",
        **{
            "version: 1": "version: 1-holiday",
            "effective_from: 2026-01-01": "effective_from: 2026-11-15",
            "return_window_days: 30": "return_window_days: 60",
        },
    )
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0)
    try:
        case = contract("returns.request")
        case["request"]["items"][0].update(
            reason="changed_mind", condition="new", customer_comment=None
        )
        case["order"]["placed_at"] = "2026-11-14T23:00:00Z"
        case["order"]["delivered_at"] = "2026-11-18T10:00:00Z"
        case["request"]["requested_at"] = "2027-01-05T10:00:00Z"  # day 48
        before = (await api.decide("returns", case)).json()
        assert before["spec"]["version"] == "1" and before["outcome"] == "deny"
        case["order"]["placed_at"] = "2026-11-15T00:30:00Z"
        after = (await api.decide("returns", case)).json()
        assert after["spec"]["version"] == "1-holiday" and after["outcome"] == "approve"
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


def test_canary_share_over_2000_order_ids() -> None:
    for pct in (10, 25, 50):
        share = sum(canary_bucket("returns", f"ORD-{i}") < pct for i in range(2000)) / 2000
        assert abs(share - pct / 100) < 0.03, (pct, share)
    assert canary_bucket("returns", "ORD-1") == canary_bucket("returns", "ORD-1")


async def test_canary_serves_a_stable_share(api_factory: Any, specs_dir: Path) -> None:
    variant(
        specs_dir,
        "returns.next",
        **{"version: 1": "version: 2-next", "rollout: active": "rollout: canary:30"},
    )
    api, cm = await api_factory(specs_dir=specs_dir, spec_poll_s=0)
    try:
        served: dict[str, str] = {}
        for i in range(60):
            case = contract("returns.request")
            case["order"]["id"] = f"ORD-{i}"
            served[case["order"]["id"]] = (await api.decide("returns", case)).json()["spec"][
                "version"
            ]
        canaried = [o for o, v in served.items() if v == "2-next"]
        assert canaried == [o for o in served if canary_bucket("returns", o) < 30]
        assert 0 < len(canaried) < 60
        again = contract("returns.request")
        again["order"]["id"] = canaried[0]
        assert (await api.decide("returns", again)).json()["spec"]["version"] == "2-next"
        report = (
            await api.client.get("/v1/specs/returns/rollout", headers=api.auth("audit"))
        ).json()
        assert report["canary_percent"] == 30
        assert report["served_by_candidate"] == len(canaried) + 1
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_shadow_records_are_linked_and_never_slow_the_live_request(
    api_factory: Any, specs_dir: Path
) -> None:
    variant(
        specs_dir,
        "returns.next",
        **{
            "version: 1": "version: 2-next",
            "rollout: active": "rollout: shadow",
            "return_window_days: 30": "return_window_days: 7",
        },
    )

    async def llm(request: httpx.Request) -> httpx.Response:
        if "version 2-next" in json.loads(request.content)["messages"][0]["content"]:
            await asyncio.sleep(60)  # the candidate's LLM call hangs
        return reply(GOOD)

    with respx.mock(base_url=LLM_BASE, assert_all_mocked=True) as mock:
        mock.post("/chat/completions").mock(side_effect=llm)
        api, cm = await api_factory(llm=True, specs_dir=specs_dir, spec_poll_s=0, deadline_s=1.0)
        try:
            started = asyncio.get_running_loop().time()
            live = (await api.decide("returns", contract("returns.request"))).json()
            elapsed = asyncio.get_running_loop().time() - started
            assert live["source"] == "llm" and live["spec"]["version"] == "1"
            assert elapsed < 0.9  # well under the shadow's hanging call and its deadline
            plain = contract("returns.request")  # changed mind on day 14: R1 differs
            plain["request"]["items"][0].update(
                reason="changed_mind", condition="new", customer_comment=None
            )
            live2 = (await api.decide("returns", plain)).json()
            assert live2["outcome"] == "approve"
            await asyncio.wait_for(api.engine.shadow.drain(), timeout=10)
            report = (
                await api.client.get("/v1/specs/returns/rollout", headers=api.auth("audit"))
            ).json()
            assert report["compared"] == 2 and report["agreement_rate"] == 0.5
            (dis,) = report["disagreements"]
            assert dis["live_decision"] == live2["decision_id"]
            assert (dis["live_outcome"], dis["candidate_outcome"]) == ("approve", "deny")
            records = {r.shadow_of: r for r in api.engine.log.iter_rows() if r.shadow_of}
            hung = records[live["decision_id"]]
            assert hung.fallback_reason == "llm_timeout" and hung.spec_version == "2-next"
            assert api.engine.log.verify().ok
        finally:
            await api.client.aclose()
            await cm.__aexit__(None, None, None)


async def test_shadow_queue_is_bounded(api_factory: Any, specs_dir: Path) -> None:
    variant(
        specs_dir,
        "returns.next",
        **{"version: 1": "version: 2-next", "rollout: active": "rollout: shadow"},
    )
    api, cm = await api_factory(
        specs_dir=specs_dir, spec_poll_s=0, shadow_queue_size=2, shadow_concurrency=1
    )
    try:
        await api.engine.shadow.stop()  # no workers: the queue can only fill
        for _ in range(5):
            assert (await api.decide("returns", contract("returns.request"))).status_code == 200
        assert api.engine.shadow.queue.qsize() == 2 and api.engine.shadow.dropped == 3
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


def serving() -> list[tuple[str, str, str]]:
    """The returns versions the database says serve, as a freshly started process sees them."""
    from service.services import build_services

    services = build_services(get_settings(), use_llm=False)
    try:
        return [
            (s["name"], s["role"], s["version"])
            for s in services.require_engine().registry.serving()
            if s["kind"] == "returns"
        ]
    finally:
        services.stores.close()


def test_promote_and_rollback_cli(
    tmp_path: Path, specs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ARBITER_SPECS_DIR", str(specs_dir))
    get_settings.cache_clear()
    try:
        variant(
            specs_dir,
            "returns.next",
            **{
                "version: 1": "version: 2",
                "rollout: active": "rollout: shadow",
                "return_window_days: 30": "return_window_days: 35",
            },
        )
        runner = CliRunner()
        diff = runner.invoke(cli, ["spec", "diff", "returns", "live", "candidate"])
        assert diff.exit_code == 0, diff.output
        assert "return_window_days: 30 → 35 (changed)" in diff.output
        before = {p.name: p.read_text() for p in specs_dir.glob("*.md")}
        r = runner.invoke(cli, ["spec", "promote", "returns.next"])
        assert r.exit_code == 0, r.output
        assert "live as returns" in r.output
        assert {p.name: p.read_text() for p in specs_dir.glob("*.md")} == before  # the database
        assert serving() == [("returns", "live", "2")]
        listed = runner.invoke(cli, ["spec", "list"])
        assert listed.exit_code == 0 and "serving" in listed.output, listed.output
        r = runner.invoke(cli, ["spec", "rollback", "returns"])
        assert r.exit_code == 0 and "version 1" in r.output, r.output
        assert serving() == [("returns", "live", "1")]
        r = runner.invoke(cli, ["spec", "rollback", "returns", "--to", "2"])
        assert r.exit_code == 0 and "version 2" in r.output, r.output
        # a broken file is never pushed, and nothing else in the push is
        variant(specs_dir, "returns.next", **{"return_window_days: 30": "return_window_days: x"})
        r = runner.invoke(cli, ["spec", "push"])
        assert r.exit_code == 1 and "nothing pushed" in r.output
        r = runner.invoke(cli, ["spec", "promote", "returns"])
        assert r.exit_code == 2 and "no candidate" in r.output
        shown = runner.invoke(cli, ["spec", "show", "returns", "2"])
        assert shown.exit_code == 0 and "return_window_days: 35" in shown.output
        # the promotion and the rollback are events of the admin chain; the refused one is not
        from service.log.stores import open_stores

        stores = open_stores(f"sqlite:///{tmp_path / 'cli.db'}", migrate=False)
        events = [(e.action, e.subject) for e in stores.admin.iter_rows()]
        stores.close()
        changes = [e for e in events if e[0].startswith("spec.") and e[0] != "spec.import"]
        assert [a for a, _ in changes] == ["spec.promote", "spec.rollback", "spec.rollback"]
        assert all(subject.startswith("returns:") for _, subject in changes)
        imported = [s for a, s in events if a == "spec.import"]
        assert len(imported) == 4  # the three policies and returns.next (shadow), once each
    finally:
        get_settings.cache_clear()
