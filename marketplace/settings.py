"""One settings module, configured from the environment (12-factor).

With nothing set it runs on an embedded default: SQLite, Celery eager, DEBUG on, and
development keys generated on first run into ``var/devkeys.json`` (ignored by git).
``MARKETPLACE_ENV=production`` refuses to start unless every secret comes from the
environment (directly, or from a file named by ``<NAME>_FILE``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MARKETPLACE_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str = "") -> str:
    """A string from the environment, or from the file named by ``<name>_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def envdecimal(name: str, default: str) -> Decimal:
    raw = os.environ.get(name) or default
    try:
        return Decimal(raw)
    except ArithmeticError:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {raw!r}") from None


ENVIRONMENT = os.environ.get("MARKETPLACE_ENV", "development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured("MARKETPLACE_ENV must be 'development' or 'production'")
PRODUCTION = ENVIRONMENT == "production"

# --- Secrets -----------------------------------------------------------------------------
# Each secret is 32 random bytes, base64. In development the missing ones are generated
# once and kept in var/devkeys.json so restarts can still decrypt what was written.


def _b64key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


_SECRET_NAMES = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    # Vault master keys: "key-id:base64key[,key-id:base64key...]"; the first one wraps new keys.
    "VAULT_MASTER_KEYS": lambda: f"dev-{secrets.token_hex(4)}:{_b64key()}",
    "BLIND_INDEX_KEY": _b64key,
    "API_KEY_PEPPER": _b64key,
    # Encrypts secrets we must read back (partner webhook signing secrets).
    "SECRETS_ENCRYPTION_KEY": _b64key,
    # Ed25519 private key (raw 32 bytes, base64) that signs consent-ledger checkpoints.
    "LEDGER_SIGNING_KEY": _b64key,
}


def _load_secrets() -> dict[str, str]:
    values = {name: env(name) for name in _SECRET_NAMES}
    missing = [name for name, value in values.items() if not value]
    if not missing:
        return values
    if PRODUCTION:
        raise ImproperlyConfigured(
            "MARKETPLACE_ENV=production needs these secrets in the environment: "
            + ", ".join(missing)
        )
    path = VAR_DIR / "devkeys.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for name in missing:
        if name not in stored:
            stored[name] = _SECRET_NAMES[name]()
            changed = True
        values[name] = stored[name]
    if changed:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return values


_secrets = _load_secrets()
SECRET_KEY = _secrets["SECRET_KEY"]
VAULT_MASTER_KEYS = _secrets["VAULT_MASTER_KEYS"]
BLIND_INDEX_KEY = _secrets["BLIND_INDEX_KEY"]
API_KEY_PEPPER = _secrets["API_KEY_PEPPER"]
SECRETS_ENCRYPTION_KEY = _secrets["SECRETS_ENCRYPTION_KEY"]
LEDGER_SIGNING_KEY = _secrets["LEDGER_SIGNING_KEY"]

DEBUG = envbool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "MARKETPLACE_ENV=production refuses DEBUG=true: error pages would show settings "
        "and personal data to anyone"
    )
# Django's deploy check (security.W009) asks for 50+ characters, 5+ distinct ones, and not
# the 'django-insecure-' placeholder; production refuses to start with less.
if PRODUCTION and (
    len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-")
):
    raise ImproperlyConfigured(
        "MARKETPLACE_ENV=production needs a random SECRET_KEY of at least 50 characters, "
        "e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "" if PRODUCTION else "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served by us, never from a CDN
    "guardian",
    "axes",  # admin login lockout (see "Admin login" below)
    "partners",
    "consent",
    "marketplace",
    "billing",
    "portal",  # the partner portal (/portal/): partner staff, server-rendered
]
if not PRODUCTION:
    # The demo world, the traffic driver and the partner simulator: development tools.
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost of ours, so every answer (a 413, a lockout) gets its headers.
    "csp.middleware.CSPMiddleware",
    "partners.no_store.NoStoreMiddleware",
    # Before anything reads a body: one over DATA_UPLOAD_MAX_MEMORY_SIZE answers 413 unread.
    "partners.request_limits.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Runs /api/ views itself (after every other process_view): a request that lost its
    # database connection runs again on a new one when it is safe to repeat, else 503.
    "partners.reconnect.ReconnectMiddleware",
    # Last, as django-axes requires: answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

