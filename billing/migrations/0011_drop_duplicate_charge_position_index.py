"""One unique index on a charge's chain position, not two.

Migration 0006 added ``charge_chain_position_full`` (raw SQL, PostgreSQL only) as the
referent of the chain's foreign key ``charge_follows_previous``, beside the model's own
``charge_chain_position`` on the same four columns: every charge paid for two identical
unique indexes. The foreign key now refers to the model's constraint (PostgreSQL accepts
any unique constraint on the referenced columns) and the copy is dropped. The check is
the same; the exactly-once guarantee is the model's constraint, as before.
"""

from django.db import migrations

FORWARD = r"""
ALTER TABLE billing_charge DROP CONSTRAINT IF EXISTS charge_follows_previous;
ALTER TABLE billing_charge DROP CONSTRAINT IF EXISTS charge_chain_position_full;
ALTER TABLE billing_charge ADD CONSTRAINT charge_follows_previous
  FOREIGN KEY (lead_id, kind, chain, prev_seq)
  REFERENCES billing_charge (lead_id, kind, chain, seq);
"""

BACKWARD = r"""
ALTER TABLE billing_charge DROP CONSTRAINT IF EXISTS charge_follows_previous;
ALTER TABLE billing_charge ADD CONSTRAINT charge_chain_position_full
  UNIQUE (lead_id, kind, chain, seq);
ALTER TABLE billing_charge ADD CONSTRAINT charge_follows_previous
  FOREIGN KEY (lead_id, kind, chain, prev_seq)
  REFERENCES billing_charge (lead_id, kind, chain, seq);
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("billing", "0010_experiment_figures")]

    operations = [migrations.RunPython(forward, backward)]
