# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# mypy checks every module of the apps (migrations excluded in pyproject.toml).
MYPY_TARGETS := partners consent marketplace billing demo

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Invoice PDFs embed one TrueType font with Latin, currency signs and Chinese (Debian's
# fonts-wqy-microhei); installed here when missing and allowed (root with apt-get).
PDF_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc

# The dashboard's chart library (chart.js, pinned in package.json and package-lock.json) from
# the npm registry into node_modules/, which Django serves (STATICFILES_DIRS); none of it is
# committed and nothing is loaded from a CDN.
NODE_STAMP := node_modules/.package-lock.json

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "ERROR: npm is missing: the admin dashboard's charts need chart.js from npm ('apt-get install npm', or Node.js from nodejs.org)"; exit 1; }
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)
	@test -f $(PDF_FONT) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null; } || \
	  echo "WARNING: $(PDF_FONT) is missing: invoice PDFs (and their tests) need 'apt-get install fonts-wqy-microhei'"

# Sets up, loads demo data, pushes synthetic applicants through the whole flow (first run
# only), then serves the platform on 127.0.0.1:8000 with the partner simulator on :8900.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py simulate --referrals 300 --invoice --only-if-empty
	@echo "Admin: http://127.0.0.1:8000/admin/   API docs: http://127.0.0.1:8000/api/docs/   Partner portal: http://127.0.0.1:8000/portal/"
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
	$(BIN)/pytest -q -p no:cacheprovider tests/test_architecture.py
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache .hypothesis
