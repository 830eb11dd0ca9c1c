"""The demo world, from DOMAIN.md's numbers: an operator source, eleven partner lenders
with products, fee schedules and simulator settings, exchange rates and a consent text.

Spans every app (partners, consent texts, fee schedules), hence in ``demo``, above billing.
Keys and secrets for the simulated partners are written to
``var/simulator.json`` and the source key to ``var/demo.json``: development files, ignored
by git, like the development keys.
"""

from __future__ import annotations

import json
import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from billing import fee_cards, fx
from billing.models import Currency, ExchangeRate, FeeSchedule
from consent.grants import publish_text
from consent.models import ConsentText
from demo.config import write_config
from partners.keys import issue_api_key
from partners.models import (
    DeliveryMode,
    KeyMode,
    Partner,
    PartnerStatus,
    Product,
    TrafficSource,
)
from partners.registry import PartnerLicence
from partners.webhook_signing import create_endpoint

DEMO_SOURCE = "Demo Operator (declines)"
CONSENT_VERSION = "cn-referral-2026-01"
CONSENT_BODY = (
    "个人信息共享授权书（推荐至其他金融机构）\n"
    "您的借款申请未获我司批准。经您同意，我司将把您的姓名、手机号、身份证号、出生日期、"
    "月收入、工作单位和地址提供给与您的申请相匹配的持牌金融机构，仅用于其评估并向您提供借款服务。"
    "您可随时撤回本授权，撤回后我司将停止提供，并通知已接收您信息的机构删除。授权有效期十二个月。\n"
    "Consent to share personal information with other licensed lenders: your application was "
    "declined. With your consent we share your name, phone, ID number, birth date, monthly "
    "income, employer and address with licensed lenders matched to your application, only to "
    "assess and offer you a loan. You may withdraw at any time; we then stop sharing and ask "
    "every recipient to delete your data. Valid for twelve months."
)
DATA_CATEGORIES = ["name", "phone", "national_id", "birth_date", "income", "employer", "address"]

# name, status, mode, tiers, amount range, terms, APR range, regions, fees (cpl, cpa, cpf)
# in the schedule's currency (CNY unless ``currency``; CPF bounds ``cpf_bounds``),
# simulated behaviour (accept, approve, fund, error, garbage), extra product options.
PARTNERS: list[dict[str, Any]] = [
    dict(
        name="Huaxia Consumer Finance",
        mode=DeliveryMode.PING_POST,
        bid=("25.00", "60.00"),
        tiers="R3-R6",
        amount=(3000, 50000),
        term=(6, 24),
        apr=("0.1500", "0.2200"),
        regions=[],
        fees=("40", "250", "0.0300"),
        sim=(0.85, 0.6, 0.85, 0.0, 0.0),
    ),
    dict(
        name="Pearl River Microcredit",
        tiers="R4-R7",
        amount=(1000, 20000),
        term=(3, 12),
        apr=("0.2000", "0.2400"),
        regions=["CN-GD", "CN-GX", "CN-FJ", "CN-HI"],
        fees=("30", "180", "0.0250"),
        sim=(0.9, 0.5, 0.8, 0.05, 0.0),
    ),
    dict(
        name="Sichuan Hills Rural Credit",
        tiers="R2-R5",
        amount=(2000, 30000),
        term=(6, 24),
        apr=("0.1200", "0.1900"),
        regions=["CN-SC", "CN-CQ", "CN-GZ", "CN-YN"],
        fees=("35", "220", "0.0300"),
        sim=(0.8, 0.65, 0.9, 0.0, 0.0),
    ),
    dict(
        name="Yangtze Credit Technology",
        mode=DeliveryMode.PING_POST,
        bid=("25.00", "60.00"),
        tiers="R3-R6",
        amount=(2000, 40000),
        term=(3, 24),
        apr=("0.1800", "0.2380"),
        regions=[],
        excluded=["CN-XZ"],
        fees=("50", "300", "0.0350"),
        sim=(0.75, 0.55, 0.8, 0.0, 0.05),
    ),
    dict(
        name="Northern Star Lending",
        mode=DeliveryMode.PING_POST,
        bid=("25.00", "60.00"),
        tiers="R4-R7",
        amount=(1000, 15000),
        term=(3, 12),
        apr=("0.2100", "0.2400"),
        regions=["CN-BJ", "CN-TJ", "CN-HE", "CN-SD", "CN-LN"],
        fees=("25", "150", "0.0200"),
        sim=(0.9, 0.45, 0.75, 0.0, 0.0),
    ),
    dict(
        name="Jiangnan Bank Consumer Loans",
        tiers="R1-R4",
        amount=(5000, 100000),
        term=(12, 24),
        apr=("0.0800", "0.1600"),
        regions=[],
        min_income="5000",
        fees=("80", "400", "0.0400"),
        sim=(0.7, 0.7, 0.9, 0.0, 0.0),
    ),
    dict(
        name="Silk Road Finance",
        tiers="R5-R8",
        amount=(1000, 8000),
        term=(3, 12),
        apr=("0.2200", "0.2400"),
        regions=[],
        mode=DeliveryMode.PULL,
        fees=("20", "150", "0.0200"),
        sim=(0.8, 0.4, 0.7, 0.0, 0.0),
    ),
    dict(
        name="Harbour Fintech",
        tiers="R3-R6",
        amount=(2000, 30000),
        term=(6, 12),
        apr=("0.1600", "0.2300"),
        regions=[],
        status=PartnerStatus.SANDBOX,
        fees=("45", "260", "0.0300"),
        sim=(0.8, 0.6, 0.85, 0.0, 0.0),
    ),
    dict(
        name="Everbright Quick Loan",
        tiers="R5-R8",
        amount=(500, 5000),
        term=(3, 6),
        apr=("0.2800", "0.3600"),
        regions=[],  # above the 24% cap: never routed
        fees=("60", "200", "0.0400"),
        sim=(0.95, 0.8, 0.9, 0.0, 0.0),
    ),
    dict(
        name="Mountain Trust Credit",
        tiers="R2-R6",
        amount=(3000, 60000),
        term=(6, 24),
        apr=("0.1000", "0.1800"),
        regions=[],
        exclusive=True,
        daily_cap=40,
        fees=("70", "350", "0.0300"),
        sim=(0.65, 0.7, 0.9, 0.0, 0.0),
    ),
    # Billed in US dollars: its CNY bids and 3% of CNY principals are converted at the
    # CNY->USD rate in force (DEMO_RATES) before they are booked, never relabelled.
    dict(
        name="Pacific Bridge Capital",
        mode=DeliveryMode.PING_POST,
        bid=("25.00", "60.00"),  # CNY: bids are in the ping's currency
        tiers="R3-R7",
        amount=(2000, 50000),
        term=(3, 24),
        apr=("0.1400", "0.2300"),
        regions=[],
        currency=Currency.USD,
        fees=("6.00", "35.00", "0.0300"),
        cpf_bounds=("7.00", "280.00"),
        sim=(0.85, 0.6, 0.85, 0.0, 0.0),
    ),
]

