"""Validation of policy sets: the real files with one edit each, refused with `file:line: reason`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consent_svc.policies.load import PolicyError, build_policies, load_policies, read_files

FILES = read_files(Path(__file__).parents[2] / "policies")


def edited(name: str, old: str, new: str) -> dict[str, str]:
    """The real files with the first `old` in `name` replaced by `new`."""
    assert old in FILES[name], f"{old!r} is no longer in {name}: update the test"
    return {**FILES, name: FILES[name].replace(old, new, 1)}


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def problems(files: dict[str, str]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        build_policies(files)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_the_real_policies_load():
    policies = build_policies(FILES)
    assert policies.version.startswith(policies.regions.version + "+")
    assert policies.files == FILES


# (file, old text, new text, the text on the line the error must name, the reason)
CASES = [
    pytest.param(
        "regimes/us_va.toml",
        "[dsar]",
        '[[rules]]\npurposes = ["telepathy"]\nmodel = "opt_in"\n\n[dsar]',
        '"telepathy"',
        "unknown purpose `telepathy` (not in purposes.toml)",
        id="unknown purpose in a rule",
    ),
    pytest.param(
        "regimes/us_co.toml",
        'purposes = ["targeted_advertising", "sale", "share"]\nhonour_from',
        'purposes = ["targeted_advertising", "sale", "sharing"]\nhonour_from',
        '"sharing"',
        "unknown purpose `sharing` (not in purposes.toml)",
        id="unknown purpose in gpc",
    ),
    pytest.param(
        "regimes/uk_gdpr.toml",
        'purposes = ["analytics", "profiling"]\nrule',
        'purposes = ["analytics", "profilng"]\nrule',
        '"profilng"',
        "unknown purpose `profilng` (not in purposes.toml)",
        id="unknown purpose in minors",
    ),
    pytest.param(
        "regions.toml",
        'ch_fadp = ["CH"]',
        'ch_fadp = ["CH", "GB"]',
        'ch_fadp = ["CH", "GB"]',
        "region `GB` is in two regimes (`uk_gdpr` and `ch_fadp`)",
        id="a region in two regimes: the second occurrence",
    ),
    pytest.param(
        "regions.toml",
        'us_federal = ["US"]',
        'us_federal = ["US", "US-CA"]',
        'us_ca = ["US-CA"]',
        "region `US-CA` is in two regimes (`us_federal` and `us_ca`)",
        id="a subdivision in two regimes: the second occurrence",
    ),
    pytest.param(
        "regions.toml",
        'uk_gdpr = ["GB"]',
        'uk_gdpr = ["UK"]',
        'uk_gdpr = ["UK"]',
        "`UK` is not an ISO 3166-1 or 3166-2 code",
        id="invalid region code",
    ),
    pytest.param(
        "regions.toml",
        'ca_qc = ["CA-QC"]',
        'ca_qc = ["CA-QQ"]',
        "CA-QQ",
        "`CA-QQ` is not an ISO 3166-1 or 3166-2 code",
        id="invalid subdivision code",
    ),
    pytest.param(
        "regions.toml",
        'au_privacy = ["AU"]',
        'au_privacy = ["AU", "ZZ"]',
        '"ZZ"',
        "`ZZ` is not an ISO 3166-1 or 3166-2 code",
        id="the unknown region cannot be mapped",
    ),
    pytest.param(
        "regions.toml",
        'jp_appi = ["JP"]',
        'jp_appi = ["JP"]\nkr_pipa = ["KR"]',
        "kr_pipa",
        "regime `kr_pipa` has no file in regimes/",
        id="a mapped regime without a file",
    ),
    pytest.param(
        "regimes/us_va.toml",
        'extends = "us_federal"',
        'extends = "us_federall"',
        "extends = ",
        "extends unknown regime `us_federall`",
        id="unknown extends",
    ),
    pytest.param(
        "regimes/ch_fadp.toml",
        'id = "ch_fadp"',
        'id = "ch_nfadp"',
        "ch_nfadp",
        "regime id `ch_nfadp` must match its file name",
        id="id differs from the file name",
    ),
    pytest.param(
        "regimes/uk_gdpr.toml",
        "valid_from = 2026-02-05",
        "valid_from = 2026-02-05\nvalid_to = 2026-02-05",
        "valid_to",
        "valid_to must be after valid_from",
        id="empty validity window",
    ),
    pytest.param(
        "regimes/eu_gdpr.toml",
        "FR = 395",
        "FX = 395",
        "FX",
        "`FX` is not an ISO 3166 code",
        id="invalid region in max_age_days_by_region",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "needle", "reason"), CASES)
def test_a_bad_policy_set_is_refused_naming_the_file_line_and_reason(name, old, new, needle, reason):
    files = edited(name, old, new)
    assert f"{name}:{line_of(files[name], needle)}: {reason}" in problems(files)


def test_a_purpose_without_a_base_model_is_refused_naming_the_regime_file():
    files = edited(
        "regimes/jp_appi.toml",
        '"personalization", "profiling", "analytics"',
        '"personalization", "analytics"',
    )
    assert problems(files) == [
        "regimes/jp_appi.toml: no model for purpose `profiling` (add it to a [[rules]] entry without valid_from)"
    ]


def test_a_dated_rule_alone_is_no_base_model():
    files = edited(
        "regimes/uk_gdpr.toml",
        'purposes = ["analytics"]\nmodel = "opt_in"',
        'purposes = ["personalization"]\nmodel = "opt_in"\nvalid_from = 2020-01-01',
    )
    assert "regimes/uk_gdpr.toml: no model for purpose `analytics`" in problems(files)[0]


def test_extends_forming_a_cycle_is_refused_in_every_regime_on_it():
    files = edited("regimes/ca_pipeda.toml", 'id = "ca_pipeda"', 'id = "ca_pipeda"\nextends = "ca_qc"')
    assert problems(files) == [
        f"regimes/ca_pipeda.toml:{line_of(files['regimes/ca_pipeda.toml'], 'extends = ')}: "
        "`extends` forms a cycle through `ca_pipeda`",
        f"regimes/ca_qc.toml:{line_of(files['regimes/ca_qc.toml'], 'extends = ')}: `extends` forms a cycle through `ca_qc`",
    ]


def test_a_child_regime_takes_what_it_leaves_out_from_its_parent():
    files = edited("regimes/ca_qc.toml", 'purposes = ["analytics"]', "purposes = []")
    policies = build_policies(files)
    (child,) = [rule for rule in policies.regimes["ca_qc"].rules if "analytics" in rule.purposes]
    (parent,) = [rule for rule in policies.regimes["ca_pipeda"].rules if "analytics" in rule.purposes]
    assert child.model == parent.model == "opt_out" and child.source == parent.source


def test_a_child_that_names_a_purpose_only_in_a_dated_rule_has_no_base_model_for_it():
    files = edited(
        "regimes/ca_qc.toml",
        'purposes = ["analytics"]\nmodel = "opt_out"',
        'purposes = ["analytics"]\nmodel = "opt_out"\nvalid_from = 2030-01-01',
    )
    assert problems(files) == [
        "regimes/ca_qc.toml: no model for purpose `analytics` (add it to a [[rules]] entry without valid_from)"
    ]


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("regimes/jp_appi.toml", 'model = "opt_out"', "model = opt_out"),
        ("regimes/us_va.toml", "in_force_from = 2023-01-01", "in_force_from = 2023-13-01"),
        ("regions.toml", 'default = "strict_default"', 'default = "strict_default'),
    ],
)
def test_a_toml_syntax_error_names_the_file_and_line(name, old, new):
    files = edited(name, old, new)
    (problem,) = problems(files)
    line = line_of(files[name], new.splitlines()[-1])
    assert problem.startswith(f"{name}: ") and re.search(rf"\(at line {line}, column \d+\)", problem), problem


@pytest.mark.parametrize(
    ("name", "old", "new", "field"),
    [
        ("regimes/us_de.toml", 'rule = "opt_in"', 'rule = "guardian"', "rule"),
        ("regimes/za_popia.toml", 'response = "30 days"', 'response = "30 weeks"', "response"),
        ("regimes/au_privacy.toml", "below = 15", "below = 0", "below"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_field_and_its_line(name, old, new, field):
    files = edited(name, old, new)
    (problem,) = problems(files)
    assert problem.startswith(f"{name}:{line_of(files[name], new)}: ") and f".{field}`" in problem, problem


def test_a_bad_value_in_a_later_rule_names_that_rules_line():
    files = edited("regimes/us_va.toml", 'model = "opt_in"', 'model = "maybe"')
    (problem,) = problems(files)
    assert problem.startswith(f"regimes/us_va.toml:{line_of(files['regimes/us_va.toml'], 'maybe')}: ")


def test_a_purpose_given_two_base_models_names_the_duplicate_rule():
    files = edited(
        "regimes/us_co.toml", "[dsar]", '[[rules]]\npurposes = ["sale"]\nmodel = "opt_in"\n\n[dsar]'
    )
    duplicate = line_of(files["regimes/us_co.toml"], 'purposes = ["sale"]')
    assert problems(files) == [f"regimes/us_co.toml:{duplicate}: purpose `sale` has two models"]


def test_the_version_is_stable_for_the_same_content():
    assert load_policies(Path(__file__).parents[2] / "policies").version == build_policies(FILES).version
    assert build_policies(FILES).version == build_policies(dict(FILES)).version
    assert build_policies(FILES).version == build_policies(dict(reversed(FILES.items()))).version


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_version_changes_when_any_files_content_changes(name):
    changed = {**FILES, name: FILES[name] + "\n# edited\n"}
    assert build_policies(changed).version != build_policies(FILES).version


def test_an_empty_validity_window_on_a_minors_rule_is_refused():
    files = edited(
        "regimes/us_ct.toml", "valid_from = 2024-10-01", "valid_from = 2024-10-01\nvalid_to = 2024-10-01"
    )
    assert any("valid_to must be after valid_from" in problem for problem in problems(files))


def test_a_base_model_that_ends_is_refused():
    """Without a rule after it, the purpose would have no model at all from that day on."""
    files = edited("regimes/us_va.toml", 'model = "opt_in"', 'model = "opt_in"\nvalid_to = 2030-01-01')
    assert any("a base model (no valid_from) cannot end" in p for p in problems(files))


def test_more_purposes_than_a_check_can_name_are_refused():
    extra = "".join(f'\n[[purposes]]\nid = "p{i:03d}"\ntitle = "P{i}"\n' for i in range(250))
    files = {**FILES, "purposes.toml": FILES["purposes.toml"] + extra}
    assert any("at most 255 purposes" in p for p in problems(files))


def test_a_known_child_rule_naming_an_unmapped_opt_out_is_refused():
    files = edited("gpp.toml", 'TargetedAdvertisingOptOut = "targeted_advertising"\n', "")
    assert problems(files) == [
        "gpp.toml: known_child.usnat names `TargetedAdvertisingOptOut`, which [opt_outs] does not map"
    ]


def test_a_known_child_rule_naming_no_gpp_field_is_refused():
    files = edited("gpp.toml", 'usca = [["SaleOptOut"]', 'usca = [["SellOptOut"]')
    [problem] = problems(files)
    assert problem.startswith("gpp.toml") and "SellOptOut" in problem
