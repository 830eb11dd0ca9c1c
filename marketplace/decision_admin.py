"""The admin's answer to "why did it go there": the routing decision as a read-only section
of the referral page (ops and compliance read it; ``partners.roles``). Product and partner
names, reason codes with their labels and numbers: no personal data."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from marketplace.eligibility import ReasonCode
from marketplace.models import RoutingDecision
from marketplace.strategy_spec import StrategyKind

LABELS = dict(ReasonCode.choices)
STRATEGY_LABELS = dict(StrategyKind.choices)


def _probabilities(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return " / ".join(f"{values[k]:.2f}" for k in ("accept", "approve", "fund", "returned"))


def _reasons(codes: list[str]) -> str:
    return "; ".join(f"{code}: {LABELS.get(code, 'unknown code')}" for code in codes)


def _row(entry: dict[str, Any]) -> tuple[str, ...]:
    if entry.get("eligible"):
        eligibility = "eligible" if entry.get("rank") else "eligible (partner's cheaper product)"
    else:
        eligibility = _reasons(entry.get("reasons", []))
    return (
        str(entry.get("rank") or "-"),
        entry.get("partner_name") or entry.get("partner", ""),
        entry.get("product", ""),
        eligibility,
        _probabilities(entry.get("means")),
        _probabilities(entry.get("sampled")),
        entry.get("expected_value") or "-",
        entry.get("score") or "-",
        "yes" if entry.get("chosen") else ("in line" if entry.get("waterfall") else ""),
    )


HEADERS = (
    "rank",
    "partner",
    "product",
    "eligibility",
    "means (accept / approve / fund / return)",
    "score used (sampled)",
    "expected value",
    "score",
    "chosen",
)


def candidates_table(decision: RoutingDecision) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in HEADERS))
    body = format_html_join(
        "",
        "<tr>" + "<td>{}</td>" * len(HEADERS) + "</tr>",
        (_row(entry) for entry in decision.candidates),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


class DecisionInline(admin.StackedInline):
    """The referral's routing decision, read-only."""

    model = RoutingDecision
    extra = 0
    can_delete = False
    verbose_name = "routing decision"
    fields = readonly_fields = (
        "strategy",
        "experiment",
        "segment",
        "created_at",
        "winners_list",
        "candidates_view",
    )

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.display(description="strategy")
    def strategy(self, obj: RoutingDecision) -> str:
        label = STRATEGY_LABELS.get(obj.strategy_kind, obj.strategy_kind)
        mode = "Thompson sampling" if obj.explore else "posterior means"
        return f"{obj.strategy_key} v{obj.strategy_version} ({label}; {mode})"

    @admin.display(description="experiment / arm")
    def experiment(self, obj: RoutingDecision) -> str:
        if not obj.experiment_key:
            return "none (the default strategy)"
        return f"{obj.experiment_key} / {obj.arm_key} (bucket version {obj.bucket_version})"

    @admin.display(description="winners")
    def winners_list(self, obj: RoutingDecision) -> str:
        names = {e["product"]: e.get("partner_name") or e["product"] for e in obj.candidates}
        return ", ".join(names.get(p, p) for p in obj.winners) or "none"

    @admin.display(description="candidates")
    def candidates_view(self, obj: RoutingDecision) -> SafeString:
        return candidates_table(obj)
