from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from consent import api as consent_api
from consent import ledger_api
from marketplace import api
from partners import api as partners_api
from partners import error_responses

api_v1 = [
    path("referrals", api.ReferralCreateView.as_view(), name="referral-create"),
    path("referrals/<uuid:pk>", api.ReferralDetailView.as_view(), name="referral-detail"),
    path(
        "consents/<uuid:receipt_id>",
        consent_api.ConsentReceiptView.as_view(),
        name="consent-receipt",
    ),
    path(
        "consents/<uuid:receipt_id>/withdraw",
        consent_api.ConsentWithdrawView.as_view(),
        name="consent-withdraw",
    ),
    path("ledger/public-key", consent_api.LedgerPublicKeyView.as_view(), name="ledger-public-key"),
    path(
        "ledger/checkpoints",
        ledger_api.CheckpointListView.as_view(),
        name="ledger-checkpoint-list",
    ),
    path(
        "ledger/checkpoints/latest",
        ledger_api.CheckpointLatestView.as_view(),
        name="ledger-checkpoint-latest",
    ),
    path("ledger/entries/<int:seq>", ledger_api.LedgerEntryView.as_view(), name="ledger-entry"),
    path(
        "ledger/consistency",
        ledger_api.ConsistencyProofView.as_view(),
        name="ledger-consistency",
    ),
    path(
        "partner/consent-withdrawals",
        consent_api.PartnerDeletionRequestListView.as_view(),
        name="partner-deletion-request-list",
    ),
    path(
        "partner/consent-withdrawals/<str:withdrawal_id>",
        consent_api.PartnerDeletionRequestDetailView.as_view(),
        name="partner-deletion-request-detail",
    ),
    path(
        "partner/consent-withdrawals/<str:withdrawal_id>/ack",
        consent_api.PartnerDeletionAckView.as_view(),
        name="partner-deletion-ack",
    ),
    path("partner/leads", api.PartnerLeadListView.as_view(), name="partner-lead-list"),
    path(
        "partner/leads/<uuid:lead_id>",
        api.PartnerLeadDetailView.as_view(),
        name="partner-lead-detail",
    ),
    path("partner/me", partners_api.PartnerMeView.as_view(), name="partner-me"),
    path("partner/products", partners_api.ProductListView.as_view(), name="partner-product-list"),
    path(
        "partner/products/<uuid:product_id>",
        partners_api.ProductDetailView.as_view(),
        name="partner-product-detail",
    ),
    path(
        "partner/products/<uuid:product_id>/change-requests",
        partners_api.ProductChangeRequestCreateView.as_view(),
        name="partner-product-change-request-create",
    ),
    path(
        "partner/change-requests",
        partners_api.ChangeRequestListView.as_view(),
        name="partner-change-request-list",
    ),
    path(
        "partner/change-requests/<uuid:change_request_id>",
        partners_api.ChangeRequestDetailView.as_view(),
        name="partner-change-request-detail",
    ),
    path(
        "partner/webhook-messages",
        partners_api.WebhookMessageListView.as_view(),
        name="partner-webhook-message-list",
    ),
    path(
        "partner/webhook-messages/<str:message_id>",
        partners_api.WebhookMessageDetailView.as_view(),
        name="partner-webhook-message-detail",
    ),
    path(
        "partner/webhook-messages/<str:message_id>/replay",
        partners_api.WebhookMessageReplayView.as_view(),
        name="partner-webhook-message-replay",
    ),
]

urlpatterns = [
    # The dashboard (billing.dashboard), by module name as billing's API routes below.
    path("admin/dashboard/", include("billing.dashboard.urls")),
    path("admin/", admin.site.urls),
    # The partner portal sits above billing too: included by module name, like billing.
    path("portal/", include("portal.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's script from its own URL (no inline script); its page has a <style> block.
    path(
        "api/docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="swagger-ui",
    ),
    path("api/v1/", include(api_v1)),
    # Billing sits above marketplace (the layering CI checks): its routes are included by
    # module name, so this URLconf wires it without marketplace importing billing.
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("partners.suppression_api")),  # partners' suppression lists
    # Last: any other path under /api/ is a 404 in the API's error shape, not an HTML page.
    re_path(r"^api(?:/.*)?$", error_responses.api_not_found, name="api-not-found"),
]

# A crash outside a DRF view answers in the error shape under /api/ (Django's page elsewhere).
handler500 = error_responses.server_error
