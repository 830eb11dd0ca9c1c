"""Database guards (PostgreSQL) for what must never happen, whatever code runs:

- an issued invoice's number, amounts, partner, period and dates never change, and it is
  never deleted; a void invoice stays void; lines of an issued invoice never change;
- credit notes and their lines never change or go away once written;
- the charge ledger is append-only: rows are never deleted, and the only update is
  assigning a correction to a credit note
  once (invoices find their charges by billing month, never by updating them).

SQLite (development) relies on the guards in billing.models' querysets: its test runner
empties tables with DELETE, which row triggers would refuse.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION billing_invoice_guard() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN
      RAISE EXCEPTION 'issued invoice % cannot be deleted: void it', OLD.number;
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.status = 'void' AND NEW.status <> 'void' THEN
    RAISE EXCEPTION 'void invoice % cannot be revived', OLD.number;
  END IF;
  IF OLD.status <> 'draft' AND (
       NEW.number IS DISTINCT FROM OLD.number OR NEW.subtotal <> OLD.subtotal
    OR NEW.tax <> OLD.tax OR NEW.total <> OLD.total OR NEW.tax_rate <> OLD.tax_rate
    OR NEW.partner_id <> OLD.partner_id OR NEW.currency <> OLD.currency
    OR NEW.period_start <> OLD.period_start
    OR NEW.first_period <> OLD.first_period OR NEW.bill_to <> OLD.bill_to
    OR NEW.issued_at IS DISTINCT FROM OLD.issued_at
    OR NEW.due_date IS DISTINCT FROM OLD.due_date) THEN
    RAISE EXCEPTION 'issued invoice % cannot be edited: issue a credit note', OLD.number;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoice_guard BEFORE UPDATE OR DELETE ON billing_invoice
  FOR EACH ROW EXECUTE FUNCTION billing_invoice_guard();

CREATE OR REPLACE FUNCTION billing_invoiceline_guard() RETURNS trigger AS $$
DECLARE
  invoice_id uuid;
BEGIN
  invoice_id := CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
  IF EXISTS (SELECT 1 FROM billing_invoice WHERE id = invoice_id AND status <> 'draft')
     OR (TG_OP = 'UPDATE' AND EXISTS (
       SELECT 1 FROM billing_invoice WHERE id = OLD.invoice_id AND status <> 'draft')) THEN
    RAISE EXCEPTION 'lines of an issued invoice cannot change';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_invoiceline_guard BEFORE INSERT OR UPDATE OR DELETE
  ON billing_invoiceline FOR EACH ROW EXECUTE FUNCTION billing_invoiceline_guard();

CREATE OR REPLACE FUNCTION billing_written_once() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% rows are written once and never changed', TG_TABLE_NAME;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_creditnote_guard BEFORE UPDATE OR DELETE ON billing_creditnote
  FOR EACH ROW EXECUTE FUNCTION billing_written_once();
CREATE TRIGGER billing_creditnoteline_guard BEFORE UPDATE OR DELETE ON billing_creditnoteline
  FOR EACH ROW EXECUTE FUNCTION billing_written_once();

CREATE OR REPLACE FUNCTION billing_charge_guard() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'the charge ledger is append-only';
  END IF;
  IF (NEW.id, NEW.partner_id, NEW.lead_id, NEW.product_id, NEW.event_id, NEW.kind,
      NEW.entry_type, NEW.amount, NEW.currency, NEW.occurred_at, NEW.created_at)
     IS DISTINCT FROM
     (OLD.id, OLD.partner_id, OLD.lead_id, OLD.product_id, OLD.event_id, OLD.kind,
      OLD.entry_type, OLD.amount, OLD.currency, OLD.occurred_at, OLD.created_at)
     OR NEW.schedule_id IS DISTINCT FROM OLD.schedule_id
     OR NEW.corrects_id IS DISTINCT FROM OLD.corrects_id
     OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.period IS DISTINCT FROM OLD.period
     OR (OLD.credit_note_id IS NOT NULL
         AND NEW.credit_note_id IS DISTINCT FROM OLD.credit_note_id) THEN
    RAISE EXCEPTION 'the charge ledger is append-only (only billing it once may change)';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER billing_charge_guard BEFORE UPDATE OR DELETE ON billing_charge
  FOR EACH ROW EXECUTE FUNCTION billing_charge_guard();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS billing_invoice_guard ON billing_invoice;
DROP TRIGGER IF EXISTS billing_invoiceline_guard ON billing_invoiceline;
DROP TRIGGER IF EXISTS billing_creditnote_guard ON billing_creditnote;
DROP TRIGGER IF EXISTS billing_creditnoteline_guard ON billing_creditnoteline;
DROP TRIGGER IF EXISTS billing_charge_guard ON billing_charge;
DROP FUNCTION IF EXISTS billing_invoice_guard();
DROP FUNCTION IF EXISTS billing_invoiceline_guard();
DROP FUNCTION IF EXISTS billing_written_once();
DROP FUNCTION IF EXISTS billing_charge_guard();
"""


def _run(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_ledger_corrections_credit_notes_payments")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
