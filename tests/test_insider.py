"""An insider with write access to the database rewrites history; once a signed checkpoint
covering that history is published, `arbiter log verify --checkpoints` names what changed.

Each rewrite is done the way a careful insider would: with the service's own hash code,
re-hashing every later record and moving the head, so that the chain alone still verifies
(asserted where it does). The proofs at the end are checked with a few lines of hashlib
written from RFC 6962, not with the service's Merkle code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from typer.testing import CliRunner

from service.cli import app as cli
from service.log.chain import record_hash
from service.log.checkpoints import checkpoint_now, new_key_text, read_directory, verifier_from
from service.log.verify import AuditReport, audit
from tests.conftest import Api, contract

N = 12


@pytest.fixture
async def audited(
    api_factory: Callable[..., Any], db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, Any]]:
    """An app with two shards and a checkpoint key, 12 decisions (one idempotent), and a
    published checkpoint covering them."""
    a, cm = await api_factory(
        db=db_url,
        log_shards=2,
        checkpoint_key=new_key_text(),
        checkpoint_dir=tmp_path / "checkpoints",
        checkpoint_interval_s=0,
    )
    for i in range(N):
        data = contract("returns.request")
        data["order"]["id"] = f"ORD-{i}"
        headers = {"Idempotency-Key": "idem-1"} if i == 3 else {}
        r = await a.decide("returns", data, **headers)
        assert r.status_code == 200, r.text
    publish(a)
    assert check(a).ok
    yield a, cm
    await a.client.aclose()
    await cm.__aexit__(None, None, None)


def stores(a: Api) -> Any:
    return a.app.state.services.stores


def publish(a: Api) -> None:
    checkpoint_now(stores(a), a.app.state.settings)


def check(a: Api) -> AuditReport:
    settings = a.app.state.settings
    pub = read_directory(Path(settings.checkpoint_dir))
    return audit(stores(a), published=pub, verifier=verifier_from(settings))


def shard_rows(a: Api) -> list[Any]:
    """The records of the larger shard, in chain order."""
    log = stores(a).log
    chains = [list(log.iter_rows(shard=s)) for s in (1, 2)]
    return max(chains, key=len)


def sql(a: Api, statement: str, **params: Any) -> None:
    with stores(a).db.engine.begin() as conn:
        conn.execute(text(statement), params)


def rehash_from(a: Api, rows: list[Any], start: int, prev: str) -> None:
    """What a careful insider does after an edit: re-hash every later record of the
    shard with the service's own code, and move the head to the new end."""
    for row in rows[start:]:
        row.prev_hash = prev
        row.hash = record_hash(row)
        prev = row.hash
        sql(
            a,
            "UPDATE decisions SET verdict = :v, seq = :seq, prev_hash = :p, hash = :h, "
            "response_sha256 = :r WHERE id = :id",
            v=json.dumps(row.verdict),
            seq=row.seq,
            p=row.prev_hash,
            h=row.hash,
            r=row.response_sha256,
            id=row.id,
        )
    last = rows[-1]
    sql(
        a,
        "UPDATE chain_head SET seq = :s, count = :c, hash = :h WHERE id = :id",
        s=last.seq,
        c=len(rows),
        h=last.hash,
        id=last.shard,
    )


async def test_rehash_forward_after_editing_a_refund(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    rows = shard_rows(a)
    victim = rows[1]
    victim.verdict = {**victim.verdict, "total_refund": "9999.00"}
    rehash_from(a, rows, 1, rows[0].hash)
    assert stores(a).log.verify().ok  # the chain alone is fooled
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == victim.id
    assert "altered and the chain re-hashed" in report.first_bad["problem"]
    r = await a.client.get("/v1/audit/verify?checkpoints=true", headers=a.auth("audit"))
    assert r.status_code == 409 and r.json()["first_bad"]["id"] == victim.id
    # and the service will not sign the rewritten history
    from service.log.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="shard-. no longer matches"):
        publish(a)
    assert (await a.client.get("/v1/audit/verify", headers=a.auth("audit"))).status_code == 200


