"""Architecture: personal data leaves the vault only through ``consent.gate.disclose``.

No module of partners/, marketplace/, billing/ or portal/ may name a vault column (``*_enc``, the
wrapped key, the blind indexes), import ``consent.crypto`` or call ``vault._decrypt``; and
outside ``consent`` only marketplace's delivery and pull modules call the gate.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARDED_APPS = ("partners", "marketplace", "billing", "portal")
GATE_CALLERS = {"marketplace/delivery.py", "marketplace/pull.py"}

VAULT_NAMES = ("wrapped_key", "national_id_index", "phone_index")
# A vault column anywhere in a name, ORM lookup or string: "phone_enc",
# "subject__phone_enc__isnull", f"{name}_enc", "subject__wrapped_key".
VAULT_COLUMN = re.compile(
    r"_enc(?![a-z0-9])|(?<![a-z0-9])(" + "|".join(VAULT_NAMES) + r")(?![a-z0-9])"
)
PRIVATE_CRYPTO = re.compile(r"(?<![\w.])consent\.crypto\b")


def _python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "tests" in relative.parts or path.name.startswith("test_"):
                continue
            yield path


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def pii_violations(source: str) -> list[str]:
    """Every reference to the vault's private columns or crypto in ``source``."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute):
            if VAULT_COLUMN.search(node.attr):
                found.append(f"line {line}: attribute .{node.attr}")
            if node.attr == "_decrypt":
                found.append(f"line {line}: calls vault._decrypt")
            if node.attr == "crypto" and ast.unparse(node.value) == "consent":
                found.append(f"line {line}: uses consent.crypto")
        elif isinstance(node, ast.keyword) and node.arg and VAULT_COLUMN.search(node.arg):
            found.append(f"line {line}: keyword {node.arg}=")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            if VAULT_COLUMN.search(node.value):
                found.append(f"line {line}: string {node.value!r}")
            if PRIVATE_CRYPTO.search(node.value):
                found.append(f"line {line}: string {node.value!r}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "consent.crypto" or alias.name.startswith("consent.crypto."):
                    found.append(f"line {line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module == "consent.crypto" or node.module.startswith("consent.crypto."):
                found.append(f"line {line}: from {node.module} import")
            if node.module == "consent" and "crypto" in names:
                found.append(f"line {line}: from consent import crypto")
            if node.module == "consent.vault" and "_decrypt" in names:
                found.append(f"line {line}: from consent.vault import _decrypt")
    return found


def uses_gate(source: str) -> bool:
    """Whether ``source`` calls (or takes a reference to) ``consent.gate.disclose``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "disclose":
            return True
        if isinstance(node, ast.Name) and node.id == "disclose":
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "consent.gate"
            and any(alias.name == "disclose" for alias in node.names)
        ):
            return True
    return False


# --- The rules hold for the code base -------------------------------------------------------


def test_guarded_apps_are_scanned() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in _python_files(*GUARDED_APPS)}

    assert {
        "billing/invoicing/drafting.py",
        "partners/webhook_signing.py",
        "marketplace/intake.py",
        "portal/views/leads.py",
    } <= scanned
    assert scanned >= GATE_CALLERS
    assert not any(name.startswith("consent/") for name in scanned)


@pytest.mark.parametrize(
    "path",
    list(_python_files(*GUARDED_APPS)),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_module_outside_consent_never_touches_vault_columns_or_crypto(path: Path) -> None:
    assert pii_violations(path.read_text(encoding="utf-8")) == []


def test_only_marketplace_delivery_and_pull_call_the_consent_gate() -> None:
    top_level = [
        entry
        for entry in ROOT.iterdir()
        if not entry.name.startswith(".") and entry.name not in {"consent", "tests"}
    ]
    outside_consent = [
        path
        for entry in top_level
        for path in ([entry] if entry.suffix == ".py" else entry.rglob("*.py"))
    ]
    assert ROOT / "manage.py" in outside_consent

    callers = {
        path.relative_to(ROOT).as_posix()
        for path in outside_consent
        if uses_gate(path.read_text(encoding="utf-8"))
    }

    assert callers == GATE_CALLERS


# --- The checker is precise: it catches each way in, and only those --------------------------


@pytest.mark.parametrize(
    "snippet",
    [
        "def fee(subject):\n    return len(subject.phone_enc)\n",
        "x = lead.subject.wrapped_key\n",
        "Subject.objects.values('national_id_enc')\n",
        "Lead.objects.filter(subject__phone_index=value)\n",
        "Lead.objects.values_list('subject__full_name_enc', flat=True)\n",
        "Subject.objects.filter(national_id_index__in=ids)\n",
        "getattr(subject, f'{name}_enc')\n",
        "F('subject__wrapped_key')\n",
        "Subject.objects.filter(address_enc__isnull=False)\n",
        "import consent.crypto\n",
        "import consent.crypto as c\n",
        "from consent.crypto import blind_index\n",
        "from consent import crypto\n",
        "from consent import crypto as vault_crypto, grants\n",
        "import consent\nconsent.crypto.blind_index('phone', p)\n",
        "importlib.import_module('consent.crypto')\n",
        "from consent import vault\nvault._decrypt(subject, ('phone',))\n",
        "from consent.vault import _decrypt\n",
    ],
)
def test_checker_flags_each_way_to_personal_data(snippet: str) -> None:
    assert pii_violations(snippet) != []


@pytest.mark.parametrize(
    "snippet",
    [
        '"""Docstrings may explain that phone_enc is private to consent."""\n',
        "from consent import grants, vault\nvault.store_subject(applicant=a)\n",
        "from consent.gate import DisclosureRefused\n",
        "lead.subject_id\n",
        "body.encode('utf-8')\n",
        "encoding = 'utf-8'\nx.phone = encoder(x)\n",
        "crypto = object()\n",
    ],
)
def test_checker_allows_code_that_stays_outside_the_vault(snippet: str) -> None:
    assert pii_violations(snippet) == []


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("from consent.gate import disclose\n", True),
        ("from consent import gate\ngate.disclose(grant_id=g)\n", True),
        ("from consent.gate import DisclosureRefused\n", False),
        ("from consent import grants\ngrants.withdraw(grant_id=g, channel='api')\n", False),
    ],
)
def test_gate_use_is_recognised(snippet: str, expected: bool) -> None:
    assert uses_gate(snippet) is expected


def test_inside_consent_only_the_gate_decrypts() -> None:
    """The vault's decryption has one caller: the gate's two doors (disclose to a
    partner, reveal to staff), each writing its log in the same transaction."""
    callers = sorted(
        path.name
        for path in (ROOT / "consent").rglob("*.py")
        if "migrations" not in path.parts
        and path.name not in {"vault.py", "gate.py"}
        and any("_decrypt" in found for found in pii_violations(path.read_text()))
    )
    assert callers == []
