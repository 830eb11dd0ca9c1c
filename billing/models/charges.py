"""The append-only charge ledger (a correction is a new row, never an update), fees
waiting for their lead's outcome, and the operator's review of a disputed return.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Mod
from django.db.models.lookups import Exact

from billing.models.columns import _money
from billing.models.fees import ExchangeRate, FeeSchedule
from marketplace.models import Lead, LeadEvent
from partners.currencies import Currency
from partners.models import Partner, Product


class FeeKind(models.TextChoices):
    CPL = "cpl", "Per accepted lead"
    CPA = "cpa", "Per approval"
    CPF = "cpf", "Share of funded principal"
    # One per revenue event (several per lead: one per period the partner reports).
    REVSHARE = "revshare", "Revenue share"


class EntryType(models.TextChoices):
    CHARGE = "charge", "Charge"
    CREDIT = "credit", "Credit (return)"
    REVERSAL = "reversal", "Reversal by the partner"
    # The unit's price changed (marginal tiers renumbered by event time when a month is
    # invoiced); a new charge at the new price follows it at once.
    REPRICE = "reprice", "Repriced"


CORRECTIONS = [EntryType.CREDIT, EntryType.REVERSAL, EntryType.REPRICE]


class ReturnReason(models.TextChoices):
    """Reason codes a partner may give for a return (as boberdoo and Lead Prosper use)."""

    DUPLICATE = "duplicate", "Duplicate"
    INVALID_CONTACT = "invalid_contact", "Invalid contact details"
    FRAUD_SUSPECTED = "fraud_suspected", "Fraud suspected"
    NOT_INTERESTED = "not_interested", "Applicant not interested"
    OUT_OF_CRITERIA = "out_of_criteria", "Outside the credit box"
    OTHER = "other", "Other"


class Charge(models.Model):
    """One line of the append-only charge ledger. Corrections are new rows, never edits:
    a return makes a ``credit``, a partner's reversal a ``reversal``, a price change a
    ``reprice``, each the exact negative of the charge it ``corrects``.

    The entries of one *chain* (a lead's fee kind; for revenue share a lead's revenue
    period) form a sequence charge, correction, charge, ... numbered by ``seq`` from 1:
    odd is a charge, even corrects the charge just before it. So a chain's net is 0 or 1
    unit, and the database says so (unique seq per chain, parity, and on PostgreSQL a
    foreign key from every ``seq`` > 1 to ``seq`` - 1 of its chain)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="charges")
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="charges")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey(LeadEvent, on_delete=models.PROTECT, related_name="charges")
    # NULL only for an auction lead's CPL priced by its bid with no schedule in force.
    schedule = models.ForeignKey(
        FeeSchedule, null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    # "" for CPL, CPA and CPF (one chain per lead and kind); the revenue period "YYYY-MM"
    # for revenue share (one chain per lead and period).
    chain = models.CharField(max_length=7, blank=True, default="")
    # Position in the chain, from 1: odd = charge, even = correction of seq - 1.
    seq = models.PositiveIntegerField()
    # seq - 1 (NULL for 1): the target of the chain's foreign key on PostgreSQL.
    prev_seq = models.PositiveIntegerField(null=True, blank=True)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    # Positive for charges, negative for corrections; rounded to cents.
    amount = _money()
    currency = models.CharField(max_length=3, choices=Currency.choices)
    # The unit's number in the partner's month for marginal tiers (NULL: not tiered).
    unit_number = models.PositiveIntegerField(null=True, blank=True)
    # The amount the partner reported (principal, revenue) or bid, in its own currency,
    # when it differs from ``currency``: converted by ``exchange_rate`` (its ``fx_rate``
    # copied here) before pricing. NULL when no conversion was needed.
    source_amount = _money(null=True, blank=True)
    source_currency = models.CharField(max_length=3, blank=True, choices=Currency.choices)
    fx_rate = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    exchange_rate = models.ForeignKey(
        ExchangeRate, null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    occurred_at = models.DateTimeField(db_index=True)  # the event's time: prices and periods
    # The charge a credit or reversal offsets (NULL for charges).
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections"
    )
    # A credit's return reason code (ReturnReason); empty otherwise.
    reason = models.CharField(max_length=20, blank=True, choices=ReturnReason.choices)
    # The billing month (first day) whose invoice bills this entry: the event's month, or
    # the partner's first month not yet invoiced when that one was (a late event). Set on
    # insert under the partner's billing lock, so invoicing never updates ledger rows.
    period = models.DateField()
    # A correction of a charge on an issued invoice is billed by a credit note instead.
    credit_note = models.ForeignKey(
        "CreditNote", null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Exactly once: one entry per position of a chain (two writers racing for the
            # same position: one wins, the other re-reads the chain).
            models.UniqueConstraint(
                fields=["lead", "kind", "chain", "seq"], name="charge_chain_position"
            ),
            models.CheckConstraint(
                condition=(Q(seq=1) & Q(prev_seq__isnull=True))
                | (Q(seq__gt=1) & Q(prev_seq=F("seq") - 1)),
                name="charge_chain_follows",
            ),
            # Charges at odd positions, non-negative; corrections at even ones,
            # non-positive, naming the charge they correct.
            models.CheckConstraint(
                condition=(
                    Q(entry_type="charge")
                    & Q(amount__gte=0)
                    & Q(corrects__isnull=True)
                    & Exact(Mod(F("seq"), 2), 1)
                )
                | (
                    Q(entry_type__in=["credit", "reversal", "reprice"])
                    & Q(amount__lte=0)
                    & Q(corrects__isnull=False)
                    & Exact(Mod(F("seq"), 2), 0)
                ),
                name="charge_sign_matches_type",
            ),
            models.CheckConstraint(
                condition=(
                    Q(source_amount__isnull=True)
                    & Q(fx_rate__isnull=True)
                    & Q(exchange_rate__isnull=True)
                    & Q(source_currency="")
                )
                | (
                    Q(source_amount__isnull=False)
                    & Q(fx_rate__gt=0)
                    & Q(exchange_rate__isnull=False)
                    & ~Q(source_currency="")
                    & ~Q(source_currency=F("currency"))
                ),
                name="charge_conversion_recorded",
            ),
            models.CheckConstraint(
                condition=Q(kind="revshare") | Q(chain=""), name="charge_chain_key"
            ),
        ]
        indexes = [
            # Invoicing aggregates a partner's months from this index alone (index-only).
            models.Index(
                fields=["partner", "currency", "period"],
                include=["product", "kind", "entry_type", "amount", "credit_note"],
                name="charge_billing_period",
            )
        ]

    def __str__(self) -> str:
        return (
            f"{EntryType(self.entry_type).label}: {FeeKind(self.kind).label} "
            f"{self.currency} {self.amount} (#{self.seq})"
        )


class PendingFee(models.Model):
    """A fee that is due but cannot be booked yet: the amount it is priced from (a
    principal, a revenue, a bid) is in another currency than the schedule and no
    exchange rate is in force at the event's time. Visible in the admin ("needs rate");
    invoices of the partner covering its month are not issued while it is open. Entering
    a rate and running the catch-up charger books it and sets ``resolved_at``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey(LeadEvent, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    from_currency = models.CharField(max_length=3, choices=Currency.choices)
    to_currency = models.CharField(max_length=3, choices=Currency.choices)
    occurred_at = models.DateTimeField()  # the event's: the rate must be in force then
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "kind"],
                condition=Q(resolved_at__isnull=True),
                name="pending_fee_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} needs a {self.from_currency}->{self.to_currency} rate"


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ReturnReview(models.Model):
    """A return that waits for finance: the partner was over its return-rate cap, or gave
    a reason code we do not know. Credited only once approved."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="+")
    event = models.OneToOneField(LeadEvent, on_delete=models.PROTECT, related_name="+")
    reason_code = models.CharField(max_length=80)  # as the partner sent it
    # The partner's return rate over the window when it returned this lead (0.2000 = 20%).
    return_rate = models.DecimalField(max_digits=5, decimal_places=4)
    why = models.CharField(max_length=200)
    status = models.CharField(
        max_length=8, choices=ReviewStatus.choices, default=ReviewStatus.PENDING
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Return of lead {self.lead_id} ({self.status})"