# Exchange rates finance would enter (billing.fx.record_rate): from, to, rate, in force
# from, source. Illustrative values near the PBOC central parity of the time.
DEMO_RATES = [
    (
        Currency.CNY,
        Currency.USD,
        "0.13780000",
        datetime(2026, 1, 1, tzinfo=UTC),
        "Demo: PBOC central parity 2026-01-02, USD/CNY 7.2568 (illustrative)",
    ),
    (
        Currency.CNY,
        Currency.USD,
        "0.14050000",
        datetime(2026, 7, 1, tzinfo=UTC),
        "Demo: PBOC central parity 2026-07-01, USD/CNY 7.1174 (illustrative)",
    ),
]


def _tiers(spec: str) -> list[str]:
    low, high = (int(part[1:]) for part in spec.split("-"))
    return [f"R{i}" for i in range(low, high + 1)]


@dataclass(frozen=True)
class DemoSetup:
    source_key: str
    admin_password: str | None  # only when the admin user was created now


def var_path(name: str) -> Path:
    return Path(settings.VAR_DIR) / name


def seed_demo(*, simulator_url: str, api_base_url: str) -> DemoSetup:
    """Create the demo world once; later runs reuse it (and its stored keys)."""
    demo_file = var_path("demo.json")
    if TrafficSource.objects.filter(name=DEMO_SOURCE).exists() and demo_file.exists():
        return DemoSetup(
            source_key=json.loads(demo_file.read_text())["source_key"], admin_password=None
        )
    with transaction.atomic():
        source, _ = TrafficSource.objects.get_or_create(name=DEMO_SOURCE)
        source_key = issue_api_key(source=source, name="demo").plaintext
        text, _ = ConsentText.objects.get_or_create(
            version=CONSENT_VERSION,
            defaults=dict(
                title="个人信息共享授权书 / Consent to share with other lenders",
                body=CONSENT_BODY,
                language="zh-CN",
                jurisdiction="CN",
                purposes=["loan_referral"],
                data_categories=DATA_CATEGORIES,
            ),
        )
        publish_text(text=text)
        lenders = [_seed_partner(spec, simulator_url) for spec in PARTNERS]
        _seed_rates()
        # The schedules above are stored directly: write routing's fee cards from them.
        fee_cards.sync_all()
    write_config(var_path("simulator.json"), api_base_url=api_base_url, seed=7, lenders=lenders)
    # The simulator URL the partners' endpoints were given: ``simulate`` checks its port.
    demo_file.write_text(
        json.dumps({"source_key": source_key, "simulator_url": simulator_url}, indent=2)
    )
    demo_file.chmod(0o600)
    return DemoSetup(source_key=source_key, admin_password=_ensure_admin())


