"""Load and validate `policies/` at start-up; a bad file stops start-up naming the file and the reason."""

from __future__ import annotations

import functools
from pathlib import Path

import msgspec

from consent_svc.policies.types import Policies, PurposeCatalogue

UNKNOWN_REGION = "ZZ"


class PolicyError(Exception):
    pass


def _decode(path: Path, type_):
    try:
        return msgspec.toml.decode(path.read_bytes(), type=type_)
    except FileNotFoundError:
        raise PolicyError(f"{path}: missing") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from None


def load_policies(directory: str | Path) -> Policies:
    directory = Path(directory)
    purposes = _decode(directory / "purposes.toml", PurposeCatalogue)
    seen: set[str] = set()
    for index, purpose in enumerate(purposes.purposes):
        if purpose.id in seen:
            raise PolicyError(
                f"{directory / 'purposes.toml'}: purpose `{purpose.id}` declared twice (purposes[{index}])"
            )
        seen.add(purpose.id)
    return Policies(purposes=purposes)


@functools.lru_cache(maxsize=4096)
def canonical_region(code: str) -> str | None:
    """An ISO 3166-1 alpha-2 or ISO 3166-2 code in canonical case, or None if it names no region.

    `ZZ` (ISO's user-assigned "unknown") is accepted and means the region is not known.
    """
    import pycountry

    code = code.strip().upper()
    if code == UNKNOWN_REGION:
        return code
    if "-" in code:
        return code if pycountry.subdivisions.get(code=code) is not None else None
    return code if len(code) == 2 and pycountry.countries.get(alpha_2=code) is not None else None
