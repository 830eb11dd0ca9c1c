"""The demo and the partner lender simulator: development and test tools, not the product.

A top-level app because it uses all four product apps (it seeds partners, consent texts and
fee schedules, and drives referrals through billing), so it sits above billing in the
layering and no product app imports it. ``marketplace/settings.py`` installs it only outside
production, so its commands (``seed_demo``, ``simulate``, ``simulate_partners``) do not
exist there.
"""
