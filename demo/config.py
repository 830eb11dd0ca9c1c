"""The simulator's configuration file: ``{"api_base_url": ..., "seed": 0, "lenders": [...]}``.

Read by ``manage.py simulate``, ``manage.py simulate_partners`` and ``python -m demo.cli``;
written by the demo seed (``var/simulator.json``, with the simulated lenders' keys and
webhook secrets, so it is readable by its owner only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo.lenders import SimulatedLender, SimulatorConfigError

__all__ = [
    "SimulatorConfig",
    "SimulatorConfigError",
    "check_unique_slugs",
    "load_config",
    "parse_config",
    "write_config",
]


@dataclass(frozen=True)
class SimulatorConfig:
    lenders: tuple[SimulatedLender, ...]
    api_base_url: str | None = None
    seed: int = 0


def parse_config(data: object) -> SimulatorConfig:
    """Validate ``{"api_base_url": ..., "seed": 0, "lenders": [{...}, ...]}``."""
    if not isinstance(data, dict):
        raise SimulatorConfigError("config must be a JSON object with a 'lenders' list")
    unknown = sorted(set(data) - {"api_base_url", "lenders", "seed"})
    if unknown:
        raise SimulatorConfigError(
            f"unknown config field(s) {', '.join(unknown)} (known: api_base_url, lenders, seed)"
        )
    api_base_url = data.get("api_base_url")
    if api_base_url is not None:
        parts = urlsplit(api_base_url) if isinstance(api_base_url, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
            raise SimulatorConfigError(
                f"api_base_url must be an absolute http(s) URL or null, got {api_base_url!r}"
            )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SimulatorConfigError(f"seed must be an integer, got {seed!r}")
    raw_lenders = data.get("lenders")
    if not isinstance(raw_lenders, list) or not raw_lenders:
        raise SimulatorConfigError("config needs a non-empty 'lenders' list")
    lenders = tuple(SimulatedLender.from_dict(item) for item in raw_lenders)
    check_unique_slugs(lenders)
    return SimulatorConfig(lenders=lenders, api_base_url=api_base_url, seed=seed)


def load_config(path: str | Path) -> SimulatorConfig:
    """Read and validate a JSON config file (see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SimulatorConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimulatorConfigError(f"config file {path} is not valid JSON: {exc}") from None
    return parse_config(data)


def check_unique_slugs(lenders: Sequence[SimulatedLender]) -> None:
    seen: set[str] = set()
    for lender in lenders:
        if lender.slug in seen:
            raise SimulatorConfigError(f"duplicate lender slug {lender.slug!r}")
        seen.add(lender.slug)


def write_config(
    path: Path, *, api_base_url: str | None, seed: int, lenders: Sequence[Mapping[str, Any]]
) -> None:
    """Write a config file that :func:`load_config` reads back; owner-only, as it holds
    the lenders' API keys and webhook secrets."""
    path.write_text(
        json.dumps({"api_base_url": api_base_url, "seed": seed, "lenders": list(lenders)}, indent=2)
    )
    path.chmod(0o600)