def _seed_partner(spec: dict[str, Any], simulator_url: str) -> dict[str, Any]:
    slug = slugify(spec["name"])
    partner, _ = Partner.objects.get_or_create(
        slug=slug,
        defaults=dict(
            name=spec["name"],
            legal_name=f"{spec['name']} Co., Ltd.",
            licence_number=f"CBIRC-{zlib.crc32(slug.encode()) % 10**8:08d}",
            status=spec.get("status", PartnerStatus.LIVE),
            contact_name="Partnerships desk",
            contact_email=f"partnerships@{slug}.example",
        ),
    )
    # Listed in the partner registry with a licence in force: routing needs one.
    PartnerLicence.objects.get_or_create(
        partner=partner,
        defaults=dict(
            number=partner.licence_number or f"CBIRC-{zlib.crc32(slug.encode()) % 10**8:08d}",
            issuer="NFRA (demo)",
            valid_from=date(2024, 1, 1),
            expires_on=date(2030, 12, 31),
        ),
    )
    mode = spec.get("mode", DeliveryMode.DIRECT_POST)
    Product.objects.get_or_create(
        partner=partner,
        name="Standard consumer loan",
        defaults=dict(
            min_amount=Decimal(spec["amount"][0]),
            max_amount=Decimal(spec["amount"][1]),
            min_term_months=spec["term"][0],
            max_term_months=spec["term"][1],
            risk_tiers=_tiers(spec["tiers"]),
            regions=spec["regions"],
            excluded_regions=spec.get("excluded", []),
            min_age=20,
            max_age=55,
            min_monthly_income=Decimal(spec.get("min_income", "2000")),
            apr_min=Decimal(spec["apr"][0]),
            apr_max=Decimal(spec["apr"][1]),
            delivery_mode=mode,
            post_url=f"{simulator_url}/{slug}/post" if mode != DeliveryMode.PULL else "",
            ping_url=f"{simulator_url}/{slug}/ping",
            post_timeout_ms=5000,
            exclusive=spec.get("exclusive", False),
            daily_cap=spec.get("daily_cap"),
            dedupe_days=30,
        ),
    )
    cpl, cpa, cpf = spec["fees"]
    cpf_min, cpf_max = spec.get("cpf_bounds", ("50.00", "2000.00"))
    FeeSchedule.objects.get_or_create(
        partner=partner,
        product=None,
        defaults=dict(
            currency=spec.get("currency", Currency.CNY),
            cpl=Decimal(cpl),
            cpa=Decimal(cpa),
            cpf_rate=Decimal(cpf),
            cpf_min=Decimal(cpf_min),
            cpf_max=Decimal(cpf_max),
            effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    _, secret = create_endpoint(partner=partner, url=f"{simulator_url}/{slug}/webhooks")
    # A sandbox partner's leads are sandbox leads, which only a sandbox key reaches.
    key_mode = KeyMode.SANDBOX if partner.status == PartnerStatus.SANDBOX else KeyMode.LIVE
    api_key = issue_api_key(partner=partner, name="simulator", mode=key_mode).plaintext
    accept, approve, fund, error, garbage = spec["sim"]
    return dict(
        slug=slug,
        secret=secret,
        api_key=api_key,
        latency_ms=20,
        accept_rate=accept,
        approval_rate=approve,
        funding_rate=fund,
        error_rate=error,
        garbage_rate=garbage,
        apr_min=spec["apr"][0],
        apr_max=spec["apr"][1],
        bid_min=spec.get("bid", ("10.00", "50.00"))[0],
        bid_max=spec.get("bid", ("10.00", "50.00"))[1],
        ping_reject_rate=0.1,
    )


def _seed_rates() -> None:
    for from_currency, to_currency, rate, effective_from, source in DEMO_RATES:
        if not ExchangeRate.objects.filter(
            from_currency=from_currency, to_currency=to_currency, effective_from=effective_from
        ).exists():
            fx.record_rate(
                from_currency=from_currency,
                to_currency=to_currency,
                rate=rate,
                effective_from=effective_from,
                source=source,
            )


def _ensure_admin() -> str | None:
    user_model = get_user_model()
    if user_model.objects.filter(username="admin").exists():
        return None
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser("admin", "admin@example.invalid", password)
    return password
