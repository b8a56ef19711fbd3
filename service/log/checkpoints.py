"""Signed checkpoints of the log (the transparency-log pattern), published outside the
database, and the check of the database against every published checkpoint.

Each chain (the admin chain and every decision shard) is an RFC 6962 Merkle tree whose
leaves are SHA-256(0x00 || record hash). A checkpoint is a C2SP signed note:

    <origin>
    <total records>
    <base64 root over the chains>
    time <UTC ISO 8601>
    chain <name> <size> <base64 chain root> <head record hash>
    ...

    — <key name> <base64(key id || Ed25519 signature)>

The root on line 3 is the Merkle root over the leaves SHA-256(0x00 || "<name> <size>
<base64 chain root>") of the chain lines, in order. Publishing also writes the new leaves of
each chain (`leaves/<chain>/<from>-<to>.txt`, one `seq id hash` a line): the hashes only,
no content, so the check can name the exact record whose history changed.

The directory is append-only by convention: files are created exclusively, never
rewritten, so it can live on WORM / object-lock storage.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import select
from sqlmodel import SQLModel

from service.errors import ArbiterError, InvalidInput
from service.log import merkle
from service.log.chain import utc_iso
from service.log.heads import chain_name
from service.log.models import ADMIN_CHAIN, utcnow

ED25519 = 0x01
CHAIN_LINE = re.compile(r"^chain (\S+) (\d+) (\S+) ([0-9a-f]{64})$")


class CheckpointError(ArbiterError):
    status = 503
    code = "checkpoint_unavailable"


class Signer(Protocol):
    """What signs checkpoints: a key file here, or a KMS (sign the bytes, return 64 bytes)."""

    name: str

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes: ...


def key_id(name: str, public: bytes) -> bytes:
    """The C2SP note key id: the first 4 bytes of SHA-256(name || \\n || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    """The verifier key an auditor pins: `<name>+<hex key id>+<base64(0x01 || key)>`."""
    return (
        f"{name}+{key_id(name, public).hex()}+"
        + base64.b64encode(bytes([ED25519]) + public).decode()
    )


def parse_vkey(text: str) -> tuple[str, bytes]:
    """(name, raw public key) of a verifier key; InvalidInput when malformed."""
    try:
        name, kid, b64 = text.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
        if raw[0] != ED25519 or len(raw) != 33 or key_id(name, raw[1:]).hex() != kid:
            raise ValueError("not an Ed25519 verifier key")
    except (ValueError, IndexError) as exc:
        raise InvalidInput(f"not a checkpoint verifier key: {exc}") from exc
    return name, raw[1:]


@dataclass
class Ed25519Signer:
    """An Ed25519 private key from a PEM file or a base64 32-byte seed."""

    name: str
    key: Ed25519PrivateKey

    @classmethod
    def from_text(cls, name: str, text: str) -> Ed25519Signer:
        text = text.strip()
        try:
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_private_key(text.encode(), password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise ValueError("the PEM key is not Ed25519")
            else:
                key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
        except ValueError as exc:
            raise CheckpointError(f"the checkpoint key cannot be read: {exc}") from exc
        return cls(name=name, key=key)

    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def new_key_text() -> str:
    """A new private key as a base64 seed (for ARBITER_CHECKPOINT_KEY or its _FILE)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


@dataclass
class ChainState:
    name: str
    size: int
    root: bytes
    head: str

    def line(self) -> str:
        return f"chain {self.name} {self.size} {b64(self.root)} {self.head}"

    def leaf(self) -> bytes:
        return merkle.leaf_hash(f"{self.name} {self.size} {b64(self.root)}".encode())


@dataclass
class Checkpoint:
    origin: str
    time: str
    chains: list[ChainState]
    source: str = ""

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chains)

    @property
    def root(self) -> bytes:
        return merkle.root([c.leaf() for c in self.chains])

    def body(self) -> str:
        lines = [self.origin, str(self.size), b64(self.root), f"time {self.time}"]
        return "\n".join([*lines, *(c.line() for c in self.chains)]) + "\n"

    def chain(self, name: str) -> ChainState | None:
        return next((c for c in self.chains if c.name == name), None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign_note(body: str, signer: Signer) -> str:
    sig = signer.sign(body.encode())
    kid = key_id(signer.name, signer.public_key())
    return f"{body}\n\u2014 {signer.name} {b64(kid + sig)}\n"


def open_note(text: str, verifier: str, *, source: str = "") -> Checkpoint:
    """The checkpoint of a signed note, if the pinned key signed it; ValueError otherwise."""
    name, public = parse_vkey(verifier)
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise ValueError("not a signed note (no blank line before the signatures)")
    body += "\n"
    kid = key_id(name, public)
    for line in sigs.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        raw = base64.b64decode(parts[2])
        if raw[:4] != kid:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise ValueError("the signature does not verify: the note was altered") from None
        return parse_body(body, source=source)
    raise ValueError(f"no signature by the pinned key {name}")


def parse_body(body: str, *, source: str = "") -> Checkpoint:
    lines = body.rstrip("\n").split("\n")
    if len(lines) < 4 or not lines[3].startswith("time "):
        raise ValueError("not an Arbiter checkpoint")
    chains = []
    for line in lines[4:]:
        m = CHAIN_LINE.match(line)
        if m is None:
            raise ValueError(f"unreadable chain line {line!r}")
        chains.append(ChainState(m[1], int(m[2]), base64.b64decode(m[3]), m[4]))
    cp = Checkpoint(origin=lines[0], time=lines[3][5:], chains=chains, source=source)
    if str(cp.size) != lines[1] or b64(cp.root) != lines[2]:
        raise ValueError("its size or root does not match its chain lines")
    return cp


# -- making and publishing --

Leaf = tuple[int, str, str]  # (seq, record id, record hash)


def chain_leaves(db: Any, chain: int, *, upto_seq: int, count: int) -> list[Leaf]:
    """The first `count` leaves of a chain, up to its head's seq (a consistent prefix
    while others append)."""
    table = SQLModel.metadata.tables["admin_events" if chain == ADMIN_CHAIN else "decisions"]
    q = select(table.c.seq, table.c.id, table.c.hash).where(table.c.seq <= upto_seq)
    if chain != ADMIN_CHAIN:
        q = q.where(table.c.shard == chain)
    with db.engine.connect() as conn:
        rows = conn.execute(q.order_by(table.c.seq).limit(count)).all()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def leaf_of(record_hash: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(record_hash))


def make_checkpoint(
    db: Any, heads: dict[int, Any], *, origin: str
) -> tuple[Checkpoint, dict[str, list[Leaf]]]:
    """The checkpoint of every chain's current head, and each chain's leaves."""
    chains, leaves = [], {}
    for i, head in sorted(heads.items()):
        name = chain_name(i)
        got = chain_leaves(db, i, upto_seq=head.seq, count=head.count)
        leaves[name] = got
        root = merkle.root([leaf_of(h) for _, _, h in got])
        chains.append(ChainState(name, len(got), root, got[-1][2] if got else "0" * 64))
    return Checkpoint(origin=origin, time=utc_iso(utcnow()), chains=chains), leaves


def refuse_to_extend(pub: Published, verifier: str, leaves: dict[str, list[Leaf]]) -> None:
    """Never sign a history that the newest published checkpoint contradicts (a chain
    shorter than it was, or a different Merkle root at its size): that would bless a
    rewrite. CheckpointError names the chain; `arbiter log verify --checkpoints` the record."""
    cps, _ = opened(pub, verifier)
    if not cps:
        return
    last = cps[-1]
    for c in last.chains:
        got = leaves.get(c.name, [])
        if len(got) < c.size or merkle.root([leaf_of(h) for _, _, h in got[: c.size]]) != c.root:
            raise CheckpointError(
                f"not signing: {c.name} no longer matches the checkpoint of {last.time} (its "
                f"first {c.size} records changed, or it holds fewer): the log was rewritten; "
                "run `arbiter log verify --checkpoints` to name the record"
            )


def _create(path: Path, text: str) -> bool:
    """Write a new file; never rewrite one (False when it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return True


def published_upto(directory: Path, chain: str) -> int:
    """How many leaves of a chain the directory holds (the largest `to` of its files)."""
    folder = directory / "leaves" / chain
    ends = [int(p.stem.split("-")[1]) for p in folder.glob("*-*.txt")] if folder.is_dir() else []
    return max(ends, default=0)


def publish(directory: Path, note: str, cp: Checkpoint, leaves: dict[str, list[Leaf]]) -> Path:
    """Write the new leaves of each chain, then the signed note; returns the note's path."""
    for name, got in leaves.items():
        start = published_upto(directory, name)
        if start < len(got):
            body = "".join(f"{s} {i} {h}\n" for s, i, h in got[start:])
            _create(directory / "leaves" / name / f"{start:012d}-{len(got):012d}.txt", body)
    stamp = re.sub(r"[^0-9TZ]", "", cp.time)
    path = directory / "checkpoints" / f"{stamp}-{cp.size:012d}.txt"
    n = 0
    while not _create(path, note):
        n += 1
        path = path.with_name(f"{stamp}-{cp.size:012d}-{n}.txt")
    return path


# -- reading what was published --


@dataclass
class Published:
    """Signed notes (text, where) and the published leaves by chain and index."""

    notes: list[tuple[str, str]] = field(default_factory=list)
    leaves: dict[str, dict[int, Leaf]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add_leaves(self, chain: str, start: int, lines: Iterable[str], where: str) -> None:
        got = self.leaves.setdefault(chain, {})
        for i, line in enumerate(lines, start):
            seq, rid, h = line.split()
            leaf = (int(seq), rid, h)
            if got.setdefault(i, leaf) != leaf:
                self.problems.append(f"{where}: leaf {i} of {chain} differs from another file's")

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkpoints": [{"name": n, "note": t} for t, n in self.notes],
            "leaves": {
                c: [[i, *leaf] for i, leaf in sorted(got.items())] for c, got in self.leaves.items()
            },
        }


def read_directory(directory: Path) -> Published:
    pub = Published()
    if not directory.is_dir():
        raise InvalidInput(f"no checkpoint directory {directory}")
    for p in sorted((directory / "checkpoints").glob("*.txt")):
        pub.notes.append((p.read_text(encoding="utf-8"), str(p)))
    for folder in sorted((directory / "leaves").glob("*")):
        for p in sorted(folder.glob("*-*.txt")):
            start = int(p.stem.split("-")[0])
            pub.add_leaves(folder.name, start, p.read_text().splitlines(), str(p))
    return pub


def read_json(data: dict[str, Any], where: str) -> Published:
    """What GET /v1/audit/checkpoints?leaves=true answered."""
    pub = Published()
    for item in data.get("checkpoints", []):
        pub.notes.append((item["note"], f"{where} {item['name']}"))
    for chain, rows in (data.get("leaves") or {}).items():
        for i, seq, rid, h in rows:
            pub.add_leaves(chain, int(i), [f"{seq} {rid} {h}"], where)
    return pub


def read_source(source: str, *, api_key: str | None = None) -> Published:
    """A checkpoint directory, or the URL of an Arbiter's /v1/audit/checkpoints."""
    if source.startswith(("http://", "https://")):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        r = httpx.get(source, params={"leaves": "true"}, headers=headers, timeout=60)
        r.raise_for_status()
        return read_json(r.json(), source)
    return read_directory(Path(source))


def opened(pub: Published, verifier: str) -> tuple[list[Checkpoint], list[str]]:
    """The notes the pinned key signed, oldest first, and why the others were refused."""
    good, bad = [], list(pub.problems)
    for text, where in pub.notes:
        try:
            good.append(open_note(text, verifier, source=where))
        except ValueError as exc:
            bad.append(f"{where}: {exc}")
    good.sort(key=lambda c: (datetime.fromisoformat(c.time.replace("Z", "+00:00")), c.size))
    return good, bad


def dump(cp: Checkpoint) -> dict[str, Any]:
    return {
        "origin": cp.origin,
        "time": cp.time,
        "size": cp.size,
        "root": b64(cp.root),
        "chains": [
            {"name": c.name, "size": c.size, "root": b64(c.root), "head": c.head} for c in cp.chains
        ],
    }


# -- configuration --


def signer_from(settings: Any) -> Signer | None:
    """The configured signer: ARBITER_CHECKPOINT_SIGNER (`module:factory`, called with the
    settings, e.g. a KMS client), else the Ed25519 key of ARBITER_CHECKPOINT_KEY(_FILE)."""
    if settings.checkpoint_signer:
        module, _, attr = settings.checkpoint_signer.partition(":")
        signer: Signer = getattr(importlib.import_module(module), attr)(settings)
        return signer
    text = settings.checkpoint_signer_text()
    return None if not text else Ed25519Signer.from_text(settings.checkpoint_key_name, text)


def verifier_from(settings: Any, explicit: str | None = None) -> str | None:
    """The verifier key: given (a key or a file holding one), pinned in the settings, or
    (on the signing host only) derived from the signer."""
    if explicit:
        path = Path(explicit)
        return path.read_text().strip() if path.is_file() else explicit.strip()
    if settings.checkpoint_public_key:
        return str(settings.checkpoint_public_key).strip()
    signer = signer_from(settings)
    return None if signer is None else vkey(signer.name, signer.public_key())


def checkpoint_now(stores: Any, settings: Any) -> tuple[Path, Checkpoint]:
    """Sign the heads of every chain now and publish the checkpoint to the directory."""
    signer = signer_from(settings)
    if signer is None:
        raise CheckpointError(
            "no checkpoint key: set ARBITER_CHECKPOINT_KEY_FILE (create one with "
            "`arbiter log keygen`) or ARBITER_CHECKPOINT_SIGNER"
        )
    if settings.checkpoint_dir is None:
        raise CheckpointError("no checkpoint directory: set ARBITER_CHECKPOINT_DIR")
    cp, leaves = make_checkpoint(stores.db, stores.log.heads(), origin=settings.checkpoint_origin)
    directory = Path(settings.checkpoint_dir)
    if directory.is_dir():
        refuse_to_extend(read_directory(directory), vkey(signer.name, signer.public_key()), leaves)
    note = sign_note(cp.body(), signer)
    key_file = directory / "verifier.key"
    if not key_file.exists():
        _create(key_file, vkey(signer.name, signer.public_key()) + "\n")
    return publish(directory, note, cp, leaves), cp
