"""Registry: the schema is pinned, migrations are recorded, writes are transactional."""

from pathlib import Path

import pytest

from storyengine.registry import MIGRATIONS, Registry, migrate

SCHEMA = Path(__file__).parent / "data" / "schema.sql"


def _schema(reg: Registry) -> str:
    rows = reg.db.execute(
        "select sql from sqlite_master where type in ('table','index') and name not like 'sqlite_%' order by name").fetchall()
    return ";\n".join(r[0] for r in rows) + ";\n"


def test_schema_is_pinned():
    """A schema change needs a new numbered migration and an updated tests/data/schema.sql."""
    assert _schema(Registry.memory()) == SCHEMA.read_text()


def test_migrations_are_numbered_and_recorded(ws):
    names = [m.__name__ for m in MIGRATIONS]
    assert names == sorted(names) and all(n[:1] == "m" and n[1:4].isdigit() for n in names)
    reg = Registry.open(ws)
    assert [r["name"] for r in reg.db["_migrations"].rows] == names
    assert migrate(reg.db) == []  # idempotent
    assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert reg.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_transaction_rolls_back_everything(reg):
    with pytest.raises(RuntimeError):
        with reg.transaction() as db:
            db["characters"].insert({"handle": "a", "name": "A", "kind": "person"})
            db["characters"].insert({"handle": "b", "name": "B", "kind": "person"})
            raise RuntimeError("boom")
    assert reg.characters() == []


def test_unknown_character_names_the_handle(reg):
    from storyengine.errors import RegistryError

    with pytest.raises(RegistryError, match=r"unknown character 'nobody' \(registered: none\)"):
        reg.character("nobody")
