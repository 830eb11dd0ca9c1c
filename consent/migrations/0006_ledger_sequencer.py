"""The consent ledger is sequenced in batches behind one sequencer (consent.sequencer).

``LedgerEntry`` gets its own primary key (arrival order) and holds pending entries: ``seq``,
``canonical`` and ``leaf_hash`` are NULL until the sequencer sets them once, and ``body``
holds the content until then. Existing entries keep their seq, canonical text and leaf hash
(and get id = seq + 1), so every checkpoint signed before still verifies.

The table is rebuilt (new table, copy, rename) because its primary key changes; nothing
refers to it by foreign key.

PostgreSQL guards (SQLite, for development, has none: its test runner empties tables with
DELETE, which row triggers would refuse):

- an entry is inserted pending (no seq, canonical or leaf hash): only the sequencer assigns
  positions;
- it is never deleted, and the only UPDATE allowed is the sequencer's, once: NULL seq to a
  value, canonical = the pending body with ``,"seq":N`` before its closing brace (``seq``
  sorts last in canonical JSON), leaf_hash = SHA-256(0x00 || canonical) in hex, body
  cleared, nothing else changed. So the sequencer cannot alter content either;
- the head's size only grows, and the head row is never deleted.

Reversing refuses while entries are pending: sequence them first (``sequence_ledger``).
"""

from typing import Any

from django.db import migrations, models

GUARDS = r"""
CREATE OR REPLACE FUNCTION consent_ledgerentry_guard() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.seq IS NOT NULL OR NEW.canonical IS NOT NULL OR NEW.leaf_hash IS NOT NULL THEN
      RAISE EXCEPTION 'consent ledger entries are appended pending; only the sequencer assigns seq';
    END IF;
    RETURN NEW;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'the consent ledger is append-only';
  END IF;
  IF OLD.seq IS NULL AND NEW.seq IS NOT NULL AND NEW.seq >= 0
     AND NEW.id = OLD.id AND NEW.kind = OLD.kind AND NEW.created_at = OLD.created_at
     AND OLD.canonical IS NULL AND OLD.leaf_hash IS NULL AND NEW.body IS NULL
     AND NEW.canonical = left(OLD.body, -1) || ',"seq":' || NEW.seq::text || '}'
     AND NEW.leaf_hash = encode(sha256('\x00'::bytea || convert_to(NEW.canonical, 'UTF8')), 'hex')
  THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'the consent ledger is append-only (only sequencing a pending entry, '
    'once, may change it)';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER consent_ledgerentry_guard BEFORE INSERT OR UPDATE OR DELETE
  ON consent_ledgerentry FOR EACH ROW EXECUTE FUNCTION consent_ledgerentry_guard();

CREATE OR REPLACE FUNCTION consent_ledgerhead_guard() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.size < OLD.size THEN
    RAISE EXCEPTION 'the consent ledger head only grows';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER consent_ledgerhead_guard BEFORE UPDATE OR DELETE
  ON consent_ledgerhead FOR EACH ROW EXECUTE FUNCTION consent_ledgerhead_guard();
"""

DROP_GUARDS = r"""
DROP TRIGGER IF EXISTS consent_ledgerentry_guard ON consent_ledgerentry;
DROP TRIGGER IF EXISTS consent_ledgerhead_guard ON consent_ledgerhead;
DROP FUNCTION IF EXISTS consent_ledgerentry_guard();
DROP FUNCTION IF EXISTS consent_ledgerhead_guard();
"""


def _on_postgresql(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


def copy_forward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO consent_ledgerentrynew (id, seq, kind, body, canonical, leaf_hash, "
            "created_at) SELECT seq + 1, seq, kind, NULL, canonical, leaf_hash, created_at "
            "FROM consent_ledgerentry"
        )
        if schema_editor.connection.vendor == "postgresql":
            # Rows were inserted with explicit ids: start the identity after them.
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('consent_ledgerentrynew', 'id'), "
                "COALESCE(MAX(id), 0) + 1, false) FROM consent_ledgerentrynew"
            )


def copy_backward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM consent_ledgerentrynew WHERE seq IS NULL")
        (pending,) = cursor.fetchone()
        if pending:
            raise RuntimeError(
                f"{pending} consent ledger entries are pending: run manage.py sequence_ledger "
                "before reversing this migration"
            )
        cursor.execute(
            "INSERT INTO consent_ledgerentry (seq, kind, canonical, leaf_hash, created_at) "
            "SELECT seq, kind, canonical, leaf_hash, created_at FROM consent_ledgerentrynew"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0005_subject_key_mode"),
    ]

    operations = [
        migrations.CreateModel(
            name="LedgerEntryNew",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(blank=True, null=True)),
                ("kind", models.CharField(max_length=32)),
                ("body", models.TextField(blank=True, null=True)),
                ("canonical", models.TextField(blank=True, null=True)),
                ("leaf_hash", models.CharField(blank=True, max_length=64, null=True)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "verbose_name_plural": "ledger entries",
                "ordering": ["seq"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("seq__isnull", True)),
                        fields=["id"],
                        name="ledger_entry_pending",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("seq",), name="ledger_entry_seq_unique"),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("body__isnull", False),
                                ("canonical__isnull", True),
                                ("leaf_hash__isnull", True),
                                ("seq__isnull", True),
                            ),
                            models.Q(
                                ("body__isnull", True),
                                ("canonical__isnull", False),
                                ("leaf_hash__isnull", False),
                                ("seq__gte", 0),
                                ("seq__isnull", False),
                            ),
                            _connector="OR",
                        ),
                        name="ledger_entry_pending_or_sequenced",
                    ),
                ],
            },
        ),
        migrations.RunPython(copy_forward, copy_backward),
        migrations.DeleteModel(name="LedgerEntry"),
        migrations.RenameModel(old_name="LedgerEntryNew", new_name="LedgerEntry"),
        migrations.RunPython(_on_postgresql(GUARDS), _on_postgresql(DROP_GUARDS)),
    ]
