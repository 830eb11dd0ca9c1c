"""The partner portal's routes, mounted at /portal/ by the project URLconf."""

from django.urls import path, register_converter

from portal.views import billing, consent, integration, leads, session


class RowId:
    """A row id: at most 18 digits, so a longer number is a 404, never a database overflow."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowId, "rowid")

app_name = "portal"

urlpatterns = [
    path("", session.home, name="home"),
    path("login/", session.PortalLoginView.as_view(), name="login"),
    path("logout/", session.PortalLogoutView.as_view(), name="logout"),
    path("invite/<str:token>/", session.accept_invitation, name="invite"),
    path("partner/", session.pick_partner, name="pick_partner"),
    path("mode/", session.set_mode, name="set_mode"),
    path("leads/", leads.lead_list, name="leads"),
    path("leads/export.csv", leads.lead_csv, name="leads_csv"),
    path("leads/<uuid:lead_id>/", leads.lead_detail, name="lead_detail"),
    path("leads/<uuid:lead_id>/return/", leads.lead_return, name="lead_return"),
    path("leads/<uuid:lead_id>/resend/", leads.lead_resend, name="lead_resend"),
    path("returns/", leads.return_list, name="returns"),
    path("stats/", leads.funnel, name="stats"),
    path("invoices/", billing.invoice_list, name="invoices"),
    path("invoices/<uuid:invoice_id>/", billing.invoice_detail, name="invoice_detail"),
    path("invoices/<uuid:invoice_id>/pdf/", billing.invoice_pdf, name="invoice_pdf"),
    path("credit-notes/<uuid:note_id>/pdf/", billing.credit_note_pdf, name="credit_note_pdf"),
    path("statement/", billing.statement, name="statement"),
    path("payments/", billing.payment_list, name="payments"),
    path("keys/", integration.key_list, name="keys"),
    path("keys/new/", integration.key_create, name="key_create"),
    path("keys/<rowid:key_id>/revoke/", integration.key_revoke, name="key_revoke"),
    path("webhooks/", integration.webhooks, name="webhooks"),
    path("webhooks/url/", integration.webhook_url, name="webhook_url"),
    path("webhooks/<rowid:endpoint_id>/rotate/", integration.webhook_rotate, name="webhook_rotate"),
    path("webhooks/messages/<str:message_id>/", integration.message_detail, name="message_detail"),
    path(
        "webhooks/messages/<str:message_id>/replay/",
        integration.message_replay,
        name="message_replay",
    ),
    path("deliveries/", integration.delivery_list, name="deliveries"),
    path("withdrawals/", consent.withdrawal_list, name="withdrawals"),
    path("withdrawals/<rowid:withdrawal_id>/ack/", consent.withdrawal_ack, name="withdrawal_ack"),
]
