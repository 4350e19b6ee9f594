"""Every regime in `policies/` as the engine decides it: pure, no database, at fixed dates.

The expectations are written here from `shared/domain/regions.md`, not read back from the policy files. A
case is one line, `region purpose day [what the caller knows] [records] -> allow|deny reason regime`:

    US-CT targeted_advertising 2026-07-01 age=17 granted -> deny minor_prohibited us_ct

- day: `today` (2026-11-23) or an ISO date; the check is made at noon UTC that day.
- context: `age=N`, `gpc`, `sensitive` (the use involves sensitive data), `customer` (an existing customer).
- the purpose's record: `granted`, `denied`, `withdrawn`, `parent` (granted by a parent), `expired` (its
  expires_at passed yesterday), `old:N` (granted N days ago), `regranted` (granted after a GPC signal had
  been recorded as the person's refusal); none when absent.
- `sens=<record>`: the person's `sensitive_data` record, same vocabulary.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from consent_svc.decisions.engine import ConsentState, Context, Rulebook
from consent_svc.policies.load import load_policies

POLICIES = load_policies(Path(__file__).parents[2] / "policies")
BOOK = Rulebook(POLICIES)
TODAY = date(2026, 11, 23)
PURPOSES = (
    "strictly_necessary",
    "email_marketing",
    "sms_marketing",
    "personalization",
    "analytics",
    "targeted_advertising",
    "sale",
    "share",
    "sensitive_data",
    "profiling",
)
RECORDS = ("granted", "denied", "withdrawn", "parent", "expired", "regranted")
FLAGS = {"gpc": "gpc", "sensitive": "sensitive", "customer": "existing_customer"}


def record(spec: str, at: datetime) -> ConsentState:
    status, actor, collected, expires = spec, "subject", at - timedelta(days=30), None
    if spec == "parent":
        status, actor = "granted", "parent"
    elif spec == "expired":
        status, expires = "granted", at - timedelta(days=1)
    elif spec.startswith("old:"):
        status, collected = "granted", at - timedelta(days=int(spec[4:]))
    elif spec == "regranted":
        return ConsentState(uuid.uuid4(), "granted", collected, None, actor, regranted_after_gpc=True)
    return ConsentState(uuid.uuid4(), status, collected, expires, actor)


def case(line: str):
    """One line of a table as a pytest param; anything it does not understand fails loudly."""
    given, arrow, outcome = line.partition("->")
    region, purpose, day, *flags = given.split()
    verdict, reason, regime = outcome.split()
    assert arrow and verdict in ("allow", "deny") and purpose in PURPOSES, line
    context: dict[str, object] = {}
    rec = sens = None
    for flag in flags:
        if flag.startswith("age="):
            context["age"] = int(flag[4:])
        elif flag in FLAGS:
            context[FLAGS[flag]] = True
        elif flag in RECORDS or flag.startswith("old:"):
            rec = flag
        elif flag.startswith("sens=") and (flag[5:] in RECORDS or flag[5:].startswith("old:")):
            sens = flag[5:]
        else:
            raise ValueError(f"unknown {flag!r} in {line!r}")
    expected = (verdict == "allow", reason, regime)
    return pytest.param(region, purpose, _day(day), rec, sens, context, expected, id=" ".join(line.split()))


def _day(text: str) -> date:
    return TODAY if text == "today" else date.fromisoformat(text)


def table(text: str) -> list:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [case(line) for line in lines if line]


def decide(region, purpose, day, rec=None, sens=None, **context):
    """The engine's (allowed, reason, regime) at noon UTC on `day`."""
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    states = {
        p: record(spec, at) for p, spec in ((purpose, rec), ("sensitive_data", sens)) if spec is not None
    }
    outcome = BOOK.decide(region, purpose, Context(**context), states, at)
    if outcome.reason in ("consent_granted", "consent_denied", "consent_withdrawn", "consent_expired"):
        assert outcome.record_id == states[purpose].record_id  # the decision names the record it rests on
    return outcome.allowed, outcome.reason, outcome.regime


def us(region: str) -> str:
    """`us_federal` for the country, `us_<state>` for a state with its own law."""
    return f"us_{region[3:].lower()}" if "-" in region else "us_federal"


def eve(day: str) -> date:
    return date.fromisoformat(day) - timedelta(days=1)


FIELDS = ("region", "purpose", "day", "rec", "sens", "context", "expected")


# --- 1. The model of every purpose in every regime, and what each kind of record does to it -----------------

