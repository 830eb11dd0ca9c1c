"""Staff roles are groups kept in step with partners.roles by every migrate."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission

from partners.roles import COMPLIANCE_GROUP, FINANCE_GROUP, OPS_GROUP, ROLES, ensure_role_groups


def _perms(group: Group) -> set[str]:
    return {
        f"{app_label}.{codename}"
        for app_label, codename in group.permissions.values_list(
            "content_type__app_label", "codename"
        )
    }


def _existing(perms: list[str]) -> set[str]:
    return {
        perm
        for perm in perms
        if Permission.objects.filter(
            content_type__app_label=perm.split(".")[0], codename=perm.split(".")[1]
        ).exists()
    }


def test_migrate_makes_every_role_group_with_exactly_its_permissions(db: None) -> None:
    for name, perms in ROLES.items():
        group = Group.objects.get(name=name)
        assert _perms(group) == _existing(perms), name


def test_every_role_permission_names_a_real_permission(db: None) -> None:
    """A typo in a codename would silently grant nothing. Only a model that does not
    exist (yet: its migration arrives with it) may have no permissions."""
    known = {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list(
            "content_type__app_label", "codename"
        )
    }
    for perm in {p for perms in ROLES.values() for p in perms} - known:
        app_label, codename = perm.split(".")
        model_name = codename.split("_", 1)[1]
        with pytest.raises(LookupError):
            apps.get_model(app_label, model_name)


def test_the_roles_do_what_their_jobs_need_and_no_more(db: None) -> None:
    ops, finance, compliance = (
        Group.objects.get(name=n) for n in (OPS_GROUP, FINANCE_GROUP, COMPLIANCE_GROUP)
    )
    assert {"partners.change_partner", "partners.change_webhookmessage"} <= _perms(ops)
    assert not {p for p in _perms(ops) if p.startswith("consent.")}
    # Billing for ops: exchange rates, and the dashboard's daily revenue (earnings per lead).
    assert {p for p in _perms(ops) if p.startswith("billing.")} <= {
        "billing.view_exchangerate",
        "billing.view_dailyrevenue",
    }
    assert {"billing.change_invoice", "billing.add_payment", "billing.change_returnreview"} <= (
        _perms(finance)
    )
    assert "billing.add_charge" not in _perms(finance)
    assert not {p for p in _perms(finance) if p.startswith("consent.")}
    # Read-only on consent and referral data; exports and verifications are jobs of its own.
    jobs = {"consent.add_auditjob"}
    assert jobs <= _perms(compliance)
    assert all(p.split(".")[1].startswith("view_") for p in _perms(compliance) - jobs)
    assert "consent.reveal_subject" not in _perms(compliance)


def test_a_rerun_puts_back_what_was_removed_and_takes_away_what_was_added(db: None) -> None:
    finance = Group.objects.get(name=FINANCE_GROUP)
    expected = _perms(finance)
    finance.permissions.remove(Permission.objects.get(codename="change_invoice"))
    finance.permissions.add(Permission.objects.get(codename="reveal_subject"))

    ensure_role_groups()
    ensure_role_groups()

    assert _perms(finance) == expected
    assert Group.objects.filter(name=FINANCE_GROUP).count() == 1
