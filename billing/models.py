"""Fee schedules, the append-only charge ledger, invoices, credit notes and payments.

Money is ``DecimalField(max_digits=13, decimal_places=2)`` plus a currency; every amount
is rounded once, by ``billing.money.to_cents`` (ROUND_HALF_UP to 0.01). State changes live
in the service modules (``fees``, ``charging``, ``returns``, ``invoicing``, ``payments``),
never in ``save()``; the models only guard what must never happen (editing an issued
invoice) and the database enforces signs and exactly-once by constraints.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Mod, Round
from django.db.models.lookups import Exact

from marketplace.models import Lead, LeadEvent
from partners.currencies import Currency as Currency  # we bill in the ones we accept
from partners.models import Partner, Product


def _money(**kwargs: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=13, decimal_places=2, **kwargs)


def _adds_up(prefix: str) -> models.CheckConstraint:
    # Compared to the cent: SQLite stores decimals as binary floats, where
    # 8.54 + 0.51 != 9.05; on PostgreSQL (exact numeric) this is plain equality.
    return models.CheckConstraint(
        condition=Exact(Round(F("total") - F("subtotal") - F("tax"), 2), 0),
        name=f"{prefix}_total_adds_up",
    )


class FeeSchedule(models.Model):
    """What a partner pays, optionally for one product, over a span of time. Versioned:
    a change is a new schedule (the old one closed by ``effective_to``), never an edit of
    one that priced charges. Created through ``billing.fees.create_fee_schedule``, which
    refuses overlapping spans in one scope."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="fee_schedules")
    # NULL: applies to all the partner's products without a schedule of their own.
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="fee_schedules"
    )
    # 1, 2, ... per scope (partner + product, or partner-wide), in order of creation.
    version = models.PositiveIntegerField(default=1)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.CNY)
    # Per accepted lead (CPL); an auction lead pays its winning bid instead.
    cpl = _money(default=0)
    # Per approved loan (CPA).
    cpa = _money(default=0)
    # Fraction of funded principal (CPF), 0.0300 = 3%, clamped to [cpf_min, cpf_max] per loan.
    cpf_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    cpf_min = _money(default=0)
    cpf_max = _money(null=True, blank=True)
    # Revenue share: fraction of the revenue a partner reports on a funded loan (a
    # ``revenue`` event: interest and fees collected in a period), 0.1000 = 10%, per event,
    # rounded to cents; no minimum, maximum or volume tiers. 0: no revenue share.
    revshare_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)  # exclusive; NULL: open-ended
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(cpl__gte=0)
                & Q(cpa__gte=0)
                & Q(cpf_rate__gte=0)
                & Q(cpf_rate__lte=1)
                & Q(cpf_min__gte=0),
                name="fee_schedule_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(revshare_rate__gte=0) & Q(revshare_rate__lte=1),
                name="fee_schedule_revshare_rate",
            ),
            models.CheckConstraint(
                condition=Q(cpf_max__isnull=True) | Q(cpf_max__gte=F("cpf_min")),
                name="fee_schedule_cpf_bounds",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="fee_schedule_span",
            ),
            models.CheckConstraint(
                condition=Q(currency__in=Currency.values), name="fee_schedule_known_currency"
            ),
        ]

    def __str__(self) -> str:
        scope = self.product.name if self.product else "all products"
        return f"{self.partner.name} ({scope}) v{self.version} from {self.effective_from:%Y-%m-%d}"


