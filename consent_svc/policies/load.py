"""Load and validate `policies/`: a bad file stops start-up (and `consent-svc policies check`) naming the
file, the line where one can be found, and the reason."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import msgspec

from consent_svc.policies.types import (
    DidomiMapping,
    GppMapping,
    Policies,
    PurposeCatalogue,
    Regime,
    RegionMap,
    TcfMapping,
)

UNKNOWN_REGION = "ZZ"
PURPOSES_FILE = "purposes.toml"
REGIONS_FILE = "regions.toml"
TCF_FILE = "tcf.toml"  # optional, like GPP_FILE: versions kept from before they existed have none
GPP_FILE = "gpp.toml"
DIDOMI_FILE = "didomi.toml"
REGIMES_DIR = "regimes"
MAX_PURPOSES = 255


class PolicyError(Exception):
    """One line per problem: `file:line: reason`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _where(name: str, text: str, needle: str | None, occurrence: int = 1) -> str:
    """`name:line` of the n-th line holding `needle` as a quoted string or a key, else just `name`."""
    if needle is None:
        return name
    pattern = re.compile(rf'(^|[\s\[{{,.]){re.escape(needle)}\s*=|"{re.escape(needle)}"')
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.search(line.split("#", 1)[0]):
            seen += 1
            if seen == occurrence:
                return f"{name}:{number}"
    return name


def _table_start(lines: list[str], table: str, index: int) -> int:
    """The line number (0-based) of the index-th `[[table]]` header, or 0."""
    headers = [i for i, line in enumerate(lines) if line.strip() == f"[[{table}]]"]
    return headers[index] if index < len(headers) else 0


def _where_path(name: str, text: str, message: str) -> str:
    """`name:line` of the value msgspec names (`... - at `$.rules[2].model``): the n-th `[[rules]]` table is
    found first, then the key under it; without a match, the first line holding the last key."""
    path = re.search(r"at `\$((?:\.[a-z_]+(?:\[\d+\])?)+)`", message)
    if path is None:
        return name
    steps = re.findall(r"\.([a-z_]+)(?:\[(\d+)\])?", path.group(1))
    lines = text.splitlines()
    start = 0
    for key, index in steps[:-1]:
        if index:
            start = _table_start(lines, key, int(index))
    last = steps[-1][0]
    for number in range(start, len(lines)):
        if re.match(rf"\s*{re.escape(last)}\s*=", lines[number]):
            return f"{name}:{number + 1}"
    return _where(name, text, last)


def _where_in_rule(name: str, text: str, index: int, purpose: str) -> str:
    """`name:line` of a purpose named in the index-th `[[rules]]` table."""
    lines = text.splitlines()
    for number in range(_table_start(lines, "rules", index), len(lines)):
        if f'"{purpose}"' in lines[number].split("#", 1)[0]:
            return f"{name}:{number + 1}"
    return name


def _decode(name: str, text: str, type_):
    try:
        return msgspec.toml.decode(text, type=type_)
    except msgspec.ValidationError as exc:
        raise PolicyError([f"{_where_path(name, text, str(exc))}: {exc}"]) from None
    except msgspec.DecodeError as exc:  # TOML syntax: tomllib already says "(at line N, column M)"
        raise PolicyError([f"{name}: {exc}"]) from None


def read_files(directory: Path) -> dict[str, str]:
    """Every policy file as text, keyed by its path relative to the policies directory."""
    paths = [
        directory / PURPOSES_FILE,
        directory / REGIONS_FILE,
        *sorted((directory / REGIMES_DIR).glob("*.toml")),
        *(directory / name for name in (TCF_FILE, GPP_FILE, DIDOMI_FILE) if (directory / name).exists()),
    ]
    files = {}
    for path in paths:
        try:
            files[path.relative_to(directory).as_posix()] = path.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError) as exc:
            raise PolicyError(
                [f"{path}: {'missing' if isinstance(exc, FileNotFoundError) else 'not UTF-8'}"]
            ) from None
    return files


def load_policies(directory: str | Path) -> Policies:
    """The policy set the service runs on. Stricter than re-applying a stored version: the default regime must
    set request deadlines, since every request from an unknown region gets them."""
    policies = build_policies(read_files(Path(directory)))
    default = policies.regimes[policies.regions.default]
    if default.dsar is None:
        name = f"{REGIMES_DIR}/{default.id}.toml"
        raise PolicyError(
            [f"{name}: the default regime needs a [dsar] table (deadlines for unknown regions)"]
        )
    return policies