# One letter per purpose in PURPOSES order (strictly necessary, e-mail, SMS, personalization, analytics,
# targeted ads, sale, share, sensitive data, profiling): N not required, I opt-in, O opt-out, P prohibited,
# S sensitive data only where strictly necessary (no record helps).
US_OPT_IN_SENSITIVE = "VA CO CT TX OR MT DE NE NH NJ TN MN IN KY RI FL".split()
MODELS = [
    ("DE", "today", "eu_gdpr", "NIIIIIIIII"),
    ("GB", "2026-02-04", "uk_gdpr", "NIIIIIIIII"),
    ("GB", "today", "uk_gdpr", "NIIIOIIIIO"),  # DUAA from 2026-02-05: analytics and ADM opt-out
    ("CH", "today", "ch_fadp", "NIIOOOOOIO"),
    ("BR", "today", "br_lgpd", "NOOOOOOOIO"),
    ("CA", "today", "ca_pipeda", "NIIOOOIIIO"),
    ("CA-QC", "today", "ca_qc", "NIIIOIIIII"),
    ("IN", "2027-05-13", "in_dpdp", "NIIIIIIIII"),
    ("JP", "today", "jp_appi", "NIIOOIIIIO"),
    ("ZA", "today", "za_popia", "NIIOOOIIIO"),
    ("AU", "today", "au_privacy", "NIIOOOIIIO"),
    ("US", "today", "us_federal", "NOIOOOOOOO"),
    ("US-CA", "today", "us_ca", "NOIOOOOOOO"),
    *[(f"US-{state}", "today", f"us_{state.lower()}", "NOIOOOOOIO") for state in US_OPT_IN_SENSITIVE],
    ("US-UT", "today", "us_ut", "NOIOOOOOOO"),
    ("US-IA", "today", "us_ia", "NOIOOOOOOO"),
    ("US-MD", "today", "us_md", "NOIOOOOOSO"),
    ("ZZ", "today", "strict_default", "NIIIIIIIII"),  # unknown
    ("AQ", "today", "strict_default", "NIIIIIIIII"),  # a real region mapped nowhere
]


FIXED = {
    "N": "allow not_required",
    "P": "deny purpose_prohibited",
    "S": "deny sensitive_strictly_necessary_only",
}


def _expected(letter: str, rec: str | None, unknown: bool) -> str:
    if letter in FIXED:
        return FIXED[letter]
    if rec in ("denied", "withdrawn"):
        return f"deny consent_{rec}"
    if rec == "granted":
        return "allow consent_granted"
    if letter == "O":  # no record, or an expired grant, which counts as none
        return "allow opt_out_default_allow"
    if unknown:
        return "deny unknown_region_strict_default"
    return "deny consent_expired" if rec == "expired" else "deny no_consent_opt_in_required"


@pytest.mark.parametrize(("region", "day", "regime", "letters"), MODELS)
def test_each_purpose_follows_its_regimes_model_whatever_the_record(region, day, regime, letters):
    """One regime's ten purposes by five records (none, granted, denied, withdrawn, expired) at once: a
    failure shows the differing `purpose record` keys."""
    expected, actual = {}, {}
    for purpose, letter in zip(PURPOSES, letters, strict=True):
        for rec in (None, "granted", "denied", "withdrawn", "expired"):
            verdict, reason = _expected(letter, rec, region in ("ZZ", "AQ")).split()
            key = f"{purpose} {rec or 'no-record'}"
            expected[key] = (verdict == "allow", reason, regime)
            actual[key] = decide(region, purpose, _day(day), rec)
    assert actual == expected


def test_the_model_table_covers_every_regime_and_every_mapped_regime_has_a_file():
    assert {regime for _, _, regime, _ in MODELS} == set(POLICIES.regimes)
    assert set(POLICIES.regions.regimes) == set(POLICIES.regimes) - {"strict_default"}
    assert POLICIES.purpose_ids == set(PURPOSES)


# --- 2. Which regime a region gets, and on which day --------------------------------------------------------

