"""Cap reconciliation against an independent model: random awards, releases and lost
releases (a lead the partner never took, its release never run) through the real
``marketplace.caps`` functions, counted a second time by a plain model. The reconciliation
reports exactly the overcount of the lost releases, repairs exactly those by releasing
them, and then finds exactly the one counter corrupted at random, with the model's value
as the expected one. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.budgets import charged_drift
from billing.tasks import reconcile_cap_counters
from marketplace import cap_reconcile, caps, outbox, tasks
from marketplace.models import CapCounter, CapKind, CapScope, Lead, LeadStatus
from partners.models import Partner, Product
from partners.months import month_of
from tests.billing.builders import LeadBuilder
from tests.marketplace.test_caps_oracle import PARTNER_BUDGETS, SPECS, price_in_cny, world

pytestmark = pytest.mark.django_db
__all__ = ["world"]  # the fixture, shared with the caps oracle

Key = tuple[str, uuid.UUID, str, date, bool]

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("award"),
            st.integers(0, len(SPECS) - 1),
            st.one_of(st.none(), st.decimals("0.00", "60.00", places=2)),
        ),
        st.tuples(st.just("release"), st.integers(0, 40), st.none()),
        st.tuples(st.just("lose"), st.integers(0, 40), st.none()),
        st.tuples(st.just("next_day"), st.just(0), st.none()),
    ),
    max_size=25,
)


def model_counters(
    awards: list[tuple[int, date, Decimal, str]],
    products: list[Product],
    partners: list[Partner],
    month: date,
    *,
    states: tuple[str, ...],
) -> dict[Key, Decimal]:
    """What the counters hold, from the awards in ``states`` (held, lost, released),
    written from the rule: day and month counters count capped products' leads, reserved
    ones their price against each budget concerned."""
    out: dict[Key, Decimal] = defaultdict(Decimal)
    for index, day, price, state in awards:
        if state not in states:
            continue
        spec, product = SPECS[index], products[index]
        if spec.daily is not None:
            out[(CapScope.PRODUCT, product.id, CapKind.DAY, day, False)] += 1
        if spec.monthly is not None:
            out[(CapScope.PRODUCT, product.id, CapKind.MONTH, month, False)] += 1
        if spec.product_budget is not None:
            out[(CapScope.PRODUCT, product.id, CapKind.RESERVED, month, False)] += price
        if PARTNER_BUDGETS[spec.partner] is not None:
            partner = partners[spec.partner]
            out[(CapScope.PARTNER, partner.id, CapKind.RESERVED, month, False)] += price
    return dict(out)


def drifts_of(result: list[cap_reconcile.CounterDrift]) -> dict[Key, tuple[Decimal, Decimal]]:
    return {
        (d.scope, d.owner_id, d.kind, d.period, d.is_sandbox): (d.expected, d.found) for d in result
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps, pick=st.integers(0, 1000), delta=st.decimals("-9.00", "9.00", places=2))
def test_reconciliation_finds_lost_releases_and_the_corrupted_counter(
    world: tuple[list[Product], list[Partner], LeadBuilder],
    steps: list[tuple[str, int, Decimal | None]],
    pick: int,
    delta: Decimal,
) -> None:
    products, partners, builder = world
    start = timezone.now().replace(day=10, hour=12, minute=0, second=0, microsecond=0)
    month = month_of(start)
    with transaction.atomic():
        day = 0
        awards: list[tuple[int, date, Decimal, str]] = []  # index, day, price, state
        leads: list[Lead] = []
        for step, number, amount in steps:
            now = start + timedelta(days=day)
            if step == "award":
                spec, product = SPECS[number], products[number]
                lead = builder.lead(product=product)
                Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.MATCHED)
                claim = caps.Claim(
                    lead.id,
                    product.id,
                    product.partner_id,
                    spec.daily,
                    spec.monthly,
                    bid=amount,
                    bid_currency="CNY" if amount is not None else "",
                )
                if caps.reserve([claim], is_sandbox=False, now=now):
                    lead.delete()
                else:
                    leads.append(lead)
                    awards.append((number, now.date(), price_in_cny(spec, amount), "held"))
            elif step in ("release", "lose") and leads:
                which = number % len(leads)
                if awards[which][3] != "held":
                    continue
                status = LeadStatus.POST_REJECTED if step == "release" else LeadStatus.BLOCKED
                Lead.objects.filter(pk=leads[which].pk).update(status=status)
                if step == "release":  # "lose": the release never runs
                    assert caps.release(lead_id=leads[which].id)
                awards[which] = (*awards[which][:3], "released" if step == "release" else "lost")
            elif step == "next_day" and day < 15:
                day += 1

        held = model_counters(awards, products, partners, month, states=("held",))
        counted = model_counters(awards, products, partners, month, states=("held", "lost"))

        # 1. Reported: exactly the counters the lost releases overcount, by their amounts.
        report = cap_reconcile.reconcile_caps(month=month)
        want = {
            key: (held.get(key, Decimal(0)), found)
            for key, found in counted.items()
            if held.get(key, Decimal(0)) != found
        }
        assert drifts_of(report.drifts) == want
        assert report.released == []

        # 2. Repaired: exactly the lost leads released, nothing left drifting.
        repaired = cap_reconcile.reconcile_caps(month=month, repair=True)
        lost = {leads[i].id for i, award in enumerate(awards) if award[3] == "lost"}
        assert set(repaired.released) == lost
        assert repaired.drifts == []
        assert cap_reconcile.reconcile_caps(month=month, repair=True).released == []

        # 3. One counter corrupted at random: found, alone, with the model's value.
        stored = list(
            CapCounter.objects.exclude(kind=CapKind.CHARGED)
            .order_by("scope", "owner_id", "kind", "period")
            .values_list("scope", "owner_id", "kind", "period", "is_sandbox", "used")
        )
        if stored and delta:
            scope, owner, kind, period, sandbox, used = stored[pick % len(stored)]
            key: Key = (scope, owner, kind, period, sandbox)
            change = delta if used + delta >= 0 else -delta
            CapCounter.objects.filter(
                scope=scope, owner_id=owner, kind=kind, period=period, is_sandbox=sandbox
            ).update(used=F("used") + change)
            found = cap_reconcile.reconcile_caps(month=month, repair=True)
            expected = held.get(key, Decimal(0))
            assert drifts_of(found.drifts) == {key: (expected, used + change)}
            assert found.released == []  # an overcount without a lost release stays
        transaction.set_rollback(True)


def test_charged_counters_are_checked_against_the_ledger_for_budgeted_owners(
    world: tuple[list[Product], list[Partner], LeadBuilder],
) -> None:
    _, partners, _ = world
    month = month_of(timezone.now())
    for partner, used in ((partners[0], "12.50"), (partners[2], "99.00")):
        CapCounter.objects.create(
            scope=CapScope.PARTNER,
            owner_id=partner.id,
            kind=CapKind.CHARGED,
            period=month,
            used=Decimal(used),
        )
    checked, drifts = charged_drift(month=month)
    # No charges: the budgeted partner's counter should be 0; partners[2] has no budget
    # (its counter is no longer written), so it is not checked.
    assert checked == 1
    assert drifts_of(drifts) == {
        (CapScope.PARTNER, partners[0].id, CapKind.CHARGED, month, False): (
            Decimal("0.00"),
            Decimal("12.50"),
        )
    }


def test_reconcile_command_exits_non_zero_on_cap_drift(
    world: tuple[list[Product], list[Partner], LeadBuilder],
) -> None:
    products, _, _ = world
    now = timezone.now()
    call_command("reconcile", period=now.strftime("%Y-%m"))  # nothing drifts
    CapCounter.objects.create(
        scope=CapScope.PRODUCT,
        owner_id=products[0].id,
        kind=CapKind.DAY,
        period=now.date(),
        used=Decimal(2),
    )
    with pytest.raises(CommandError, match="1 difference"):
        call_command("reconcile", period=now.strftime("%Y-%m"))


def test_a_lead_queued_to_be_sent_again_holds_its_cap(
    world: tuple[list[Product], list[Partner], LeadBuilder],
) -> None:
    """marketplace.resend takes a failed lead's caps again and queues its post; the lead
    stays delivery_failed until the post runs. It holds its cap: no drift, no release. Once
    its post has run (and failed again without its release), the release is lost."""
    products, _, builder = world
    spec, product = SPECS[0], products[0]
    month = month_of(timezone.now())
    lead = builder.lead(product=product)
    claim = caps.Claim(lead.id, product.id, product.partner_id, spec.daily, spec.monthly)
    assert not caps.reserve([claim], is_sandbox=False)
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.DELIVERY_FAILED)
    assert caps.release(lead_id=lead.id)
    with transaction.atomic():  # as marketplace.resend does
        assert caps.take_again(lead=Lead.objects.get(pk=lead.pk))
        message = outbox.enqueue(tasks.deliver_lead, str(lead.pk), referral_id=lead.referral_id)
    result = cap_reconcile.reconcile_caps(month=month, repair=True)
    assert (result.released, result.drifts) == ([], [])

    outbox.finish(str(message.id))  # its post ran, and its release never did
    assert cap_reconcile.lost_releases(month) == [lead.id]
    report = cap_reconcile.reconcile_caps(month=month)
    assert {d.kind for d in report.drifts} == {CapKind.DAY, CapKind.MONTH, CapKind.RESERVED}
    assert all(d.found - d.expected > 0 for d in report.drifts)
    repaired = cap_reconcile.reconcile_caps(month=month, repair=True)
    assert (repaired.released, repaired.drifts) == ([lead.id], [])


def test_beat_task_releases_lost_releases_and_logs_drift_by_ids_only(
    world: tuple[list[Product], list[Partner], LeadBuilder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    products, _, builder = world
    spec, product = SPECS[3], products[3]  # a monthly cap only, no budget
    lead = builder.lead(product=product)
    claim = caps.Claim(lead.id, product.id, product.partner_id, spec.daily, spec.monthly)
    assert not caps.reserve([claim], is_sandbox=False)
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.POST_REJECTED)  # release lost
    month = month_of(timezone.now())
    CapCounter.objects.create(
        scope=CapScope.PRODUCT, owner_id=products[0].id, kind=CapKind.DAY, period=month
    )  # 0, where nothing was awarded: no drift
    CapCounter.objects.filter(owner_id=products[0].id).update(used=Decimal(1))  # now drift
    with caplog.at_level("WARNING", logger="billing.tasks"):
        assert reconcile_cap_counters() == 1
    assert cap_reconcile.reconcile_caps(month=month).drifts[0].owner_id == products[0].id
    text = caplog.text
    assert f"lost release of lead {lead.id}" in text
    assert f"{products[0].id} day {month}" in text and "expected 0.00, found 1.00" in text
    grant = lead.referral.grant
    assert grant is not None
    assert str(grant.subject_id) not in text  # ids of products, partners and leads only
