"""The personal-data vault and the consent ledger.

Personal data lives only in ``Subject``'s ``*_enc`` columns, encrypted per field under a
per-subject data key that is itself wrapped by a master key. Nothing outside ``consent/``
reads those columns: the only way out is ``consent.gate.disclose``.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from partners.models import Partner, TrafficSource

PII_FIELDS = (
    "full_name",
    "phone",
    "national_id",
    "birth_date",
    "monthly_income",
    "employer",
    "address",
)


class Subject(models.Model):
    """One applicant in the vault. No column here is readable without the keys."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Id of the master key that wrapped data_key; rotation re-wraps under a new one.
    key_id = models.CharField(max_length=40)
    # nonce || AES-GCM(master, data key); NULL once erased (crypto-shredding).
    wrapped_key = models.BinaryField(null=True, editable=False)
    # Blind indexes: HMAC-SHA256(BLIND_INDEX_KEY, normalised value), for dedupe and lookup.
    national_id_index = models.CharField(max_length=64, db_index=True)
    phone_index = models.CharField(max_length=64, db_index=True)
    full_name_enc = models.BinaryField(editable=False)
    phone_enc = models.BinaryField(editable=False)
    national_id_enc = models.BinaryField(editable=False)
    birth_date_enc = models.BinaryField(editable=False)
    monthly_income_enc = models.BinaryField(editable=False)
    employer_enc = models.BinaryField(editable=False)
    address_enc = models.BinaryField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    # Who erased it (staff username or "manage.py"), and the SHA-256 of the reason they gave:
    # the reason is free text typed by staff and may name the person, so only its hash stays.
    erased_by = models.CharField(max_length=150, blank=True)
    erasure_reason_sha256 = models.CharField(max_length=64, blank=True)
    # Key mode is an isolation dimension (DESIGN.md): a person sent with a sandbox key is a
    # sandbox subject, a record apart from the same person's live one, so sandbox traffic
    # never refreshes live data, joins live dedupe windows or shares an erasure. A flag
    # (rather than mode-keyed blind indexes) keeps one index per number, so compliance
    # finds a person in both modes with one lookup and sees which mode each record is in.
    # Set once, from the key that sent the person's first referral in that mode.
    is_sandbox = models.BooleanField(default=False)

    class Meta:
        permissions = [
            ("reveal_subject", "Can reveal a subject's decrypted personal data (with a reason)"),
            ("erase_subject", "Can erase a subject (crypto-shredding)"),
        ]
        constraints = [
            # One vault record per person and mode while not erased; an erased person may
            # come back as new.
            models.UniqueConstraint(
                fields=["national_id_index", "is_sandbox"],
                condition=Q(erased_at__isnull=True),
                name="subject_unique_national_id_per_mode",
            )
        ]

    def __str__(self) -> str:
        return f"Subject {self.id}"


class KeyCanary(models.Model):
    """A known value under each master key: proves at start-up that the key is the right one."""

    key_id = models.CharField(max_length=40, unique=True)
    sealed = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)


class ConsentText(models.Model):
    """The exact wording shown to applicants. Immutable once published."""

    version = models.CharField(max_length=60, unique=True)
    language = models.CharField(max_length=16, default="zh-CN")
    jurisdiction = models.CharField(max_length=16, default="CN")
    title = models.CharField(max_length=200)
    body = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)  # of body, UTF-8
    purposes = models.JSONField(default=list)
    data_categories = models.JSONField(default=list)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.version} ({self.language})"


class GrantScope(models.TextChoices):
    MATCHED_PARTNERS = "matched_partners", "Partners matched for this application"
    NAMED_PARTNERS = "named_partners", "Named partners only"


class ConsentGrant(models.Model):
    """A subject's consent to share personal data; its id is the receipt id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="grants")
    source = models.ForeignKey(TrafficSource, on_delete=models.PROTECT, related_name="grants")
    text = models.ForeignKey(ConsentText, on_delete=models.PROTECT, related_name="grants")
    text_sha256 = models.CharField(max_length=64)
    scope = models.CharField(max_length=20, choices=GrantScope.choices)
    # Partners this grant lets us disclose to. Fixed at grant time for named scope; for
    # matched scope, routing adds the partners it matched before anything is disclosed.
    recipients = models.ManyToManyField(Partner, blank=True, related_name="consent_grants")
    purposes = models.JSONField(default=list)
    data_categories = models.JSONField(default=list)
    method = models.CharField(max_length=40)  # e.g. "checkbox", "e-signature"
    channel = models.CharField(max_length=40)  # e.g. "app", "web", "call_center"
    collected_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    expires_at = models.DateTimeField()
    # When the expiry was written to the ledger (once, by a scheduled sweep).
    expiry_logged_at = models.DateTimeField(null=True, blank=True)
    # Given through a sandbox key (with its referral): only sandbox keys reach the grant,
    # its withdrawal and the deletion requests it caused (partners.scoping).
    is_sandbox = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["subject", "created_at"]),
            models.Index(
                fields=["expires_at"],
                condition=models.Q(expiry_logged_at__isnull=True),
                name="grant_expiry_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"Consent {self.id}"


class ConsentWithdrawal(models.Model):
    """Withdrawal is a new record, never an edit of the grant (GDPR 7(3), PIPL 47)."""

    grant = models.OneToOneField(ConsentGrant, on_delete=models.PROTECT, related_name="withdrawal")
    withdrawn_at = models.DateTimeField()
    channel = models.CharField(max_length=40)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Withdrawal {self.pk} of consent {self.grant_id}"


class Disclosure(models.Model):
    """Every time personal data left the vault: to whom, which fields, under which consent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    grant = models.ForeignKey(ConsentGrant, on_delete=models.PROTECT, related_name="disclosures")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="disclosures")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="disclosures")
    fields = models.JSONField()
    purpose = models.CharField(max_length=60)
    reference = models.CharField(max_length=80)  # what it was for, e.g. "lead:<uuid>"
    disclosed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["partner", "disclosed_at"])]

    def __str__(self) -> str:
        return f"Disclosure {self.id} under consent {self.grant_id}"


