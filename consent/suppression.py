"""Which partners suppress an applicant: their suppression lists (``partners.suppression``)
against the applicant's own keyed hashes, computed here, inside consent.

The applicant's phone and ID numbers are decrypted in the vault (``vault.keyed_digests``),
normalised and hashed under each candidate partner's shared key there; only the digests
come back, and only the partner ids whose lists hold one leave this module. No personal data
leaves the vault, so no disclosure is recorded: nothing is sent to the partner, and its
answer (listed or not) is what it told us already.

Cost: one query for the candidates' keys; when any has one, a primary-key read of the
subject and one query for all their hits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from consent import vault
from partners import suppression as lists
from partners.registry import SuppressionEntry


def suppressing_partners(
    *, subject_id: uuid.UUID, partner_ids: Iterable[uuid.UUID], is_sandbox: bool
) -> set[uuid.UUID]:
    """Those of ``partner_ids`` whose list in this mode holds the subject's phone or ID."""
    keys = lists.keys_of(partner_ids=partner_ids, is_sandbox=is_sandbox)
    if not keys:
        return set()
    digests = vault.keyed_digests(
        subject_id=subject_id, keys=keys, normalisers=lists.NORMALISERS, digest=lists.digest
    )
    wanted = {(partner_id, value) for partner_id, values in digests.items() for value in values}
    if not wanted:
        return set()
    hits = SuppressionEntry.objects.filter(
        partner_id__in=keys,
        is_sandbox=is_sandbox,
        digest__in={value for _, value in wanted},
    ).values_list("partner_id", "digest")
    return {partner_id for partner_id, value in hits if (partner_id, value) in wanted}