# A state's effective date: the day before, the federal overlay decides (sensitive data there is opt-out);
# from that day the state's own sensitive-data rule does.
STATE_IN_FORCE = """
    US-CA  2020-01-01  allow  opt_out_default_allow
    US-VA  2023-01-01  deny   no_consent_opt_in_required
    US-CO  2023-07-01  deny   no_consent_opt_in_required
    US-CT  2023-07-01  deny   no_consent_opt_in_required
    US-UT  2023-12-31  allow  opt_out_default_allow
    US-TX  2024-07-01  deny   no_consent_opt_in_required
    US-OR  2024-07-01  deny   no_consent_opt_in_required
    US-MT  2024-10-01  deny   no_consent_opt_in_required
    US-FL  2024-07-01  deny   no_consent_opt_in_required
    US-IA  2025-01-01  allow  opt_out_default_allow
    US-DE  2025-01-01  deny   no_consent_opt_in_required
    US-NE  2025-01-01  deny   no_consent_opt_in_required
    US-NH  2025-01-01  deny   no_consent_opt_in_required
    US-NJ  2025-01-15  deny   no_consent_opt_in_required
    US-TN  2025-07-01  deny   no_consent_opt_in_required
    US-MN  2025-07-31  deny   no_consent_opt_in_required
    US-MD  2025-10-01  deny   sensitive_strictly_necessary_only
    US-IN  2026-01-01  deny   no_consent_opt_in_required
    US-KY  2026-01-01  deny   no_consent_opt_in_required
    US-RI  2026-01-01  deny   no_consent_opt_in_required
""".split()
IN_FORCE_CASES = [
    line
    for region, day, verdict, reason in zip(*[iter(STATE_IN_FORCE)] * 4, strict=True)
    for line in (
        case(f"{region} sensitive_data {eve(day)} -> allow opt_out_default_allow us_federal"),
        case(f"{region} sensitive_data {day} -> {verdict} {reason} {us(region)}"),
    )
] + table("""
    # Quebec's Law 25 consent rules from 2023-09-22; before, PIPEDA (its parent).
    CA-QC personalization 2023-09-21 -> allow opt_out_default_allow ca_pipeda
    CA-QC personalization 2023-09-22 -> deny no_consent_opt_in_required ca_qc
    # No parent: before the law the default's rules, but the region is known (not "unknown region").
    CH analytics 2023-08-31 -> deny no_consent_opt_in_required strict_default
    CH analytics 2023-09-01 -> allow opt_out_default_allow ch_fadp
    BR analytics 2020-09-17 -> deny no_consent_opt_in_required strict_default
    BR analytics 2020-09-18 -> allow opt_out_default_allow br_lgpd
    ZA analytics 2021-06-30 -> deny no_consent_opt_in_required strict_default
    ZA analytics 2021-07-01 -> allow opt_out_default_allow za_popia
    # India: DPDP duties from 2027-05-13; until then the strict default, whose GPC binds (DPDP has none).
    IN email_marketing today -> deny no_consent_opt_in_required strict_default
    IN email_marketing 2027-05-12 gpc -> deny gpc_opt_out strict_default
    IN email_marketing 2027-05-13 gpc -> deny no_consent_opt_in_required in_dpdp
    IN email_marketing 2027-05-13 gpc granted -> allow consent_granted in_dpdp
""")

REGION_CASES = table("""
    US-WA sensitive_data today -> allow opt_out_default_allow us_federal      # a state without a law
    US-PR sms_marketing today -> deny no_consent_opt_in_required us_federal
    US-IN sale today -> allow opt_out_default_allow us_in                    # Indiana, not India
    GB-SCT analytics today -> allow opt_out_default_allow uk_gdpr
    CA-ON personalization today -> allow opt_out_default_allow ca_pipeda
    CA-BC sale today -> deny no_consent_opt_in_required ca_pipeda
    FR-IDF analytics today -> deny no_consent_opt_in_required eu_gdpr
    ZZ analytics today -> deny unknown_region_strict_default strict_default
    AQ analytics today -> deny unknown_region_strict_default strict_default
    AQ analytics today granted -> allow consent_granted strict_default
    NZ email_marketing today expired -> deny unknown_region_strict_default strict_default
""")