def build_policies(files: dict[str, str]) -> Policies:
    """Decode and cross-check a policy set; the same function re-applies a version kept in the database."""
    purposes: PurposeCatalogue = _decode(PURPOSES_FILE, files[PURPOSES_FILE], PurposeCatalogue)
    regions: RegionMap = _decode(REGIONS_FILE, files[REGIONS_FILE], RegionMap)
    declared: dict[str, tuple[str, Regime]] = {}
    problems: list[str] = []
    for name, text in files.items():
        if not name.startswith(REGIMES_DIR + "/"):
            continue
        regime: Regime = _decode(name, text, Regime)
        if f"{REGIMES_DIR}/{regime.id}.toml" != name:
            problems.append(f"{_where(name, text, 'id')}: regime id `{regime.id}` must match its file name")
        declared[regime.id] = (name, regime)

    purpose_ids = set()
    if (
        len(purposes.purposes) > MAX_PURPOSES
    ):  # a check names its purposes in one byte each (decisions/store.py)
        problems.append(f"{PURPOSES_FILE}: at most {MAX_PURPOSES} purposes")
    for purpose in purposes.purposes:
        if purpose.id in purpose_ids:
            problems.append(
                f"{_where(PURPOSES_FILE, files[PURPOSES_FILE], purpose.id, 2)}: purpose `{purpose.id}` declared twice"
            )
        purpose_ids.add(purpose.id)

    for name, regime in declared.values():
        problems += _check_regime(name, files[name], regime, purpose_ids, declared)
    region_regime = _check_regions(files[REGIONS_FILE], regions, declared, problems)
    if problems:
        raise PolicyError(problems)

    regimes = {regime_id: _merged(regime_id, declared) for regime_id in declared}
    for regime_id, regime in regimes.items():
        covered = {p for rule in regime.rules if rule.valid_from is None for p in rule.purposes}
        for missing in sorted(purpose_ids - covered):
            name, text = declared[regime_id][0], files[declared[regime_id][0]]
            problems.append(
                f"{name}: no model for purpose `{missing}` (add it to a [[rules]] entry without valid_from)"
            )
    tcf = None
    if TCF_FILE in files:
        tcf = _decode(TCF_FILE, files[TCF_FILE], TcfMapping)
        seen: set[str] = set()
        for entry in tcf.map:
            where = _where(TCF_FILE, files[TCF_FILE], entry.purpose)
            if entry.purpose not in purpose_ids:
                problems.append(f"{where}: unknown purpose `{entry.purpose}` (not in {PURPOSES_FILE})")
            if entry.purpose in seen:
                problems.append(f"{where}: purpose `{entry.purpose}` is mapped twice")
            seen.add(entry.purpose)
    gpp = None
    if GPP_FILE in files:
        gpp = _decode(GPP_FILE, files[GPP_FILE], GppMapping)
        for purpose in gpp.purposes():
            if purpose not in purpose_ids:
                where = _where(GPP_FILE, files[GPP_FILE], purpose)
                problems.append(f"{where}: unknown purpose `{purpose}` (not in {PURPOSES_FILE})")
        for section, entries in gpp.known_child.items():
            for field in sorted({f for fields in entries for f in fields} - gpp.opt_outs.keys()):
                problems.append(
                    f"{GPP_FILE}: known_child.{section} names `{field}`, which [opt_outs] does not map"
                )
    didomi = None
    if DIDOMI_FILE in files:
        didomi = _decode(DIDOMI_FILE, files[DIDOMI_FILE], DidomiMapping)
        for purpose in didomi.purposes.values():
            if purpose not in purpose_ids:
                where = _where(DIDOMI_FILE, files[DIDOMI_FILE], purpose)
                problems.append(f"{where}: unknown purpose `{purpose}` (not in {PURPOSES_FILE})")
    if problems:
        raise PolicyError(problems)

    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return Policies(
        purposes=purposes,
        regions=regions,
        regimes=regimes,
        version=f"{regions.version}+{digest.hexdigest()[:12]}",
        files=dict(files),
        region_regime=region_regime,
        tcf=tcf,
        gpp=gpp,
        didomi=didomi,
    )