class FeeTier(models.Model):
    """A volume tier, **marginal**: it prices only the units of a fee kind beyond
    ``from_count`` in a calendar month (UTC); earlier units keep their price. A NULL fee
    keeps the schedule's (or the lower tier's) price for that kind."""

    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="tiers")
    # Units of the month already charged before this tier starts (100: from the 101st).
    from_count = models.PositiveIntegerField()
    cpl = _money(null=True, blank=True)  # per accepted lead beyond the threshold
    cpa = _money(null=True, blank=True)  # per approval beyond the threshold
    cpf_rate = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["schedule", "from_count"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "from_count"], name="fee_tier_once"),
            models.CheckConstraint(
                condition=Q(from_count__gte=1)
                & (Q(cpl__isnull=True) | Q(cpl__gte=0))
                & (Q(cpa__isnull=True) | Q(cpa__gte=0))
                & (Q(cpf_rate__isnull=True) | (Q(cpf_rate__gte=0) & Q(cpf_rate__lte=1))),
                name="fee_tier_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"beyond {self.from_count} a month"


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


class ExchangeRate(models.Model):
    """A dated exchange rate finance entered: one unit of ``from_currency`` is ``rate``
    units of ``to_currency``. Only the entered direction is used (no silent inversion).
    In force at time t: the pair's latest ``effective_from`` <= t. Never edited: a
    correction is a new row; charges record the row and the rate they used."""

    from_currency = models.CharField(max_length=3, choices=Currency.choices)
    to_currency = models.CharField(max_length=3, choices=Currency.choices)
    rate = models.DecimalField(max_digits=18, decimal_places=8)  # to per one from, > 0
    effective_from = models.DateTimeField()
    # Where the number comes from (e.g. "PBOC central parity 2026-11-02"): auditors ask.
    source = models.CharField(max_length=200)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_from", "from_currency", "to_currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["from_currency", "to_currency", "effective_from"],
                name="exchange_rate_once_per_time",
            ),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(
                condition=~Q(from_currency=F("to_currency")), name="exchange_rate_two_currencies"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"1 {self.from_currency} = {self.rate.normalize():f} {self.to_currency} "
            f"from {self.effective_from:%Y-%m-%d %H:%M}"
        )


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


class PartnerBillingProfile(models.Model):
    """Per-partner billing terms; a partner without one gets the settings' defaults."""

    partner = models.OneToOneField(
        Partner, primary_key=True, on_delete=models.CASCADE, related_name="billing_profile"
    )
    # Returns above this share of the partner's leads over 30 days wait for approval;
    # NULL: settings.RETURN_RATE_CAP (0.15).
    return_rate_cap = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    # Routing pauses while outstanding (open invoices + uninvoiced charges) exceeds it;
    # NULL: no limit.
    credit_limit = _money(null=True, blank=True)
    credit_limit_currency = models.CharField(
        max_length=3, choices=Currency.choices, default=Currency.CNY
    )
    # Due date = issue date + this many days.
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    # The last billing month invoiced; later charges of earlier months go to the next one.
    # This row is the partner's billing lock: charging shares it, invoicing holds it.
    invoiced_through = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(return_rate_cap__isnull=True) | Q(return_rate_cap__gte=0))
                & (Q(credit_limit__isnull=True) | Q(credit_limit__gte=0)),
                name="billing_profile_non_negative",
            )
        ]

    def __str__(self) -> str:
        return f"Billing terms of {self.partner}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PARTLY_PAID = "partly_paid", "Partly paid"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class IssuedInvoiceError(Exception):
    """An attempt to edit or delete an invoice (or its lines) after it was issued."""


# What may still change on an issued invoice: its payment status and voiding.
MUTABLE_AFTER_ISSUE = {"status", "voided_at", "void_reason"}


