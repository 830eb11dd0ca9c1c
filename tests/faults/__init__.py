"""Fault tests on the real services (issue 10, item 7), run by ``python -m tests.faults``.

The harness (:mod:`tests.faults.stack`) starts its own PostgreSQL cluster and Redis on
their own ports (so it may restart and stop them), migrates a fresh database, seeds the demo
partners against the partner simulator (a separate process that keeps its own log, see
``demo.journal``), and runs gunicorn, one Celery worker per queue and beat under
supervisord with ``deploy/supervisord.conf``, the documented deployment. Referrals go in
through the HTTP API as a real client sends them (:mod:`tests.faults.client`). Each
scenario (:mod:`tests.faults.scenarios`) injects its fault, waits for quiescence and checks
from the database and from the partners' own log (:mod:`tests.faults.checks`).

Not collected by pytest (no ``test_*`` module): it needs root or a PostgreSQL it may
initdb, takes minutes, and prints a table of counts instead of dots.
"""
