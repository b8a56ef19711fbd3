"""Several workers starting on a new database store the same spec version at once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlmodel import Session

from service.log.db import Database
from service.log.models import SpecVersionRow
from service.log.spec_versions import SpecVersionStore

TEXT = "# Returns policy\n"
ARGS: dict[str, Any] = {
    "sha256": hashlib.sha256(TEXT.encode()).hexdigest(),
    "kind": "returns",
    "name": "returns",
    "version": "1",
    "rollout": "active",
    "text": TEXT,
    "parameters": {},
    "effective_from": None,
}


def test_a_version_another_process_stored_meanwhile_is_not_an_error(tmp_path: Path) -> None:
    db = Database(url=f"sqlite:///{tmp_path / 'race.db'}")
    db.migrate()
    SpecVersionStore(db=db).record(**ARGS)  # the other worker, a moment earlier

    real = db.session

    def missed_the_other_insert(**kwargs: Any) -> Session:
        """A session whose first look finds nothing: the other insert was not yet visible."""
        s = real(**kwargs)
        looked, misses = s.get, [None]

        def get(*args: Any, **kw: Any) -> Any:
            return misses.pop() if misses else looked(*args, **kw)

        s.get = get  # type: ignore[method-assign]
        return s

    db.session = missed_the_other_insert  # type: ignore[method-assign]
    SpecVersionStore(db=db).record(**ARGS)  # before the fix: IntegrityError (a crash at start)
    db.session = real  # type: ignore[method-assign]
    with db.session() as s:
        row = s.get(SpecVersionRow, ARGS["sha256"])
        assert row is not None and row.text == TEXT
