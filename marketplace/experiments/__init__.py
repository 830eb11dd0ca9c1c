"""The strategy lab: named routing strategies with append-only versions, one promoted
default, and experiments that split live referrals between strategy versions.

- ``strategies``: versions and the default's promotions (who, when, why);
- ``assignment``: GrowthBook's bucketing (hash version 2, seeded by the experiment key and
  bucket version, over the applicant's vault id), layers as GrowthBook namespaces;
- ``selection``: the strategy of one referral (``choose_strategy``, what routing asks);
- ``lifecycle``: start, stop, restart (new bucket version), promote an arm;
- ``results`` and ``sequential``: per-arm funnel and revenue with always-valid intervals,
  the sample-ratio check and the stop rule.
"""