# Benchmarks serve the platform plus a baseline endpoint (bench/urls.py) from one server.
ROOT_URLCONF = env("ROOT_URLCONF", "marketplace.urls")
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            # Connections live a minute; each request checks a reused one first, so a database
            # restart costs a reconnect, not a 500 for every process's first request after it.
            DATABASE_URL,
            conn_max_age=60,
            conn_health_checks=True,
        )
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "marketplace.sqlite3"),
            # Threads (the demo's loopback servers) write concurrently: wait for the lock
            # instead of failing, and take it at BEGIN so upgrades cannot deadlock.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Billing's covering index (INCLUDE columns) is PostgreSQL-only; SQLite ignores the extras.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# The cache holds API rate-limit counters: shared across processes through Redis when
# CACHE_URL (or REDIS_URL) is set; per process otherwise (development and tests).
CACHE_URL = env("CACHE_URL") or env("REDIS_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
GUARDIAN_RAISE_403 = True

# --- Content-Security-Policy (django-csp) -------------------------------------------------
# Admin pages load scripts, styles and images from this origin only and run no inline script
# (Django's admin has none; tests/test_content_security_policy.py loads pages in Chromium
# and fails on any violation). Invoice documents and the API docs page set their own.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Admin login -------------------------------------------------------------------------
# django-axes: after ADMIN_LOGIN_FAILURE_LIMIT failed logins for one username, or from one
# address, that username or address is locked out for ADMIN_LOGIN_LOCKOUT_MINUTES (429),
# even with the right password; a successful login clears its counts. Failures are rows in
# the database, so every web process sees them. Unlock early: manage.py axes_reset_username.
AXES_FAILURE_LIMIT = envint("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("ADMIN_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Proxies in front of the web processes whose X-Forwarded-For entries are trusted (see
# partners.client_address): 0 when clients connect directly.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "partners.client_address.client_address"
# Only failures are kept (no log of every login), and not in the admin's model list: ops
# unlock with the axes_reset_* commands.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Largest request body accepted (bytes); the API's bodies are a few kilobytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Chart.js for the admin dashboard, installed from npm by `make install` (package.json) and
# served from here: no CDN, no third-party code in the repository.
STATICFILES_DIRS = [("chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist")]

# --- HTTPS ---------------------------------------------------------------------------------
# Production's defaults are the strict ones (`manage.py check --deploy` finds nothing); each
# can be changed from the environment. Development serves plain http on 127.0.0.1: all off.
if PRODUCTION:
    # TLS ends at the load balancer, which says so in this header (and strips a client's).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", PRODUCTION)

# --- API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["partners.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "partners.pagination.NewestFirstPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "partners.exception_handler.exception_handler",
    # Per API key (partners.throttling); 429 with Retry-After in the one error shape.
    "DEFAULT_THROTTLE_CLASSES": ["partners.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON in UTF-8 only: another declared charset is 415, never decoded as Latin-1.
    "DEFAULT_PARSER_CLASSES": ["partners.parsers.Utf8JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Decline Marketplace API",
    "DESCRIPTION": (
        "Routes consented, declined loan applicants to partner lenders. Source keys create "
        "referrals and manage consent; partner keys read their own leads and report outcomes. "
        "Authenticate with `Authorization: Bearer <key>`. Creating POSTs accept an "
        "`Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    # 3.1 for its top-level "webhooks": what we send partners (marketplace.partner_contract).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": "marketplace.partner_contract.WEBHOOKS",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.partner_contract.add_contract_schemas",
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKey": {"type": "http", "scheme": "bearer"}},
    },
    "SECURITY": [{"ApiKey": []}],
    "ENUM_NAME_OVERRIDES": {
        "RiskTierEnum": "partners.models.RISK_TIERS",
        "EmploymentTypeEnum": "partners.models.EMPLOYMENT_TYPES",
        "PartnerStatusEnum": "partners.models.PartnerStatus",
        "ChangeRequestStatusEnum": "partners.models.ChangeRequestStatus",
        "WebhookMessageStatusEnum": "partners.models.MessageStatus",
        "LeadStatusEnum": "marketplace.models.LeadStatus",
        "CurrencyEnum": "partners.currencies.Currency",
    },
}

# --- Celery ------------------------------------------------------------------------------
# No broker configured: tasks run eagerly in-process, and the in-memory transport keeps
# kombu from looking for a broker on localhost.
CELERY_TASK_ALWAYS_EAGER = not env("CELERY_BROKER_URL")
CELERY_BROKER_URL = env("CELERY_BROKER_URL") or "memory://"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis redelivers a message not acked within visibility_timeout: longer than any task runs
# (a post's 30 s timeout), and retry countdowns stay under half of it (marketplace.outbox);
# short enough that a killed worker's messages come back in minutes, not Redis' default
# hour. Publishing gives up fast: the outbox sweeper publishes what did not go out.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 600),
    "socket_connect_timeout": 2,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ROUTES = {
    "marketplace.tasks.deliver_lead": {"queue": "post"},
    "marketplace.tasks.run_auction": {"queue": "ping"},
    "marketplace.tasks.post_leads": {"queue": "post"},
    "marketplace.tasks.dispatch_referral": {"queue": "ping"},
    "billing.tasks.*": {"queue": "billing"},
    "partners.tasks.deliver_webhooks": {"queue": "webhooks"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Task modules autodiscovery (each app's tasks.py) does not find.
CELERY_IMPORTS = ("marketplace.sweeps", "marketplace.stats", "billing.stats")
CELERY_BEAT_SCHEDULE = {
    # The dashboard's daily aggregates: today and yesterday recomputed from the raw rows
    # every minute, the last week nightly (marketplace.stats says why that is exact).
    "rollup-daily-funnel": {
        "task": "marketplace.stats.rollup_funnel_task",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "rollup-daily-revenue": {
        "task": "billing.stats.rollup_revenue_task",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # The strategy lab's per-arm results of running experiments, stored for the dashboard
    # (billing.lab_figures), so the dashboard never reads an experiment's raw rows.
    "refresh-experiment-figures": {
        "task": "billing.tasks.refresh_experiment_figures",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "rollup-last-week-nightly": {
        "task": "marketplace.stats.rollup_funnel_task",
        "schedule": crontab(minute=20, hour=0),
        "kwargs": {"days": 7},
    },
    "rollup-revenue-last-week-nightly": {
        "task": "billing.stats.rollup_revenue_task",
        "schedule": crontab(minute=25, hour=0),
        "kwargs": {"days": 7},
    },
    # The outbox's sweeper: publishes what is not done by its deadline, re-drives overdue
    # referrals (marketplace.outbox, marketplace.dispatch).
    "sweep-outbox": {
        "task": "marketplace.tasks.sweep_outbox",
        "schedule": 5.0,
        "options": {"expires": 30},
    },
    # Posts and auctions no message will run any more (a claim that outlived its worker, a
    # message lost between commit and publish), queued again soon after they stall.
    "sweep-stuck-work": {
        "task": "marketplace.sweeps.sweep_stuck_work",
        "schedule": 30.0,
        "options": {"expires": 60},
    },
    "generate-monthly-invoices": {
        "task": "billing.tasks.generate_last_month_invoices",
        # The first of the month, retried on the 2nd and 3rd in case beat was down: reruns
        # are no-ops.
        "schedule": crontab(minute=30, hour=0, day_of_month="1-3"),
    },
    # Invoice runs whose worker died are failed once their lease runs out
    # (billing.invoice_runs.LEASE) instead of "drafting" for ever.
    "expire-stale-invoice-runs": {
        "task": "billing.tasks.expire_stale_invoice_runs",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "dispatch-due-webhooks": {
        "task": "partners.tasks.dispatch_due_webhooks",
        "schedule": 30.0,
    },
    # Audit jobs whose worker died (killed, out of memory) are failed once their lease
    # runs out (consent.audit_jobs.LEASE) instead of "running" for ever.
    "expire-stale-audit-jobs": {
        "task": "consent.tasks.expire_stale_audit_jobs",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "record-consent-expiries": {
        "task": "consent.tasks.record_expiries",
        "schedule": 3600.0,
    },
    # The consent ledger's one sequencer (consent.sequencer): an entry gets its seq about
    # a second after it commits. A tick nobody ran within 5 s is dropped, not piled up.
    "sequence-consent-ledger": {
        "task": "consent.tasks.sequence_ledger",
        "schedule": 1.0,
        "options": {"expires": 5},
    },
    "checkpoint-consent-ledger": {
        "task": "consent.tasks.checkpoint_ledger",
        "schedule": 3600.0,
    },
    # Routing's conversion counts (marketplace.learning): leads changed since the last run,
    # recomputed per product and day; idempotent, so a late or doubled tick is harmless.
    "refresh-conversion-counts": {
        "task": "marketplace.tasks.refresh_conversion_counts",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # The strategy lab's stop rule (marketplace.experiments.review): an experiment it says
    # to stop is stopped with the reason and time; promotion stays a person's decision.
    "review-experiments": {
        "task": "marketplace.tasks.review_experiments",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
    "charge-unbilled-events": {
        "task": "billing.tasks.charge_unbilled_events",
        "schedule": 300.0,
    },
    # Monthly budget holds: lifted just after midnight UTC on the 1st (and re-checked
    # hourly, in case beat was down or another hold was lifted meanwhile).
    # Routing's fee cards (billing.fee_cards): schedules starting or ending later than
    # they were written take effect within the hour.
    "sync-fee-cards": {
        "task": "billing.tasks.sync_fee_cards",
        "schedule": crontab(minute=5),
    },
    "sweep-monthly-budgets": {
        "task": "billing.tasks.sweep_budgets",
        "schedule": crontab(minute=1),
    },
    # Cap counters against the reservations and charges they count (marketplace.
    # cap_reconcile): completes lost releases, logs any other drift for a person.
    "reconcile-cap-counters": {
        "task": "billing.tasks.reconcile_cap_counters",
        "schedule": crontab(minute=35),
        "options": {"expires": 1800},
    },
}

# --- Domain settings ---------------------------------------------------------------------
# Regulators and courts watch 24% APR; never route an applicant above the cap.
APR_CAP = envdecimal("APR_CAP", "0.24")
DEFAULT_CURRENCY = env("DEFAULT_CURRENCY", "CNY")
# How long a process keeps routing's learned counts and fee cards before reading them again
# (marketplace.learning); the counts themselves move once a minute.
LEARNING_CACHE_SECONDS = envint("LEARNING_CACHE_SECONDS", 60)
VAT_RATE = envdecimal("VAT_RATE", "0.06")
# Partner endpoints on loopback/private ranges are refused unless explicitly allowed
# (development, tests and the demo simulator run on loopback).
ALLOW_PRIVATE_PARTNER_URLS = envbool("ALLOW_PRIVATE_PARTNER_URLS", not PRODUCTION)
DELIVERY_MAX_RETRIES = envint("DELIVERY_MAX_RETRIES", 5)
API_KEY_PREFIX = env("API_KEY_PREFIX", "dm")
# Requests per minute per partner API key unless the key sets its own limit.
API_RATE_LIMIT_PER_MINUTE = envint("API_RATE_LIMIT_PER_MINUTE", 600)
OPERATOR_NAME = env("OPERATOR_NAME", "Demo Operator Lending Co., Ltd.")
# The operator's details printed on invoices and credit notes.
OPERATOR_ADDRESS = env("OPERATOR_ADDRESS", "1 Example Road, Nanshan District, Shenzhen")
OPERATOR_TAX_ID = env("OPERATOR_TAX_ID", "91440300EXAMPLE000X")
OPERATOR_BANK_ACCOUNT = env("OPERATOR_BANK_ACCOUNT", "Example Bank Shenzhen Branch 0000 0000 0000")
# Returns above this share of a partner's leads over 30 days wait for finance's approval.
RETURN_RATE_CAP = envdecimal("RETURN_RATE_CAP", "0.15")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Request lines name partner URLs and lead ids only, but are noise at INFO.
        "httpx": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}
# Wall-clock budget of a whole ping-post auction; each ping also has its product's timeout.
AUCTION_BUDGET_MS = envint("AUCTION_BUDGET_MS", 750)
# Shared leads go to at most this many partners per referral.
MAX_PARTNERS_PER_REFERRAL = envint("MAX_PARTNERS_PER_REFERRAL", 5)
# Product index kept current by reloading only the changed partners' and products' boxes
# (marketplace.matching.ProductIndex). PostgreSQL only: there the catalogue triggers run at
# commit, so no process ever sees a change that is then rolled back.
PRODUCT_INDEX_INCREMENTAL = DATABASES["default"]["ENGINE"].endswith("postgresql")
# Partners may return a lead (and get its fees credited) this many days after delivery.
RETURN_WINDOW_DAYS = envint("RETURN_WINDOW_DAYS", 7)
# Partners must confirm deleting a withdrawn applicant's data within this many days.
DELETION_ACK_DAYS = envint("DELETION_ACK_DAYS", 7)
# Intake refuses applicants younger than the legal age (no minor's referral is ever
# stored or routed) and ages no living applicant has.
MIN_APPLICANT_AGE = envint("MIN_APPLICANT_AGE", 18)
MAX_APPLICANT_AGE = envint("MAX_APPLICANT_AGE", 100)
# Intake refuses consent evidence collected longer ago than this: stale or made-up evidence.
CONSENT_MAX_AGE_DAYS = envint("CONSENT_MAX_AGE_DAYS", 30)
if not 0 < MIN_APPLICANT_AGE <= MAX_APPLICANT_AGE or CONSENT_MAX_AGE_DAYS < 1:
    raise ImproperlyConfigured(
        "Need 0 < MIN_APPLICANT_AGE <= MAX_APPLICANT_AGE and CONSENT_MAX_AGE_DAYS >= 1"
    )

# Django 6 behaviour now: URLs typed without a scheme are https.
FORMS_URLFIELD_ASSUME_HTTPS = True