class DeletionRequest(models.Model):
    """A withdrawal's request to one partner that received the data: delete it, and say so.

    One per (withdrawal, partner). The partner acknowledges through its API; the first
    acknowledgement is kept. Outstanding past ``due_at`` means overdue.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    withdrawal = models.ForeignKey(
        ConsentWithdrawal, on_delete=models.PROTECT, related_name="deletion_requests"
    )
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    lead_ids = models.JSONField(default=list)  # the partner's leads that carried the data
    requested_at = models.DateTimeField()
    due_at = models.DateTimeField()  # requested_at + DELETION_ACK_DAYS
    acknowledged_at = models.DateTimeField(null=True, blank=True)  # when we received it
    # The time the partner says it deleted the data (its own clock, informational).
    partner_acknowledged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["withdrawal", "partner"], name="deletion_request_once_per_partner"
            )
        ]
        indexes = [
            models.Index(fields=["partner", "created_at"]),
            models.Index(fields=["acknowledged_at", "due_at"]),
        ]

    def __str__(self) -> str:
        return f"Deletion request {self.id}"


class RevealRecord(models.Model):
    """A staff member saw a subject's decrypted data: who, which fields, why, when."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="reveals")
    fields = models.JSONField()
    reason = models.TextField()
    revealed_at = models.DateTimeField()

    class Meta:
        ordering = ["-revealed_at"]

    def __str__(self) -> str:
        return f"Reveal {self.id}"


class LedgerEntry(models.Model):
    """Append-only log entry, written pending and sequenced later (``consent.sequencer``).

    ``append`` inserts ``kind``, ``created_at`` and ``body`` (canonical JSON of at, data and
    kind) and nothing else: no shared row is touched on the intake path. The sequencer then
    sets, once, ``seq`` (the leaf index), ``canonical`` (``body`` with ``"seq"`` added: it
    sorts last) and ``leaf_hash`` = SHA-256(0x00 || canonical), and clears ``body``. On
    PostgreSQL a trigger refuses every other UPDATE and every DELETE (migration 0006).
    """

    # Arrival order: the order in which the sequencer takes committed pending entries.
    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(null=True, blank=True)  # 0-based leaf index; NULL: pending
    kind = models.CharField(max_length=32)
    # NULL, not "", on these text columns: it means "not assigned yet" (an empty string is
    # never valid), and the check constraint and the trigger test exactly that.
    # Pending content: canonical JSON of {"at", "data", "kind"}; NULL once sequenced.
    body = models.TextField(null=True, blank=True)  # noqa: DJ001
    # The exact bytes hashed (UTF-8), canonical JSON with seq; NULL while pending.
    canonical = models.TextField(null=True, blank=True)  # noqa: DJ001
    leaf_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (hex)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["seq"], name="ledger_entry_seq_unique"),
            # Pending or sequenced, never half of each.
            models.CheckConstraint(
                condition=(
                    Q(
                        seq__isnull=True,
                        canonical__isnull=True,
                        leaf_hash__isnull=True,
                        body__isnull=False,
                    )
                    | Q(
                        # NULL >= 0 is unknown, which a CHECK lets through: say not NULL.
                        seq__isnull=False,
                        seq__gte=0,
                        canonical__isnull=False,
                        leaf_hash__isnull=False,
                        body__isnull=True,
                    )
                ),
                name="ledger_entry_pending_or_sequenced",
            ),
        ]
        indexes = [
            # The sequencer's scan: only pending rows, in arrival order.
            models.Index(fields=["id"], condition=Q(seq__isnull=True), name="ledger_entry_pending")
        ]

    def __str__(self) -> str:
        where = f"#{self.seq}" if self.seq is not None else f"pending ({self.pk})"
        return f"Ledger entry {where}: {self.kind}"

    @property
    def is_sequenced(self) -> bool:
        return self.seq is not None


class LedgerHead(models.Model):
    """The sequenced tree's size. Only the sequencer locks and advances it (one at a time)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.BigIntegerField(default=0)


class Checkpoint(models.Model):
    """A signed statement of the tree: size, root hash and time (Ed25519)."""

    tree_size = models.BigIntegerField()
    root_hash = models.CharField(max_length=64)  # hex
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=64)  # hex SHA-256 of the raw public key
    signature = models.CharField(max_length=128)  # base64 Ed25519 over the checkpoint body

    class Meta:
        ordering = ["tree_size", "signed_at"]

    def __str__(self) -> str:
        return f"Checkpoint size={self.tree_size}"


class AuditJob(models.Model):
    """A compliance officer's audit bundle export or ledger verification, run by a worker
    (``consent.audit_jobs``). The row is the audit trail (who asked, what, when, the
    outcome); an export's file is served to the officer who asked and nobody else."""

    class Kind(models.TextChoices):
        EXPORT = "export", "audit bundle export"
        VERIFY = "verify", "ledger verification"

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # An export's selection: a subject, or a time range of ledger entries.
    subject = models.ForeignKey(
        Subject, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    # Counts, ids and hashes only: the export summary or the verification report.
    result = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The worker's last sign of life (its claim, then every progress write): a running job
    # silent for longer than ``consent.audit_jobs.LEASE`` lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["requested_by", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display().capitalize()} {self.id} ({self.state})"
