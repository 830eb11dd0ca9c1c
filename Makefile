# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Type-checked domain modules (views and admin are thin and checked by tests).
MYPY_TARGETS := consent/merkle.py consent/crypto.py consent/vault.py consent/grants.py \
	consent/gate.py consent/ledger.py consent/deletion.py consent/erasure.py \
	consent/compliance.py partners/roles.py consent/proofs.py consent/keys.py consent/checks.py \
	consent/audit_export.py consent/verify_bundle.py partners/keys.py partners/webhooks.py \
	partners/urlsafety.py demo marketplace/matching.py \
	marketplace/routing.py marketplace/intake.py marketplace/delivery.py marketplace/pull.py \
	marketplace/events.py marketplace/bands.py billing/money.py billing/pricing.py \
	billing/charging.py billing/invoicing.py billing/fees.py billing/returns.py billing/locks.py \
	billing/statements.py billing/credit.py billing/payments.py billing/reconcile.py billing/balances.py \
	billing/budgets.py billing/tasks.py billing/outcomes.py billing/periods.py partners/holds.py \
	billing/documents.py partners/outbound.py partners/idempotency.py \
	partners/errors.py marketplace/auctions.py marketplace/pings.py marketplace/tasks.py \
	partners/permissions.py partners/throttling.py partners/products.py partners/api.py \
	partners/adminutils.py billing/fx.py partners/scoping.py partners/fields.py partners/parsers.py \
	partners/currencies.py marketplace/validation.py partners/http.py marketplace/answers.py

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Invoice PDFs embed one TrueType font with Latin, currency signs and Chinese (Debian's
# fonts-wqy-microhei); installed here when missing and allowed (root with apt-get).
PDF_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

install: $(STAMP)
	@test -f $(PDF_FONT) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null; } || \
	  echo "WARNING: $(PDF_FONT) is missing: invoice PDFs (and their tests) need 'apt-get install fonts-wqy-microhei'"

# Sets up, loads demo data, pushes synthetic applicants through the whole flow (first run
# only), then serves the platform on 127.0.0.1:8000 with the partner simulator on :8900.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py simulate --referrals 300 --invoice --only-if-empty
	@echo "Admin: http://127.0.0.1:8000/admin/   API docs: http://127.0.0.1:8000/api/docs/"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/python manage.py simulate_partners --config var/simulator.json --port 8900 & \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# Sets up and runs the whole test suite (SQLite by default; PostgreSQL and a broker when
# DATABASE_URL and CELERY_BROKER_URL are set, as CI does).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_TARGETS)
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