def _check_regime(
    name: str, text: str, regime: Regime, purpose_ids: set[str], declared: dict[str, tuple[str, Regime]]
) -> list[str]:
    problems = []

    def unknown(ids: list[str]) -> None:
        for purpose in ids:
            if purpose not in purpose_ids:
                problems.append(
                    f"{_where(name, text, purpose)}: unknown purpose `{purpose}` (not in {PURPOSES_FILE})"
                )

    base: set[str] = set()
    for index, rule in enumerate(regime.rules):
        unknown(rule.purposes)
        if rule.valid_from is None:
            for purpose in rule.purposes:
                if purpose in base:
                    problems.append(
                        f"{_where_in_rule(name, text, index, purpose)}: purpose `{purpose}` has two models"
                    )
                base.add(purpose)
        if rule.valid_from is None and rule.valid_to is not None:
            problems.append(
                f"{_where(name, text, 'valid_to')}: a base model (no valid_from) cannot end; add a dated rule"
            )
        if rule.valid_from and rule.valid_to and rule.valid_to <= rule.valid_from:
            problems.append(f"{_where(name, text, 'valid_to')}: valid_to must be after valid_from")
    if regime.gpc:
        unknown(regime.gpc.purposes)
    for minors in regime.minors:
        unknown(minors.purposes)
        if minors.valid_from and minors.valid_to and minors.valid_to <= minors.valid_from:
            problems.append(f"{_where(name, text, 'valid_to')}: valid_to must be after valid_from")
        for region in minors.below_by_region:
            if canonical_region(region) != region:
                problems.append(f"{_where(name, text, region)}: `{region}` is not an ISO 3166 code")
    if regime.sensitive:
        unknown(regime.sensitive.prohibited_for)
    for region in regime.max_age_days_by_region:
        if canonical_region(region) != region:
            problems.append(f"{_where(name, text, region)}: `{region}` is not an ISO 3166 code")
    seen = {regime.id}
    parent = regime.extends
    while parent is not None:
        if parent not in declared:
            problems.append(f"{_where(name, text, 'extends')}: extends unknown regime `{parent}`")
            break
        if parent in seen:
            problems.append(f"{_where(name, text, 'extends')}: `extends` forms a cycle through `{parent}`")
            break
        seen.add(parent)
        parent = declared[parent][1].extends
    return problems


def _check_regions(
    text: str, regions: RegionMap, declared: dict[str, tuple[str, Regime]], problems: list[str]
) -> dict[str, str]:
    if regions.default not in declared:
        problems.append(
            f"{_where(REGIONS_FILE, text, 'default')}: default regime `{regions.default}` has no file"
        )
    region_regime: dict[str, str] = {}
    counts: dict[str, int] = {}
    for regime_id, codes in regions.regimes.items():
        if regime_id not in declared:
            problems.append(
                f"{_where(REGIONS_FILE, text, regime_id)}: regime `{regime_id}` has no file in {REGIMES_DIR}/"
            )
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
            if canonical_region(code) != code or code == UNKNOWN_REGION:
                problems.append(
                    f"{_where(REGIONS_FILE, text, code)}: `{code}` is not an ISO 3166-1 or 3166-2 code"
                )
            elif code in region_regime:
                problems.append(
                    f"{_where(REGIONS_FILE, text, code, counts[code])}: region `{code}` is in two regimes "
                    f"(`{region_regime[code]}` and `{regime_id}`)"
                )
            else:
                region_regime[code] = regime_id
    return region_regime


def _merged(regime_id: str, declared: dict[str, tuple[str, Regime]]) -> Regime:
    """A regime with what it leaves out taken from its `extends` chain: a purpose the child names in any rule
    takes only the child's rules; minors rules add up (federal COPPA and a state's own); the rest replaces."""
    regime = declared[regime_id][1]
    if regime.extends is None:
        return regime
    parent = _merged(regime.extends, declared)
    named = {p for rule in regime.rules for p in rule.purposes}
    inherited = [
        msgspec.structs.replace(rule, purposes=[p for p in rule.purposes if p not in named])
        for rule in parent.rules
        if any(p not in named for p in rule.purposes)
    ]
    return msgspec.structs.replace(
        regime,
        rules=inherited + list(regime.rules),
        gpc=regime.gpc or parent.gpc,
        minors=list(parent.minors) + list(regime.minors),
        sensitive=regime.sensitive or parent.sensitive,
        dsar=regime.dsar or parent.dsar,
        consent_max_age_days=regime.consent_max_age_days or parent.consent_max_age_days,
        max_age_days_by_region={**parent.max_age_days_by_region, **regime.max_age_days_by_region},
        sources=list(parent.sources) + list(regime.sources),
    )


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
