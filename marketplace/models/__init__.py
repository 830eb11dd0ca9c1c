"""Referrals, ping-post auctions, leads, delivery attempts, partner-reported events and the
outbox, one module per concern.

No personal data here: a referral holds only the anonymised attributes routing needs
(tier, amount, term, region, age, income band) and points at its vault subject and grant.
"""

from marketplace.models.auctions import (
    Auction,
    AuctionMode,
    AuctionStatus,
    PingAttempt,
    PingAward,
)
from marketplace.models.caps import CapCounter, CapKind, CapReservation, CapScope
from marketplace.models.decisions import RoutingDecision
from marketplace.models.events import EventType, LeadEvent
from marketplace.models.experiments import (
    Arm,
    Experiment,
    ExperimentStatus,
    PrimaryMetric,
    Strategy,
    StrategyPromotion,
    StrategyVersion,
)
from marketplace.models.leads import (
    REPORTABLE_STATUSES,
    AttemptOutcome,
    DeliveryAttempt,
    Lead,
    LeadStatus,
)
from marketplace.models.learning import (
    ConversionCounts,
    LearningWatermark,
    ProductFeeCard,
    Stage,
)
from marketplace.models.outbox import OutboxMessage
from marketplace.models.referrals import Referral, ReferralStatus
from marketplace.models.stats import DailyFunnel

__all__ = [
    "REPORTABLE_STATUSES",
    "Arm",
    "AttemptOutcome",
    "Auction",
    "AuctionMode",
    "AuctionStatus",
    "CapCounter",
    "CapKind",
    "CapReservation",
    "CapScope",
    "ConversionCounts",
    "DailyFunnel",
    "DeliveryAttempt",
    "EventType",
    "Experiment",
    "ExperimentStatus",
    "Lead",
    "LeadEvent",
    "LeadStatus",
    "LearningWatermark",
    "OutboxMessage",
    "PingAttempt",
    "PingAward",
    "PrimaryMetric",
    "ProductFeeCard",
    "Referral",
    "ReferralStatus",
    "RoutingDecision",
    "Stage",
    "Strategy",
    "StrategyPromotion",
    "StrategyVersion",
]
