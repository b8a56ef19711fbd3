"""Spec references as the README promises them: folders for lint, sha prefixes of any
stored version (also one no longer on disk), for pinning, versions and diffs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app as cli
from service.settings import PROJECT_ROOT, get_settings
from tests.conftest import contract


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "specs"
    shutil.copytree(PROJECT_ROOT / "specs", d)
    return d


def test_lint_takes_a_folder(specs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBITER_SPECS_DIR", str(specs_dir))
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli, ["spec", "lint", str(specs_dir)])
        assert r.exit_code == 0, r.output
        assert "Is a directory" not in r.output
        assert "3 file(s) checked, 0 with errors" in r.output
        (specs_dir / "returns.next.md").write_text("no front matter")
        r = CliRunner().invoke(cli, ["spec", "lint", str(specs_dir), str(specs_dir / "routing.md")])
        assert r.exit_code == 1 and "ERROR returns.next.md" in r.output
        assert "5 file(s) checked, 1 with errors" in r.output
        empty = specs_dir / "empty"
        empty.mkdir()
        r = CliRunner().invoke(cli, ["spec", "lint", str(empty)])
        assert r.exit_code == 2 and "no spec files" in r.output
    finally:
        get_settings.cache_clear()


async def test_a_prefix_finds_a_version_that_left_the_disk(
    api_factory: Any, specs_dir: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'refs.db'}"
    api, cm = await api_factory(db=db, specs_dir=specs_dir, spec_poll_s=0)
    old = api.engine.registry.active("returns").sha256
    await api.client.aclose()
    await cm.__aexit__(None, None, None)
    path = specs_dir / "returns.md"
    path.write_text(path.read_text().replace("version: 1", "version: 2", 1))
    # a new process: the old version is only in the database now
    api, cm = await api_factory(db=db, specs_dir=specs_dir, spec_poll_s=0)
    try:
        assert api.engine.registry.active("returns").sha256 != old
        prefix = old[:8]
        r = await api.client.post(
            "/v1/decisions/returns",
            json=contract("returns.request"),
            headers=api.auth(),
            params={"spec_sha": prefix},
        )
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["sha256"] == old
        h = api.auth("audit")
        r = await api.client.get(f"/v1/specs/returns/versions/{prefix}", headers=h)
        assert r.status_code == 200 and r.json()["sha256"] == old
        r = await api.client.get(
            "/v1/specs/returns/diff", headers=h, params={"from": prefix, "to": "live"}
        )
        assert r.status_code == 200 and r.json()["from_sha256"] == old
        r = await api.client.post(
            "/v1/decisions/returns",
            json=contract("returns.request"),
            headers=api.auth(),
            params={"spec_sha": "0" * 8},
        )
        assert r.status_code == 422
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


async def test_an_ambiguous_prefix_is_refused(api_factory: Any) -> None:
    api, cm = await api_factory(spec_poll_s=0)
    try:
        spec = api.engine.registry.active("returns")
        for fake in ("abcdef12" + "0" * 56, "abcdef12" + "1" * 56):
            api.app.state.services.stores.spec_versions.record(
                sha256=fake,
                kind="returns",
                name="returns",
                version="x",
                rollout="active",
                text=spec.text,
                parameters={},
                effective_from=None,
            )
        r = await api.client.get("/v1/specs/returns/versions/abcdef12", headers=api.auth("audit"))
        assert r.status_code == 422 and "ambiguous" in r.text
    finally:
        await api.client.aclose()
        await cm.__aexit__(None, None, None)


def test_cli_diff_with_a_prefix_of_a_stored_version(
    specs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARBITER_SPECS_DIR", str(specs_dir))
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli, ["spec", "show", "returns"])
        assert r.exit_code == 0, r.output
        old = r.output.split("sha256 ")[1].split(",")[0]
        path = specs_dir / "returns.md"
        path.write_text(
            path.read_text().replace("return_window_days: 30", "return_window_days: 45")
        )
        r = CliRunner().invoke(cli, ["spec", "diff", "returns", old[:8], "live"])
        assert r.exit_code == 0, r.output
        assert "return_window_days: 30 → 45" in r.output
    finally:
        get_settings.cache_clear()
