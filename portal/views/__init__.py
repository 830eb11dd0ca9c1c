"""The partner portal's views, by page group: ``session`` (login, invitation, partner and
mode, status), ``leads`` (leads, returns, funnel), ``billing`` (invoices, credit notes,
statement, payments), ``integration`` (API keys, webhooks, delivery logs) and ``consent``
(deletion requests to acknowledge). Views stay thin: queries from ``portal.selectors``,
changes through ``portal.actions``."""