@pytest.mark.parametrize(FIELDS, IN_FORCE_CASES)
def test_before_a_regimes_in_force_date_its_parent_or_the_default_decides(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


@pytest.mark.parametrize(FIELDS, REGION_CASES)
def test_subdivisions_fall_back_to_their_country_and_unmapped_regions_to_the_strict_default(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


# --- 3. Dated purpose rules ---------------------------------------------------------------------------------

# UK DUAA 2025 from 2026-02-05: analytics storage exempt with a means to object (unverified details); solely
# automated decisions allowed with safeguards (Art 22A-D), but special-category data still needs consent.
DATED_CASES = table("""
    GB analytics 2026-02-04 -> deny no_consent_opt_in_required uk_gdpr
    GB analytics 2026-02-05 -> allow opt_out_default_allow uk_gdpr
    GB analytics 2026-02-05 denied -> deny consent_denied uk_gdpr
    GB profiling 2026-02-04 -> deny no_consent_opt_in_required uk_gdpr
    GB profiling 2026-02-05 -> allow opt_out_default_allow uk_gdpr
    GB profiling 2026-02-05 withdrawn -> deny consent_withdrawn uk_gdpr
    GB profiling 2026-02-05 sensitive -> deny sensitive_opt_in_required uk_gdpr
    GB profiling 2026-02-05 sensitive sens=granted -> allow opt_out_default_allow uk_gdpr
""")


@pytest.mark.parametrize(FIELDS, DATED_CASES)
def test_a_dated_rule_replaces_the_base_model_from_its_valid_from(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


# --- 4. Global Privacy Control ------------------------------------------------------------------------------

# State, the table's UOOM date, and the law's effective date (the day before the UOOM date, if the law was not
# yet in force, the federal overlay decides).
GPC_FROM = """
    US-CO  2024-07-01  2023-07-01
    US-CT  2025-01-01  2023-07-01
    US-TX  2025-01-01  2024-07-01
    US-OR  2026-01-01  2024-07-01
    US-MT  2025-01-01  2024-10-01
    US-DE  2026-01-01  2025-01-01
    US-NE  2025-01-01  2025-01-01
    US-NH  2025-01-01  2025-01-01
    US-NJ  2025-07-15  2025-01-15
    US-MN  2025-07-31  2025-07-31
    US-MD  2025-10-01  2025-10-01
""".split()
NO_GPC_STATES = ("US-VA", "US-UT", "US-IA", "US-TN", "US-IN", "US-KY", "US-RI", "US-FL", "US")


def _gpc_cases():
    for region, honour, in_force in zip(*[iter(GPC_FROM)] * 3, strict=True):
        regime = us(region)
        then = regime if honour > in_force else "us_federal"
        yield f"{region} targeted_advertising {eve(honour)} gpc -> allow opt_out_default_allow {then}"
        yield f"{region} targeted_advertising {honour} gpc -> deny gpc_opt_out {regime}"
        yield f"{region} sale {honour} gpc -> deny gpc_opt_out {regime}"
        yield f"{region} share {honour} gpc -> deny gpc_opt_out {regime}"
        yield f"{region} sale {honour} gpc granted -> allow consent_granted {regime}"  # a grant prevails
        yield f"{region} sale {honour} gpc denied -> deny consent_denied {regime}"
        yield f"{region} analytics {honour} gpc -> allow opt_out_default_allow {regime}"  # not covered
        yield f"{region} email_marketing {honour} gpc -> allow opt_out_default_allow {regime}"
    for region in NO_GPC_STATES:
        yield f"{region} sale today gpc -> allow opt_out_default_allow {us(region)}"


GPC_CASES = [case(line) for line in _gpc_cases()] + table("""
    # California: since 2023-03-29, and the signal beats an earlier grant (regs 7025(c)(3)).
    US-CA share 2023-03-28 gpc -> allow opt_out_default_allow us_ca
    US-CA share 2023-03-29 gpc -> deny gpc_opt_out us_ca
    US-CA sale today gpc granted -> deny gpc_opt_out us_ca
    # ... but a grant asked for after the signal was recorded as the consumer's refusal stands (7025(c)(3)),
    # and only a parent's counts for a known child (1798.120(c)).
    US-CA sale today gpc regranted -> allow consent_granted us_ca
    US-CA sale today gpc regranted age=12 -> deny parental_consent_required us_ca
    US-CA sale today regranted -> allow consent_granted us_ca
    US-CA analytics today gpc -> allow opt_out_default_allow us_ca
    # No non-US regime makes GPC binding: opt-in purposes still need a grant, opt-out ones stay allowed.
    GB targeted_advertising today gpc -> deny no_consent_opt_in_required uk_gdpr
    GB targeted_advertising today gpc granted -> allow consent_granted uk_gdpr
    DE targeted_advertising today gpc granted -> allow consent_granted eu_gdpr
    CA-QC targeted_advertising today gpc granted -> allow consent_granted ca_qc
    JP targeted_advertising today gpc -> deny no_consent_opt_in_required jp_appi
    IN targeted_advertising 2027-06-01 gpc -> deny no_consent_opt_in_required in_dpdp
    CH targeted_advertising today gpc -> allow opt_out_default_allow ch_fadp
    BR targeted_advertising today gpc -> allow opt_out_default_allow br_lgpd
    CA targeted_advertising today gpc -> allow opt_out_default_allow ca_pipeda
    ZA targeted_advertising today gpc -> allow opt_out_default_allow za_popia
    AU targeted_advertising today gpc -> allow opt_out_default_allow au_privacy
    # The strict default honours it for every purpose, but a grant prevails.
    ZZ analytics today gpc -> deny gpc_opt_out strict_default
    ZZ analytics today gpc granted -> allow consent_granted strict_default
""")


@pytest.mark.parametrize(FIELDS, GPC_CASES)
def test_gpc_opts_out_where_and_from_when_the_regime_honours_it(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


# --- 5. Minors (the age the caller knows) -------------------------------------------------------------------

COPPA_ONLY = ("US", "US-VA", "US-UT", "US-TX", "US-IA", "US-NE", "US-TN", "US-IN", "US-KY", "US-RI", "US-FL")


def _coppa_cases():
    for region in COPPA_ONLY:
        regime = us(region)
        yield f"{region} targeted_advertising today age=12 -> deny parental_consent_required {regime}"
        yield f"{region} targeted_advertising today age=12 granted -> deny parental_consent_required {regime}"
        yield f"{region} targeted_advertising today age=12 parent -> allow consent_granted {regime}"
        yield f"{region} email_marketing today age=12 denied -> deny consent_denied {regime}"
        yield f"{region} targeted_advertising today age=13 -> allow opt_out_default_allow {regime}"


def _band_cases():
    """Delaware 13-17, New Hampshire 13-15 (unverified), New Jersey 13-16, Minnesota 13-16 (the wider
    reading): consent for sale, the parent's under 13 (COPPA)."""
    for region, below in (("US-DE", 18), ("US-NH", 16), ("US-NJ", 17), ("US-MN", 17)):
        regime = us(region)
        yield f"{region} sale today age=12 -> deny parental_consent_required {regime}"
        yield f"{region} sale today age=13 -> deny minor_opt_in_required {regime}"
        yield f"{region} sale today age={below - 1} -> deny minor_opt_in_required {regime}"
        yield f"{region} sale today age={below - 1} granted -> allow consent_granted {regime}"
        yield f"{region} sale today age={below} -> allow opt_out_default_allow {regime}"


MINORS_CASES = [case(line) for line in (*_coppa_cases(), *_band_cases())] + table("""
    US analytics today -> allow opt_out_default_allow us_federal                      # age unknown: no rule
    # California: under 16 opt-in, under 13 the parent (1798.120(c)).
    US-CA sale today age=12 granted -> deny parental_consent_required us_ca
    US-CA sale today age=12 parent -> allow consent_granted us_ca
    US-CA sale today age=13 -> deny minor_opt_in_required us_ca
    US-CA sale today age=15 granted -> allow consent_granted us_ca
    US-CA sale today age=16 -> allow opt_out_default_allow us_ca
    # Colorado SB 24-041 from 2025-10-01: under 18 consent for TA, sale, profiling; under 13 the parent's.
    US-CO targeted_advertising 2025-09-30 age=17 -> allow opt_out_default_allow us_co
    US-CO targeted_advertising 2025-10-01 age=17 -> deny minor_opt_in_required us_co
    US-CO targeted_advertising 2025-10-01 age=17 granted -> allow consent_granted us_co
    US-CO targeted_advertising 2025-10-01 age=18 -> allow opt_out_default_allow us_co
    US-CO targeted_advertising 2025-10-01 age=12 granted -> deny parental_consent_required us_co
    US-CO targeted_advertising 2025-10-01 age=12 parent -> allow consent_granted us_co
    US-CO profiling 2025-10-01 age=17 -> deny minor_opt_in_required us_co
    US-CO analytics 2025-10-01 age=17 -> allow opt_out_default_allow us_co
    # Connecticut: under 18 consent for TA and sale from 2024-10-01; from 2026-07-01 TA and sale banned
    # (the sale ban unverified), profiling needs consent (SB 1295).
    US-CT targeted_advertising 2024-09-30 age=17 -> allow opt_out_default_allow us_ct
    US-CT targeted_advertising 2024-10-01 age=17 -> deny minor_opt_in_required us_ct
    US-CT targeted_advertising 2026-06-30 age=17 granted -> allow consent_granted us_ct
    US-CT targeted_advertising 2026-07-01 age=17 granted -> deny minor_prohibited us_ct
    US-CT targeted_advertising 2026-07-01 age=12 parent -> deny minor_prohibited us_ct
    US-CT targeted_advertising 2026-07-01 age=18 -> allow opt_out_default_allow us_ct
    US-CT sale 2026-06-30 age=17 granted -> allow consent_granted us_ct
    US-CT sale 2026-07-01 age=17 granted -> deny minor_prohibited us_ct
    US-CT share 2026-07-01 age=17 granted -> deny minor_prohibited us_ct
    US-CT profiling 2026-06-30 age=17 -> allow opt_out_default_allow us_ct
    US-CT profiling 2026-07-01 age=17 -> deny minor_opt_in_required us_ct
    US-CT profiling 2026-07-01 age=17 granted -> allow consent_granted us_ct
    # Oregon: 13-15 consent until 2025-12-31; from 2026-01-01 under 16 TA, sale, profiling banned (HB 2008).
    US-OR targeted_advertising 2025-12-31 age=12 -> deny parental_consent_required us_or
    US-OR targeted_advertising 2025-12-31 age=15 -> deny minor_opt_in_required us_or
    US-OR targeted_advertising 2025-12-31 age=15 granted -> allow consent_granted us_or
    US-OR targeted_advertising 2025-12-31 age=16 -> allow opt_out_default_allow us_or
    US-OR targeted_advertising 2026-01-01 age=12 parent -> deny minor_prohibited us_or
    US-OR targeted_advertising 2026-01-01 age=15 granted -> deny minor_prohibited us_or
    US-OR targeted_advertising 2026-01-01 age=16 -> allow opt_out_default_allow us_or
    US-OR sale 2026-01-01 age=15 granted -> deny minor_prohibited us_or
    US-OR profiling 2026-01-01 age=15 granted -> deny minor_prohibited us_or
    # Montana: 13-15 consent; SB 297 widens it to under 18 from 2025-10-01 (unverified details).
    US-MT sale 2025-09-30 age=15 -> deny minor_opt_in_required us_mt
    US-MT sale 2025-09-30 age=16 -> allow opt_out_default_allow us_mt
    US-MT sale 2025-10-01 age=17 -> deny minor_opt_in_required us_mt
    US-MT sale 2025-10-01 age=18 -> allow opt_out_default_allow us_mt
    US-NJ profiling today age=16 -> deny minor_opt_in_required us_nj
    US-DE profiling today age=17 -> allow opt_out_default_allow us_de
    # Maryland: under 18 (knew or should have known), TA and sale banned whatever the consent.
    US-MD targeted_advertising today age=12 parent -> deny minor_prohibited us_md
    US-MD targeted_advertising today age=17 granted -> deny minor_prohibited us_md
    US-MD targeted_advertising today age=18 -> allow opt_out_default_allow us_md
    US-MD sale today age=17 granted -> deny minor_prohibited us_md
    US-MD sale today age=18 -> allow opt_out_default_allow us_md
    US-MD analytics today age=17 -> allow opt_out_default_allow us_md

    # EU: Art 8 national ages; DSA 28(2) no profiling ads to minors since 2024-02-17.
    FR personalization today age=14 granted -> deny parental_consent_required eu_gdpr
    FR personalization today age=14 parent -> allow consent_granted eu_gdpr
    FR personalization today age=15 -> deny no_consent_opt_in_required eu_gdpr
    DE personalization today age=15 -> deny parental_consent_required eu_gdpr
    DE targeted_advertising 2024-02-16 age=17 granted -> allow consent_granted eu_gdpr
    DE targeted_advertising 2024-02-17 age=17 granted -> deny minor_prohibited eu_gdpr
    DE targeted_advertising 2024-02-17 age=18 granted -> allow consent_granted eu_gdpr
    # UK: 13 (DPA 2018 s.9); analytics and ADM leave consent on 2026-02-05, and the parent rule with them.
    GB personalization today age=12 -> deny parental_consent_required uk_gdpr
    GB personalization today age=12 granted -> deny parental_consent_required uk_gdpr
    GB personalization today age=12 parent -> allow consent_granted uk_gdpr
    GB personalization today age=13 -> deny no_consent_opt_in_required uk_gdpr
    GB analytics 2026-02-04 age=12 -> deny parental_consent_required uk_gdpr
    GB analytics 2026-02-05 age=12 -> allow opt_out_default_allow uk_gdpr
    GB email_marketing today age=12 -> deny no_consent_opt_in_required uk_gdpr
    # Switzerland: capacity of judgment ~13-16 (unverified): a parent below 16 where consent is the basis.
    CH email_marketing today age=15 granted -> deny parental_consent_required ch_fadp
    CH email_marketing today age=15 parent -> allow consent_granted ch_fadp
    CH email_marketing today age=15 customer -> deny parental_consent_required ch_fadp
    CH email_marketing today age=16 -> deny no_consent_opt_in_required ch_fadp
    CH targeted_advertising today age=15 -> allow opt_out_default_allow ch_fadp
    # Brazil: under 12 a parent (Art 14); ECA Digital bans profiling ads to under-18s from 2026-03-17
    # (17/18 March, unverified: the earlier day).
    BR personalization today age=11 -> deny parental_consent_required br_lgpd
    BR personalization today age=11 parent -> allow consent_granted br_lgpd
    BR personalization today age=12 -> allow opt_out_default_allow br_lgpd
    BR targeted_advertising 2026-03-16 age=17 -> allow opt_out_default_allow br_lgpd
    BR targeted_advertising 2026-03-17 age=11 parent -> deny minor_prohibited br_lgpd
    BR targeted_advertising 2026-03-17 age=17 granted -> deny minor_prohibited br_lgpd
    BR targeted_advertising 2026-03-17 age=18 -> allow opt_out_default_allow br_lgpd
    # Canada: under 13 a parent (OPC); Quebec under 14 (s.4.1), from 2023-09-22.
    CA analytics today age=12 -> deny parental_consent_required ca_pipeda
    CA analytics today age=13 -> allow opt_out_default_allow ca_pipeda
    CA-QC analytics today age=13 -> deny parental_consent_required ca_qc
    CA-QC analytics today age=13 parent -> allow consent_granted ca_qc
    CA-QC analytics today age=14 -> allow opt_out_default_allow ca_qc
    CA-QC analytics 2023-09-21 age=13 -> allow opt_out_default_allow ca_pipeda
    # India (from 2027-05-13): under 18 a parent; no tracking, monitoring or targeted ads at children (s.9).
    IN email_marketing 2027-06-01 age=17 granted -> deny parental_consent_required in_dpdp
    IN email_marketing 2027-06-01 age=17 parent -> allow consent_granted in_dpdp
    IN email_marketing 2027-06-01 age=18 granted -> allow consent_granted in_dpdp
    IN targeted_advertising 2027-06-01 age=17 parent -> deny minor_prohibited in_dpdp
    IN share 2027-06-01 age=17 parent -> deny minor_prohibited in_dpdp
    IN profiling 2027-06-01 age=17 parent -> deny minor_prohibited in_dpdp
    IN profiling 2027-06-01 age=18 granted -> allow consent_granted in_dpdp
    # Japan: about 15 and under a guardian (unverified), where consent is the basis.
    JP sale today age=15 granted -> deny parental_consent_required jp_appi
    JP sale today age=15 parent -> allow consent_granted jp_appi
    JP sale today age=16 granted -> allow consent_granted jp_appi
    JP analytics today age=15 -> allow opt_out_default_allow jp_appi
    # South Africa: under 18 a competent person, for every purpose (no legitimate interest for children).
    ZA analytics today age=17 -> deny parental_consent_required za_popia
    ZA analytics today age=17 parent -> allow consent_granted za_popia
    ZA analytics today age=18 -> allow opt_out_default_allow za_popia
    # Australia: capacity assumed from 15 (OAIC).
    AU email_marketing today age=14 -> deny parental_consent_required au_privacy
    AU email_marketing today age=14 parent -> allow consent_granted au_privacy
    AU email_marketing today age=15 -> deny no_consent_opt_in_required au_privacy
    AU targeted_advertising today age=14 -> allow opt_out_default_allow au_privacy
    # Unknown region: a known minor is never targeted or sold.
    ZZ targeted_advertising today age=17 granted -> deny minor_prohibited strict_default
    ZZ targeted_advertising today age=18 granted -> allow consent_granted strict_default
    ZZ email_marketing today age=15 parent -> allow consent_granted strict_default
""")


@pytest.mark.parametrize(FIELDS, MINORS_CASES)
def test_a_known_age_applies_the_strictest_minors_rule_in_force(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


# --- 6. Sensitive data --------------------------------------------------------------------------------------

OPT_IN_SENSITIVE = [
    *("DE eu_gdpr", "GB uk_gdpr", "CH ch_fadp", "BR br_lgpd", "CA ca_pipeda", "CA-QC ca_qc", "JP jp_appi"),
    *("ZA za_popia", "AU au_privacy", "ZZ strict_default"),
    *(f"US-{state} us_{state.lower()}" for state in US_OPT_IN_SENSITIVE),
]


def _opt_in_sensitive_cases():
    """opt_in: the use needs a live `sensitive_data` grant as well as its own basis."""
    for region, regime in (entry.split() for entry in OPT_IN_SENSITIVE):
        yield f"{region} sale today sensitive granted -> deny sensitive_opt_in_required {regime}"
        yield f"{region} sale today sensitive granted sens=expired -> deny sensitive_opt_in_required {regime}"
        yield f"{region} sale today sensitive granted sens=denied -> deny sensitive_opt_in_required {regime}"
        yield f"{region} sale today sensitive granted sens=granted -> allow consent_granted {regime}"
        yield f"{region} sale today sensitive withdrawn sens=granted -> deny consent_withdrawn {regime}"


SENSITIVE_CASES = [case(line) for line in _opt_in_sensitive_cases()] + table("""
    US-VA analytics today sensitive sens=granted -> allow opt_out_default_allow us_va
    US-VA strictly_necessary today sensitive -> allow not_required us_va
    US-FL sale today sensitive -> deny sensitive_opt_in_required us_fl        # selling SPI needs consent
    # opt_out (UT, IA) and limit_right (CA): allowed until the person refuses.
    US-UT analytics today sensitive -> allow opt_out_default_allow us_ut
    US-UT analytics today sensitive sens=denied -> deny sensitive_use_limited us_ut
    US-UT analytics today sensitive sens=withdrawn -> deny sensitive_use_limited us_ut
    US-UT analytics today sensitive sens=expired -> allow opt_out_default_allow us_ut
    US-IA analytics today sensitive -> allow opt_out_default_allow us_ia
    US-IA analytics today sensitive sens=denied -> deny sensitive_use_limited us_ia
    US-CA analytics today sensitive -> allow opt_out_default_allow us_ca
    US-CA analytics today sensitive sens=withdrawn -> deny sensitive_use_limited us_ca
    # strictly_necessary_only (MD): consent does not help; the sale of sensitive data is banned outright.
    US-MD analytics today sensitive granted sens=granted -> deny sensitive_strictly_necessary_only us_md
    US-MD sale today sensitive granted sens=granted -> deny sensitive_prohibited us_md
    US-MD strictly_necessary today sensitive -> allow not_required us_md
    US-MD sale today -> allow opt_out_default_allow us_md                             # not sensitive: opt-out
    # The federal overlay has no sensitive-data rule: the flag adds nothing there.
    US analytics today sensitive sens=denied -> allow opt_out_default_allow us_federal
    # EU and the strict default: never for ads (DSA 26(3)), consent or not; the UK has no such rule.
    DE targeted_advertising today sensitive granted sens=granted -> deny sensitive_prohibited eu_gdpr
    ZZ targeted_advertising today sensitive granted sens=granted -> deny sensitive_prohibited strict_default
    GB targeted_advertising today sensitive granted sens=granted -> allow consent_granted uk_gdpr
    # India: DPDP has no special category, so the flag adds nothing.
    IN analytics 2027-06-01 sensitive granted -> allow consent_granted in_dpdp
    IN analytics 2027-06-01 sensitive sens=granted -> deny no_consent_opt_in_required in_dpdp
""")


@pytest.mark.parametrize(FIELDS, SENSITIVE_CASES)
def test_sensitive_data_follows_the_regimes_sensitive_model(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


def test_a_childs_own_sensitive_data_consent_does_not_unlock_another_purpose():
    outcome = decide("DE", "personalization", TODAY, "parent", "granted", age=14, sensitive=True)
    assert outcome == (False, "parental_consent_required", "eu_gdpr")


# --- 7. Soft opt-in and consent age -------------------------------------------------------------------------

SOFT_OPT_IN = (
    "DE eu_gdpr",
    "GB uk_gdpr",
    "CH ch_fadp",
    "CA ca_pipeda",
    "CA-QC ca_qc",
    "ZA za_popia",
    "AU au_privacy",
)


def _soft_opt_in_cases():
    for region, regime in (entry.split() for entry in SOFT_OPT_IN):
        yield f"{region} email_marketing today customer -> allow soft_opt_in_existing_customer {regime}"
        yield f"{region} sms_marketing today customer -> allow soft_opt_in_existing_customer {regime}"
        yield f"{region} sms_marketing today customer expired -> allow soft_opt_in_existing_customer {regime}"
        yield f"{region} email_marketing today -> deny no_consent_opt_in_required {regime}"
        yield f"{region} email_marketing today customer denied -> deny consent_denied {regime}"
        yield f"{region} email_marketing today customer withdrawn -> deny consent_withdrawn {regime}"


SOFT_OPT_IN_CASES = [case(line) for line in _soft_opt_in_cases()] + table("""
    JP email_marketing today customer -> deny no_consent_opt_in_required jp_appi
    IN email_marketing 2027-06-01 customer -> deny no_consent_opt_in_required in_dpdp
    US sms_marketing today customer -> deny no_consent_opt_in_required us_federal      # TCPA written consent
    ZZ email_marketing today customer -> deny unknown_region_strict_default strict_default
""")


@pytest.mark.parametrize(FIELDS, SOFT_OPT_IN_CASES)
def test_existing_customers_may_be_messaged_only_where_a_soft_opt_in_exists(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected


CONSENT_AGE_CASES = table("""
    # CNIL ~13 months (395 days) and AEPD 24 months (730 days, for ES-* too); no statutory expiry elsewhere.
    FR analytics today old:394 -> allow consent_granted eu_gdpr
    FR analytics today old:395 -> deny consent_expired eu_gdpr
    ES analytics today old:729 -> allow consent_granted eu_gdpr
    ES analytics today old:730 -> deny consent_expired eu_gdpr
    ES-MD analytics today old:730 -> deny consent_expired eu_gdpr
    DE analytics today old:3650 -> allow consent_granted eu_gdpr
    # No other regime has a max age: an old grant stands until withdrawn or its own expires_at.
    GB sale today old:3650 -> allow consent_granted uk_gdpr
    CH sale today old:3650 sensitive sens=old:3650 -> allow consent_granted ch_fadp
    BR sale today old:3650 -> allow consent_granted br_lgpd
    CA sale today old:3650 -> allow consent_granted ca_pipeda
    CA-QC sale today old:3650 -> allow consent_granted ca_qc
    IN sale 2027-06-01 old:3650 -> allow consent_granted in_dpdp
    JP sale today old:3650 -> allow consent_granted jp_appi
    ZA sale today old:3650 -> allow consent_granted za_popia
    AU sale today old:3650 -> allow consent_granted au_privacy
    US-VA sensitive_data today old:3650 -> allow consent_granted us_va
    ZZ sale today old:3650 -> allow consent_granted strict_default
""")


@pytest.mark.parametrize(FIELDS, CONSENT_AGE_CASES)
def test_a_grant_older_than_the_regimes_max_age_counts_as_none(
    region, purpose, day, rec, sens, context, expected
):
    assert decide(region, purpose, day, rec, sens, **context) == expected
