"""Integration points for apps that build on marketplace (billing) without it importing them."""

from django.dispatch import Signal

# Sent inside the transaction that stores a new LeadEvent; kwargs: event (LeadEvent).
# Receivers do their part in the same transaction, so an event never exists unbilled.
lead_event_recorded = Signal()
