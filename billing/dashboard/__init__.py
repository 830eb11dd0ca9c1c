"""The operator's dashboard (admin, /admin/dashboard/): reads only the daily aggregates
(marketplace.DailyFunnel, billing.DailyRevenue), never raw rows, so it costs the same on a
million leads as on a thousand. Lives in billing because it shows revenue beside the
funnel, and billing may read marketplace (never the reverse)."""