class InvoiceQuerySet(models.QuerySet["Invoice"]):
    def update(self, **kwargs: Any) -> int:
        if set(kwargs) - MUTABLE_AFTER_ISSUE and self.exclude(status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("an issued invoice cannot be edited: issue a credit note")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.exclude(status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("an issued invoice cannot be deleted: void it")
        return super().delete()


class Invoice(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3, choices=Currency.choices)
    period_start = models.DateField()  # first day of the billed month
    # Earliest billing month it covers (earlier months left open are billed with it):
    # its charges are the partner's in this currency with first_period <= period <= start.
    first_period = models.DateField()
    status = models.CharField(
        max_length=12, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    # Gapless per year, e.g. INV-2026-000123; assigned when issued.
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    subtotal = _money()  # sum of lines
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)  # VAT, 0.0600 = 6%
    tax = _money()  # to_cents(subtotal * rate)
    total = _money()  # subtotal + tax
    # The partner's legal name and address as they were when issued (the document is fixed).
    bill_to = models.TextField(blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)  # issued + payment terms
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        constraints = [
            # One invoice per partner, currency and month: concurrent runs make one.
            models.UniqueConstraint(
                fields=["partner", "currency", "period_start"],
                condition=~Q(status="void"),
                name="invoice_once_per_period",
            ),
            _adds_up("invoice"),
            models.CheckConstraint(
                condition=Q(status="draft")
                | (Q(number__isnull=False) & Q(issued_at__isnull=False)),
                name="invoice_issued_has_number",
            ),
        ]
        ordering = ["-period_start", "partner__name"]

    def __str__(self) -> str:
        return self.number or f"Draft {self.partner.name} {self.period_start:%Y-%m}"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.status != InvoiceStatus.DRAFT:
            raise IssuedInvoiceError("an issued invoice cannot be deleted: void it")
        return super().delete(*args, **kwargs)


class InvoiceLineQuerySet(models.QuerySet["InvoiceLine"]):
    def _guard(self) -> None:
        if self.exclude(invoice__status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("lines of an issued invoice cannot change")

    def update(self, **kwargs: Any) -> int:
        self._guard()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._guard()
        return super().delete()


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    amount = _money()  # sum of its charges (negative for returns and reversals)

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["product__name", "kind", "entry_type"]

    def __str__(self) -> str:
        return self.description


class InvoiceSequence(models.Model):
    """Last invoice number issued per year; locked while issuing so numbers stay gapless."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class CreditNoteSequence(models.Model):
    """Last credit-note number per year (CN-YYYY-NNNNNN), gapless like invoices."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class CreditNoteKind(models.TextChoices):
    VOID = "void", "Invoice voided in full"
    CORRECTIONS = "corrections", "Returns and reversals of invoiced charges"


class CreditNote(models.Model):
    """A correction of an issued invoice; issued (numbered) when made, never edited.
    Amounts are what the partner is credited: positive reduces what it owes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    kind = models.CharField(max_length=12, choices=CreditNoteKind.choices)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    number = models.CharField(max_length=20, unique=True)  # CN-2026-000001, gapless per year
    reason = models.CharField(max_length=200)
    subtotal = _money()  # sum of lines, credited
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)  # the invoice's VAT rate
    tax = _money()  # to_cents(subtotal * rate)
    total = _money()  # subtotal + tax, credited
    issued_at = models.DateTimeField()

    class Meta:
        constraints = [_adds_up("credit_note")]
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    amount = _money()  # credited: positive reduces what the partner owes

    class Meta:
        ordering = ["product__name", "kind", "entry_type"]

    def __str__(self) -> str:
        return self.description


class Payment(models.Model):
    """A bank transfer received from a partner. Recording the same bank reference again
    is a no-op (unique per partner)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="payments")
    currency = models.CharField(max_length=3, choices=Currency.choices)
    amount = _money()  # received, > 0
    received_at = models.DateTimeField()
    bank_reference = models.CharField(max_length=80)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "bank_reference"], name="payment_once_per_reference"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.bank_reference} {self.currency} {self.amount}"


class PaymentAllocation(models.Model):
    """Part of a payment applied to one invoice; sums are checked under row locks."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount = _money()  # applied, > 0
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_positive")
        ]

    def __str__(self) -> str:
        return f"{self.amount} applied"


class IssueOverride(models.Model):
    """An invoice issued although reconciliation of its partner and months was not clean
    (``billing.invoicing.issue_invoice`` with an override): who decided, when, why, and the
    differences as they were listed then. Never edited."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="issue_override")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The acting user's username, or the operator named on the command line.
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    differences = models.JSONField(default=list)  # the refusal's list, as shown
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(actor="") & ~Q(reason=""), name="issue_override_who_and_why"
            )
        ]

    def __str__(self) -> str:
        return f"Override of {self.invoice}"
