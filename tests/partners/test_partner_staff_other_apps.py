"""Partner staff in the admin pages of other apps: leads, events, charges, invoices and
deletion requests show only their partners' rows, invoice documents of another partner
are out of reach, and finance actions are not offered to them."""

from __future__ import annotations

from django.utils import timezone

from billing.invoicing import Period, generate_invoices
from billing.models import Invoice
from marketplace.models import Lead
from tests.billing.builders import LeadBuilder, post, report, schedule

CHANGELISTS = {
    "/admin/marketplace/lead/": Lead,
    "/admin/marketplace/leadevent/": None,
    "/admin/billing/charge/": None,
    "/admin/billing/invoice/": Invoice,
}


def _billed_world(partner, other_partner) -> dict[str, Invoice]:
    builder = LeadBuilder()
    invoices = {}
    for owner in (partner, other_partner):
        schedule(owner)
        lead = builder.lead(product=owner.products.get())
        post(lead, report("accepted", timezone.now()))
    for invoice in generate_invoices(period=Period(timezone.now().date().replace(day=1))):
        invoices[str(invoice.partner_id)] = invoice
    return invoices


def test_partner_staff_see_only_their_partners_rows_elsewhere(
    partner, other_partner, admin_login
) -> None:
    invoices = _billed_world(partner, other_partner)
    staff = admin_login("lender-staff", partners=(partner,))
    operator = admin_login("finance", superuser=True)

    for url in CHANGELISTS:
        mine = staff.get(url)
        assert mine.status_code == 200, url
        everything = operator.get(url)
        assert mine.context["cl"].result_count == 1, url
        assert everything.context["cl"].result_count == 2, url
        rows = mine.context["cl"].result_list
        assert {getattr(row, "partner_id", None) for row in rows} == {partner.id}, url

    theirs = invoices[str(other_partner.id)]
    assert staff.get(f"/admin/billing/invoice/{theirs.pk}/pdf/").status_code == 404
    own = invoices[str(partner.id)]
    assert staff.get(f"/admin/billing/invoice/{own.pk}/csv/").status_code == 200


def _actions(client, url: str) -> set[str]:
    form = client.get(url).context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices}


def test_finance_actions_are_not_offered_to_partner_staff(partner, admin_login) -> None:
    staff = admin_login("lender-staff", partners=(partner,))
    operator = admin_login("finance", superuser=True)

    assert {"issue", "void"} <= _actions(operator, "/admin/billing/invoice/")
    assert not {"issue", "void"} & _actions(staff, "/admin/billing/invoice/")