async def test_relink_after_deleting_a_middle_record(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    rows = shard_rows(a)
    gone = rows[2]
    sql(a, "DELETE FROM decisions WHERE id = :id", id=gone.id)
    rest = [r for r in rows if r.id != gone.id]
    rehash_from(a, rest, 2, rest[1].hash)
    assert stores(a).log.verify().ok
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == gone.id and report.first_bad["seq"] == gone.seq
    assert "no longer at its place" in report.first_bad["problem"]


async def test_rewind_the_head_after_deleting_the_newest_three(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    rows = shard_rows(a)
    kept, gone = rows[:-3], rows[-3:]
    for r in gone:
        sql(a, "DELETE FROM decisions WHERE id = :id", id=r.id)
    sql(
        a,
        "UPDATE chain_head SET seq = :s, count = :c, hash = :h WHERE id = :id",
        s=kept[-1].seq,
        c=len(kept),
        h=kept[-1].hash,
        id=kept[-1].shard,
    )
    assert stores(a).log.verify().ok
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == gone[0].id  # the first of the three that are gone
    assert "is gone" in report.first_bad["problem"]


async def test_renumber_seq(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    rows = shard_rows(a)
    last = rows[-1]
    sql(a, "UPDATE decisions SET seq = :new WHERE id = :id", new=last.seq + 1000, id=last.id)
    old = last.seq
    last.seq += 1000
    # without re-hashing, the hash (which covers seq) already gives it away
    assert not stores(a).log.verify().ok
    rehash_from(a, rows, len(rows) - 1, rows[-2].hash)
    assert stores(a).log.verify().ok
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == last.id and report.first_bad["seq"] == old
    assert f"published as seq {old}, now seq {old + 1000}" in report.first_bad["problem"]


async def test_edit_spec_text(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    registry = a.engine.registry
    spec = registry.live_specs()[0]
    # a version that only the database holds (an earlier one, no longer on disk)
    old_text = spec.text + "\n<!-- an earlier wording -->\n"
    sha = hashlib.sha256(old_text.encode()).hexdigest()
    stores(a).spec_versions.record(
        sha256=sha,
        kind=spec.kind,
        name=spec.name,
        version="0",
        rollout="active",
        text=old_text,
        parameters={},
        effective_from=None,
    )
    assert check(a).ok
    forged = old_text + "\n## R99 Forged\nEvery refund is tripled.\n"
    sql(a, "UPDATE spec_versions SET text = :t WHERE sha256 = :s", t=forged, s=sha)
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert sha[:12] in report.first_bad["problem"] and "edited" in report.first_bad["problem"]
    # never read back as policy: the version page refuses it, naming the tampering
    r = await a.client.get(f"/v1/specs/{spec.kind}/versions/{sha}", headers=a.auth("audit"))
    assert r.status_code == 500 and r.json()["error"]["code"] == "log_tampered"
    assert "tripled" not in r.text


async def test_edit_an_idempotent_response(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    data = contract("returns.request")
    data["order"]["id"] = "ORD-3"
    first = await a.decide("returns", data, **{"Idempotency-Key": "idem-1"})
    assert first.status_code == 200 and first.headers.get("idempotent-replayed") == "true"
    forged = first.text.replace('"approve"', '"deny"')
    assert forged != first.text
    sql(a, "UPDATE idempotency_keys SET response = :r", r=forged)
    replay = await a.decide("returns", data, **{"Idempotency-Key": "idem-1"})
    assert replay.status_code == 500 and replay.json()["error"]["code"] == "log_tampered"
    assert '"deny"' not in replay.text
    # binding the forged response to the record too means rewriting the record: named
    decision_id = first.json()["decision_id"]
    log = stores(a).log
    row = log.get(decision_id=decision_id)
    rows = list(log.iter_rows(shard=row.shard))
    at = [r.id for r in rows].index(decision_id)
    rows[at].response_sha256 = hashlib.sha256(forged.encode()).hexdigest()
    rehash_from(a, rows, at, rows[at - 1].hash if at else "0" * 64)
    replayed = await a.decide("returns", data, **{"Idempotency-Key": "idem-1"})
    assert replayed.status_code == 200  # the request path trusts a self-consistent record…
    report = check(a)  # …and the checkpoint does not
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == decision_id


async def test_insert_a_key(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    secret_hash = hashlib.sha256(b"arb_insider").hexdigest()
    sql(
        a,
        "INSERT INTO api_keys (id, name, key_hash, scopes, created_at) "
        "VALUES ('key_insider01', 'ops', :h, :s, CURRENT_TIMESTAMP)",
        h=secret_hash,
        s=json.dumps(["admin"]),
    )
    report = check(a)
    assert not report.ok and report.first_bad is not None
    assert report.first_bad["id"] == "key_insider01"
    assert "inserted" in report.first_bad["problem"]


async def test_rescope_or_unrevoke_a_key(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    keys = stores(a).keys
    row, _ = keys.create(name="temp", scopes=["decide"])
    assert keys.revoke(key_id=row.id)
    assert check(a).ok  # both were recorded in the admin chain
    sql(a, "UPDATE api_keys SET revoked_at = NULL WHERE id = :id", id=row.id)
    report = check(a)
    assert not report.ok and "revocation was undone" in report.first_bad["problem"]  # type: ignore[index]
    sql(a, "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id", id=row.id)
    decide = next(k for k in keys_rows(a) if k["name"] == "test decide")
    sql(a, "UPDATE api_keys SET scopes = :s WHERE id = :id", s='["admin"]', id=decide["id"])
    report = check(a)
    assert not report.ok and report.first_bad["id"] == decide["id"]  # type: ignore[index]
    assert "scopes" in report.first_bad["problem"]  # type: ignore[index]
    sql(a, "UPDATE api_keys SET scopes = :s WHERE id = :id", s='["decide"]', id=decide["id"])
    assert check(a).ok
    sql(a, "UPDATE api_keys SET expires_at = :t WHERE id = :id", t="2999-01-01", id=decide["id"])
    report = check(a)
    assert not report.ok and "expiry" in report.first_bad["problem"]  # type: ignore[index]


def keys_rows(a: Api) -> list[dict[str, Any]]:
    with stores(a).db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT id, name FROM api_keys"))]


async def test_a_checkpoint_edited_in_the_directory_is_refused(audited: tuple[Api, Any]) -> None:
    a, _ = audited
    folder = Path(a.app.state.settings.checkpoint_dir) / "checkpoints"
    note = next(folder.glob("*.txt"))
    note.chmod(0o644)
    lines = note.read_text().split("\n")
    lines[1] = str(int(lines[1]) - 3)  # claim a shorter log
    note.write_text("\n".join(lines))
    report = check(a)
    assert not report.ok and "signature does not verify" in report.first_bad["problem"]  # type: ignore[index]


async def test_cli_verify_names_the_record(
    audited: tuple[Api, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = audited
    settings = a.app.state.settings
    monkeypatch.setenv("ARBITER_DATABASE_URL", settings.database_url)
    from service.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    args = [
        "log",
        "verify",
        "--checkpoints",
        str(settings.checkpoint_dir),
        "--public-key",
        verifier_from(settings) or "",
    ]
    ok = runner.invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "log OK" in ok.output and "1 signed checkpoint(s) verified" in ok.output
    rows = shard_rows(a)
    rows[0].verdict = {**rows[0].verdict, "total_refund": "0.01"}
    rehash_from(a, rows, 0, "0" * 64)
    bad = runner.invoke(cli, args)
    assert bad.exit_code == 1 and rows[0].id in bad.output and "BROKEN" in bad.output
    wrong_key = runner.invoke(cli, [*args[:-1], verifier_from(settings).replace("+", "x", 1)])  # type: ignore[union-attr]
    assert wrong_key.exit_code != 0
    get_settings.cache_clear()


# --- proofs, checked with an independent RFC 6962 implementation -------------------


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _leaf(record_hash_hex: str) -> bytes:
    return _sha(b"\x00" + bytes.fromhex(record_hash_hex))


def _node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 6962 §2.1.1 read backwards: PATH(m, D[n]) ends with the top sibling."""
    if size == 1:
        assert not path
        return leaf
    k = _split(size)
    if index < k:
        return _node(root_from_path(index, k, leaf, path[:-1]), path[-1])
    return _node(path[-1], root_from_path(index - k, size - k, leaf, path[:-1]))


def roots_from_consistency(
    m: int, n: int, old_root: bytes, proof: list[bytes]
) -> tuple[bytes, bytes]:
    """RFC 6962 §2.1.2 SUBPROOF, undone from the outside in: (old root, new root)."""
    rest = list(proof)

    def sub(m: int, n: int, complete: bool) -> tuple[bytes, bytes]:
        if m == n:
            h = old_root if complete else rest.pop()
            return h, h
        k = _split(n)
        if m <= k:
            right = rest.pop()
            old, new = sub(m, k, complete)
            return old, _node(new, right)
        left = rest.pop()
        old, new = sub(m - k, n - k, False)
        return _node(left, old), _node(left, new)

    old, new = sub(m, n, True)
    assert not rest, "proof longer than needed"
    return old, new


def note_chain_root(note: str, chain: str, vkey: str) -> tuple[int, bytes]:
    """(size, root) of a chain in a signed note, after checking its Ed25519 signature."""
    name, _, b64key = vkey.split("+", 2)
    body, _, sig_lines = note.partition("\n\n")
    sig = base64.b64decode(sig_lines.split(" ")[2])[4:]
    Ed25519PublicKey.from_public_bytes(base64.b64decode(b64key)[1:]).verify(
        sig, (body + "\n").encode()
    )
    for line in body.split("\n"):
        parts = line.split(" ")
        if parts[0] == "chain" and parts[1] == chain:
            return int(parts[2]), base64.b64decode(parts[3])
    raise AssertionError(f"{chain} not in the note")


async def test_inclusion_and_consistency_proofs_verify_independently(
    audited: tuple[Api, Any],
) -> None:
    a, _ = audited
    vkey = verifier_from(a.app.state.settings) or ""
    ids = [r.id for r in stores(a).log.iter_rows()]
    for decision_id in ids:
        r = await a.client.get(f"/v1/decisions/{decision_id}/proof", headers=a.auth("audit"))
        assert r.status_code == 200, r.text
        p = r.json()
        size, root = note_chain_root(p["checkpoint"], p["chain"], vkey)
        assert size == p["tree_size"]
        path = [bytes.fromhex(h) for h in p["proof"]]
        assert root_from_path(p["index"], size, _leaf(p["record_hash"]), path) == root
        # and a wrong leaf does not verify
        assert root_from_path(p["index"], size, _leaf("00" * 32), path) != root
    # a second checkpoint after more decisions: consistent with the first, per chain
    first_note = next(iter(read_directory(Path(a.app.state.settings.checkpoint_dir)).notes))[0]
    for i in range(N, N + 7):
        data = contract("returns.request")
        data["order"]["id"] = f"ORD-{i}"
        assert (await a.decide("returns", data)).status_code == 200
    publish(a)
    notes = sorted(read_directory(Path(a.app.state.settings.checkpoint_dir)).notes)
    second_note = next(t for t, _ in notes if t != first_note)
    for chain in ("shard-1", "shard-2"):
        m, old_root = note_chain_root(first_note, chain, vkey)
        n, new_root = note_chain_root(second_note, chain, vkey)
        if m == 0 or m == n:
            continue
        r = await a.client.get(
            "/v1/audit/consistency",
            params={"chain": chain, "first": m, "second": n},
            headers=a.auth("audit"),
        )
        assert r.status_code == 200, r.text
        proof = [bytes.fromhex(h) for h in r.json()["proof"]]
        assert roots_from_consistency(m, n, old_root, proof) == (old_root, new_root)
    r = await a.client.get("/v1/audit/checkpoints", headers=a.auth("audit"))
    assert r.status_code == 200 and len(r.json()["checkpoints"]) == 2
    assert (
        await a.client.get("/v1/audit/checkpoints", headers=a.auth("decide"))
    ).status_code == 403


# --- export an auditor can re-verify -------------------------------------------------


def _cli_env(a: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import get_settings

    settings = a.app.state.settings
    monkeypatch.setenv("ARBITER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ARBITER_CHECKPOINT_PUBLIC_KEY", verifier_from(settings) or "")
    get_settings.cache_clear()


async def test_export_counts_and_reverifies_offline(
    audited: tuple[Api, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a, _ = audited
    _cli_env(a, monkeypatch)
    runner = CliRunner()
    cp = str(a.app.state.settings.checkpoint_dir)
    for fmt, pii in (("jsonl", True), ("jsonl", False), ("csv", False)):
        out = tmp_path / f"export-{pii}.{fmt}"
        args = ["log", "export", "--format", fmt, "--out", str(out)]
        r = runner.invoke(cli, [*args, "--pii"] if pii else args)
        assert r.exit_code == 0, r.output
        assert f"exported {N} record(s)" in r.output  # not N - 1
        lines = out.read_text().splitlines()
        assert len(lines) == N + (fmt == "csv")
        ok = runner.invoke(cli, ["log", "verify", "--export", str(out), "--checkpoints", cp])
        assert ok.exit_code == 0, ok.output
        assert f"exported file OK[/green]: {N}" in ok.output or f"{N} records verified" in ok.output
    # an edited unmasked export is named; so is a masked one whose hash was changed
    out = tmp_path / "export-True.jsonl"
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    recs[5]["verdict"] = {**recs[5]["verdict"], "total_refund": "1.00"}
    out.write_text("".join(json.dumps(x) + "\n" for x in recs))
    bad = runner.invoke(cli, ["log", "verify", "--export", str(out), "--checkpoints", cp])
    assert bad.exit_code == 1 and recs[5]["id"] in bad.output and "altered" in bad.output
    csv_file = tmp_path / "export-False.csv"
    rows = csv_file.read_text().splitlines()
    rows[3] = rows[3].replace(rows[3].split(",")[-1], "f" * 64)
    csv_file.write_text("\n".join(rows) + "\n")
    bad = runner.invoke(cli, ["log", "verify", "--export", str(csv_file), "--checkpoints", cp])
    assert bad.exit_code == 1 and "published as" in bad.output
    # an empty range: a header, and "exported 0"
    empty = tmp_path / "empty.csv"
    r = runner.invoke(
        cli, ["log", "export", "--format", "csv", "--since", "2999-01-01", "--out", str(empty)]
    )
    assert r.exit_code == 0 and "exported 0 record(s)" in r.output
    assert empty.read_text().splitlines() == [empty.read_text().splitlines()[0]]
    assert empty.read_text().startswith("seq,shard,id,")
    from service.settings import get_settings

    get_settings.cache_clear()


async def test_export_includes_chain_fields_shadow_and_neutralises_formulas(
    audited: tuple[Api, Any],
) -> None:
    a, _ = audited
    log = stores(a).log
    rows = list(log.iter_rows())
    sql(a, "UPDATE decisions SET rationale = :r WHERE id = :id", r="=HYPERLINK(1)", id=rows[0].id)
    sql(a, "UPDATE decisions SET shadow_of = :s WHERE id = :id", s=rows[0].id, id=rows[1].id)
    import csv
    import io

    # the rationale may quote the customer: masked without audit:pii, neutralised with it
    r = await a.client.get("/v1/audit/export", params={"format": "csv"}, headers=a.auth("audit"))
    assert list(csv.DictReader(io.StringIO(r.text)))[0]["rationale"] == "[masked]"
    pii = a.auth("audit:pii")
    r = await a.client.get("/v1/audit/export", params={"format": "csv"}, headers=pii)
    got = list(csv.DictReader(io.StringIO(r.text)))
    assert len(got) == N - 1  # the shadow record is left out by default
    assert got[0]["rationale"] == "'=HYPERLINK(1)"
    for rec, row in zip(got, [x for x in rows if x.id != rows[1].id], strict=True):
        assert (rec["seq"], rec["shard"], rec["prev_hash"], rec["hash"]) == (
            str(row.seq),
            str(row.shard),
            row.prev_hash,
            row.hash,
        )
    r = await a.client.get(
        "/v1/audit/export",
        params={"format": "csv", "include_shadow": "true"},
        headers=a.auth("audit"),
    )
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == N
    for cell in ("+1", "-1", "@SUM(A1)", "\tx"):
        from service.audit import csv_cell

        assert csv_cell(cell) == "'" + cell
    assert csv_cell("ok") == "ok" and csv_cell(-1) == -1


# --- publishing: periodically, on demand, and the key ---------------------------------


async def test_the_service_publishes_checkpoints_while_the_log_grows(
    api_factory: Callable[..., Any], tmp_path: Path
) -> None:
    a, cm = await api_factory(
        checkpoint_key=new_key_text(), checkpoint_dir=tmp_path / "cp", checkpoint_interval_s=0.1
    )
    try:
        assert (await a.decide("returns", contract("returns.request"))).status_code == 200
        notes: list[Any] = []
        for _ in range(100):
            await asyncio.sleep(0.05)
            notes = read_directory(tmp_path / "cp").notes
            if any("\nchain shard-1 1 " in t for t, _ in notes):
                break
        assert any("\nchain shard-1 1 " in t for t, _ in notes), notes
        assert check(a).ok
    finally:
        await a.client.aclose()
        await cm.__aexit__(None, None, None)


def test_cli_keygen_and_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import get_settings

    runner = CliRunner()
    key = tmp_path / "checkpoint.key"
    made = runner.invoke(cli, ["log", "keygen", "--out", str(key)])
    assert made.exit_code == 0, made.output
    vkey = made.stdout.strip().splitlines()[0]
    assert vkey.startswith("arbiter+") and oct(key.stat().st_mode)[-3:] == "600"
    assert runner.invoke(cli, ["log", "keygen", "--out", str(key)]).exit_code == 2  # kept
    monkeypatch.setenv("ARBITER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ARBITER_CHECKPOINT_KEY_FILE", str(key))
    get_settings.cache_clear()
    try:
        assert runner.invoke(cli, ["log", "checkpoint"]).exit_code == 2  # no directory yet
        monkeypatch.setenv("ARBITER_CHECKPOINT_DIR", str(tmp_path / "cp"))
        get_settings.cache_clear()
        from service.services import build_services

        build_services(get_settings(), engine=False).stores.close()  # migrate
        done = runner.invoke(cli, ["log", "checkpoint"])
        assert done.exit_code == 0 and "published" in done.output, done.output
        assert (tmp_path / "cp" / "verifier.key").read_text().strip() == vkey
        ok = runner.invoke(
            cli, ["log", "verify", "--checkpoints", str(tmp_path / "cp"), "--public-key", vkey]
        )
        assert ok.exit_code == 0 and "1 signed checkpoint(s) verified" in ok.output, ok.output
    finally:
        get_settings.cache_clear()
