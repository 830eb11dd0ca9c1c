"""Synthetic declined applicants, as the operator would send them. All values are made up;
regions and risk tiers are weighted as the industry's volume is (see DOMAIN.md).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from django.utils import timezone

from demo.world import CONSENT_VERSION

REGIONS = [  # weighted: most inclusive-finance volume comes from lower-tier cities
    ("CN-GD", 14),
    ("CN-SC", 9),
    ("CN-HA", 8),
    ("CN-SD", 8),
    ("CN-HE", 6),
    ("CN-HN", 6),
    ("CN-HB", 6),
    ("CN-AH", 6),
    ("CN-GX", 5),
    ("CN-JS", 5),
    ("CN-ZJ", 5),
    ("CN-YN", 4),
    ("CN-GZ", 4),
    ("CN-FJ", 3),
    ("CN-CQ", 3),
    ("CN-LN", 3),
    ("CN-BJ", 2),
    ("CN-SH", 2),
    ("CN-TJ", 1),
    ("CN-XZ", 1),
]
TIERS = [
    ("R1", 2),
    ("R2", 4),
    ("R3", 10),
    ("R4", 18),
    ("R5", 22),
    ("R6", 20),
    ("R7", 14),
    ("R8", 10),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "华",
    "建国",
    "晓东",
    "海燕",
    "志强",
    "玉兰",
]
EMPLOYERS = [
    "深圳某科技有限公司",
    "个体经营",
    "成都某餐饮店",
    "郑州某物流公司",
    "某制造厂",
    "某连锁超市",
    "自由职业",
]


def _weighted(rng: random.Random, options: list[tuple[str, int]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def synthetic_referral(rng: random.Random, index: int) -> dict[str, Any]:
    """One declined applicant as the operator would send it. All values are made up."""
    today = timezone.now().date()
    birth = date(today.year - rng.randint(20, 58), rng.randint(1, 12), rng.randint(1, 28))
    region = _weighted(rng, REGIONS)
    now = timezone.now()
    return {
        "applicant": {
            "full_name": rng.choice(SURNAMES) + rng.choice(GIVEN),
            "phone": f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}",
            "national_id": f"{rng.randint(110000, 659999)}{birth:%Y%m%d}{rng.randint(0, 9999):04d}",
            "birth_date": birth.isoformat(),
            "monthly_income": f"{rng.randrange(2000, 30000, 100)}.00",
            "employer": rng.choice(EMPLOYERS),
            "address": f"{region} 某市某区某路 {rng.randint(1, 999)} 号",
        },
        "loan": {
            "amount": f"{rng.randrange(1000, 50000, 500)}.00",
            "currency": "CNY",
            "term_months": rng.choice([3, 6, 12, 12, 24]),
            "purpose": rng.choice(
                ["consumption", "consumption", "education", "medical", "business"]
            ),
        },
        "risk_tier": _weighted(rng, TIERS),
        "decline_reason": rng.choice(
            [
                "outside_risk_appetite",
                "insufficient_credit_history",
                "debt_to_income",
                "policy_region",
            ]
        ),
        "channel": rng.choice(["app", "app", "web", "mini_program"]),
        "region": region,
        "employment_type": rng.choice(["employed", "employed", "self_employed", "other"]),
        "consent": {
            "text_version": CONSENT_VERSION,
            "collected_at": (now - timedelta(seconds=rng.randint(1, 600))).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
            "channel": "app",
            "method": "checkbox",
            "scope": "matched_partners",
            "purposes": ["loan_referral"],
            "ip_address": f"203.0.113.{rng.randint(1, 254)}",
            "user_agent": "OperatorApp/5.2 (Android 14)",
        },
        "source_reference": f"SIM-{now:%Y%m%d%H%M%S}-{index:06d}",
    }
