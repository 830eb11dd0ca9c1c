"""Partner staff in the Django admin: they see only the partners granted to them (object
permissions in the direct foreign-key tables), manage only those granted to manage, never
change products or decide change requests; operator staff and superusers are unaffected."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm

from partners import products
from partners.keys import issue_api_key
from partners.models import (
    ApiKey,
    MessageStatus,
    Partner,
    PartnerGroupObjectPermission,
    PartnerStatus,
    PartnerUserObjectPermission,
    ProductChangeRequest,
    WebhookMessage,
)
from partners.permissions import (
    PARTNER_STAFF_GROUP,
    ensure_partner_staff_group,
    partner_ids_for_user,
)

SCOPED_CHANGELISTS = [
    "/admin/partners/partner/",
    "/admin/partners/product/",
    "/admin/partners/apikey/",
    "/admin/partners/webhookendpoint/",
    "/admin/partners/webhookmessage/",
    "/admin/partners/productchangerequest/",
]


def rows_of_both(partner: Partner, other: Partner, make_message) -> None:
    for owner in (partner, other):
        issue_api_key(partner=owner)
        make_message(owner)
        products.propose_change(product=owner.products.get(), changes={"dedupe_days": 3})


def test_grants_are_stored_in_the_direct_foreign_key_tables(partner, admin_login):
    client = admin_login("staff", partners=(partner,), manage=True)

    rows = PartnerUserObjectPermission.objects.filter(user=client.user)
    assert {(row.content_object_id, row.permission.codename) for row in rows} == {
        (partner.id, "view_partner"),
        (partner.id, "change_partner"),
    }
    assert not UserObjectPermission.objects.exists()  # guardian's generic table is unused
    assert client.user.has_perm("partners.change_partner", partner)


def test_group_grants_use_the_group_foreign_key_table(partner, other_partner, admin_login):
    team = Group.objects.create(name="lender-team")
    assign_perm("partners.view_partner", team, partner)
    client = admin_login("member")
    client.user.groups.add(team, ensure_partner_staff_group())

    assert PartnerGroupObjectPermission.objects.filter(group=team).count() == 1
    assert not GroupObjectPermission.objects.exists()
    assert partner_ids_for_user(client.user) == {partner.id}


def test_partner_staff_see_only_their_partners_rows_in_every_partner_admin(
    partner, other_partner, make_message, admin_login
):
    rows_of_both(partner, other_partner, make_message)
    client = admin_login("staff", partners=(partner,))

    for url in SCOPED_CHANGELISTS:
        response = client.get(url)
        assert response.status_code == 200, url
        shown = list(response.context["cl"].queryset)
        assert shown, url
        for row in shown:
            owner = row.pk if isinstance(row, Partner) else row.partner_id
            assert owner == partner.id, url
        # Not even in a filter's choices: another partner's name never appears.
        assert other_partner.name not in response.content.decode(), url


def test_partner_staff_cannot_open_another_partners_rows(
    partner, other_partner, make_message, admin_login
):
    rows_of_both(partner, other_partner, make_message)
    client = admin_login("staff", partners=(partner,), manage=True)
    theirs = {
        "partner": other_partner.pk,
        "product": other_partner.products.get().pk,
        "apikey": ApiKey.objects.get(partner=other_partner).pk,
        "webhookmessage": WebhookMessage.objects.get(partner=other_partner).pk,
        "productchangerequest": ProductChangeRequest.objects.get(partner=other_partner).pk,
    }
    mine = {
        "partner": partner.pk,
        "product": partner.products.get().pk,
        "apikey": ApiKey.objects.get(partner=partner).pk,
        "webhookmessage": WebhookMessage.objects.get(partner=partner).pk,
        "productchangerequest": ProductChangeRequest.objects.get(partner=partner).pk,
    }

    for model, pk in theirs.items():
        response = client.get(f"/admin/partners/{model}/{pk}/change/")
        assert response.status_code == 302, model  # "does not exist", like a missing row
    for model, pk in mine.items():
        assert client.get(f"/admin/partners/{model}/{pk}/change/").status_code == 200, model


def test_managing_staff_edit_contacts_but_not_status_licence_or_holds(partner, admin_login):
    client = admin_login("staff", partners=(partner,), manage=True)

    html = client.get(f"/admin/partners/partner/{partner.pk}/change/").content.decode()

    assert 'name="contact_email"' in html
    for operator_field in ("status", "ops_hold", "licence_number", "slug"):
        assert f'name="{operator_field}"' not in html, operator_field
    response = client.post(
        f"/admin/partners/partner/{partner.pk}/change/",
        {
            "contact_name": "Desk",
            "contact_email": "desk@example.invalid",
            "billing_address": "",
            "status": PartnerStatus.PAUSED,  # ignored: read-only for partner staff
            **inline_management_forms(),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    partner.refresh_from_db()
    assert partner.contact_email == "desk@example.invalid"
    assert partner.status == PartnerStatus.LIVE


def inline_management_forms() -> dict[str, str]:
    forms = {}
    for prefix in ("products", "api_keys", "webhooks"):
        forms.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    return forms


def test_view_only_staff_cannot_change_anything(partner, make_message, admin_login):
    message = make_message(partner, status=MessageStatus.FAILED)
    client = admin_login("viewer", partners=(partner,))

    html = client.get(f"/admin/partners/partner/{partner.pk}/change/").content.decode()
    assert 'name="contact_email"' not in html
    response = client.post(
        "/admin/partners/webhookmessage/",
        {"action": "replay", "_selected_action": [message.pk]},
    )

    assert response.status_code in {200, 302}
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED


def test_managing_staff_replay_their_messages_but_never_another_partners(
    partner, other_partner, make_message, admin_login
):
    mine = make_message(partner, status=MessageStatus.FAILED)
    theirs = make_message(other_partner, status=MessageStatus.FAILED)
    client = admin_login("staff", partners=(partner,), manage=True)

    client.post(
        "/admin/partners/webhookmessage/",
        {"action": "replay", "_selected_action": [mine.pk, theirs.pk]},
    )

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == MessageStatus.PENDING
    assert theirs.status == MessageStatus.FAILED


def test_partner_staff_never_change_products_nor_decide_change_requests(partner, admin_login):
    product = partner.products.get()
    change_request = products.propose_change(product=product, changes={"max_term_months": 36})
    client = admin_login("staff", partners=(partner,), manage=True)

    html = client.get(f"/admin/partners/product/{product.pk}/change/").content.decode()
    assert 'name="max_amount"' not in html
    client.post(
        "/admin/partners/productchangerequest/",
        {"action": "approve", "_selected_action": [str(change_request.pk)]},
    )

    change_request.refresh_from_db()
    product.refresh_from_db()
    assert change_request.status == "pending"
    assert product.max_term_months == 24


def test_partner_staff_cannot_manage_object_permissions(partner, admin_login):
    client = admin_login("staff", partners=(partner,), manage=True)

    response = client.get(f"/admin/partners/partner/{partner.pk}/permissions/")

    assert response.status_code == 403  # refused like every other admin page


def test_operator_staff_and_superusers_are_not_scoped(partner, other_partner, admin_login):
    ops = admin_login("ops")
    ops.user.user_permissions.add(Permission.objects.get(codename="view_product"))
    root = admin_login("root", superuser=True)

    assert partner_ids_for_user(ops.user) is None
    assert partner_ids_for_user(root.user) is None
    for client in (ops, root):
        response = client.get("/admin/partners/product/")
        assert response.context["cl"].result_count == 2


def test_partner_staff_group_has_view_permissions_only(partner, admin_login):
    admin_login("staff", partners=(partner,))

    codenames = set(
        Group.objects.get(name=PARTNER_STAFF_GROUP).permissions.values_list("codename", flat=True)
    )
    assert codenames and all(code.startswith("view_") for code in codenames)
