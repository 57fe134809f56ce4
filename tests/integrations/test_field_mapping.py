"""Field mapping overrides: validated on save, applied by syncs, shown by the preview (which writes nothing).
The shorthand of the first version (transform, map, default, date_format) first, then pipelines of steps, the
fields of each record kind, and the API's save and preview of pipelines."""

import re

import pytest

from syncplane.integrations import field_mapping
from syncplane.integrations.engine import run_sync, start_sync
from syncplane.integrations.errors import RecordError
from syncplane.integrations.models import IntegrationSyncLog
from syncplane.inventory.models import Asset, AssetSource

pytestmark = pytest.mark.django_db

RAW = {
    "sys_id": {"value": "abc", "display_value": "abc"},
    "u_lifecycle": {"value": "Live", "display_value": "Live"},
    "assigned_to.email": {"value": "Ann@Acme.Example", "display_value": "Ann@Acme.Example"},
    "u_scan": "18.05.2024 09:01",
    "nested": {"site": {"name": "Berlin"}},
}


def test_apply_sources_transforms_maps_and_dates():
    overrides = {
        "status": {"source": "u_lifecycle", "map": {"Live": "active"}, "default": "unknown"},
        "owner_email": {"source": "assigned_to.email", "transform": "lower"},
        "location": {"source": "nested.site.name", "transform": "upper"},
        "last_seen_at": {"source": "u_scan", "date_format": "%d.%m.%Y %H:%M"},
        "department": {"source": "missing"},
    }
    mapped = field_mapping.apply(overrides, RAW, {"name": "kept", "department": "was set"})
    assert mapped == {
        "name": "kept",
        "status": "active",
        "owner_email": "ann@acme.example",
        "location": "BERLIN",
        "last_seen_at": "2024-05-18T09:01:00+00:00",
        "department": "",
    }
    assert field_mapping.apply({"status": {"source": "u_lifecycle", "map": {}}}, RAW, {})["status"] == "unknown"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"colour": {"source": "x"}}, "colour: not a canonical field of asset records (one of name, asset_type"),
        ({"name": "x"}, "must be an object"),
        ({"name": {}}, "'source' must name"),
        ({"name": {"source": "x", "transform": "title"}}, "transform must be one of"),
        ({"status": {"source": "x", "map": {"Live": "alive"}}}, "alive not one of"),
        ({"status": {"source": "x", "default": "sideways"}}, "default must be one of"),
        ({"name": {"source": "x", "date_format": "%Y"}}, "only applies to the date fields (last_seen_at"),
        ({"name": {"source": "x", "colour": 1}}, "unknown option colour"),
    ],
)
def test_validation_names_the_attribute_and_the_reason(overrides, reason):
    problems = field_mapping.validate(overrides)
    assert problems and reason in " ".join(problems)
    assert field_mapping.validate({"status": {"source": "x", "map": {"Live": "active"}}}) == []


def test_the_api_refuses_a_bad_override_and_keeps_a_good_one(api_as, servicenow):
    admin = api_as("admin")
    url = f"/api/v1/integrations/{servicenow.pk}/"
    bad = admin.patch(url, {"field_mapping": {"status": {"source": "x", "map": {"a": "alive"}}}}, format="json")
    assert bad.status_code == 400 and "field_mapping" in bad.data and "alive" in str(bad.data)
    good = admin.patch(url, {"field_mapping": {"location": {"source": "department.display_value"}}},
                       format="json")
    assert good.status_code == 200 and good.data["field_mapping"]["location"]["source"]


def test_a_sync_applies_the_override(servicenow):
    servicenow.field_mapping = {"location": {"source": "department.display_value", "transform": "upper"}}
    servicenow.save()
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == "success"
    source = AssetSource.objects.filter(attributes__location__gt="").first()
    assert source.attributes["location"] == source.raw_payload["department"]["display_value"].upper()


def test_preview_shows_raw_and_mapped_side_by_side_and_writes_nothing(api_as, servicenow):
    servicenow.field_mapping = {"location": {"source": "department.display_value"}}
    servicenow.save()
    response = api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/preview/")
    assert response.status_code == 200, response.data
    assert response.data["total"] == 250 and len(response.data["records"]) == 20
    first = response.data["records"][0]
    assert first["raw"]["sys_id"]["value"] == first["external_id"]
    assert first["mapped"]["location"] == first["raw"]["department"]["display_value"]
    assert not Asset.objects.exists() and not AssetSource.objects.exists()
    assert not IntegrationSyncLog.objects.exists()
    assert api_as("viewer").post(f"/api/v1/integrations/{servicenow.pk}/preview/").status_code == 403


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"name": {"source": "x", "map": {"a": "b"}, "default": 5}}, "name: default must be a string, not int"),
        ({"location": {"source": "x", "default": None}}, "location: default must be a string, not null"),
        ({"last_seen_at": {"source": "x", "default": 5}}, "last_seen_at: default must be a string"),
        ({"last_seen_at": {"source": "x", "default": "yesterday"}}, "does not match ISO 8601"),
        ({"last_seen_at": {"source": "x", "date_format": "%d.%m.%Y", "default": "2024-05-18"}}, "%d.%m.%Y"),
        ({"last_seen_at": {"source": "x", "map": {"never": "soon"}}}, "map value of 'never'"),
        ({"compliance_score": {"source": "x", "default": "high"}}, "integer from 0 to 100"),
        ({"compliance_score": {"source": "x", "default": 101}}, "integer from 0 to 100"),
        ({"compliance_score": {"source": "x", "default": True}}, "integer from 0 to 100"),
        ({"compliance_score": {"source": "x", "map": {"good": "ninety"}}}, "map value of 'good'"),
    ],
)
def test_a_default_or_map_value_of_the_wrong_type_is_refused(overrides, reason):
    problems = field_mapping.validate(overrides)
    assert problems and reason in " ".join(problems), problems


def test_defaults_of_the_right_type_are_kept_and_applied():
    overrides = {
        "name": {"source": "missing", "map": {}, "default": "unnamed"},
        "compliance_score": {"source": "score", "map": {"good": "90"}, "default": None},
        "last_seen_at": {"source": "missing", "map": {}, "default": "18.05.2024", "date_format": "%d.%m.%Y"},
    }
    assert field_mapping.validate(overrides) == []
    mapped = field_mapping.apply(overrides, {"score": "good"}, {})
    assert mapped == {"name": "unnamed", "compliance_score": 90, "last_seen_at": "2024-05-18T00:00:00+00:00"}
    assert field_mapping.apply({"compliance_score": {"source": "s"}}, {"s": " 75 "}, {}) == {"compliance_score": 75}
    assert field_mapping.apply({"compliance_score": {"source": "s"}}, {}, {}) == {"compliance_score": None}
    with pytest.raises(RecordError, match="compliance_score"):
        field_mapping.apply({"compliance_score": {"source": "s"}}, {"s": "lots"}, {})


def test_a_wrongly_typed_default_saved_before_is_refused_by_the_api(api_as, servicenow):
    response = api_as("admin").patch(
        f"/api/v1/integrations/{servicenow.pk}/",
        {"field_mapping": {"name": {"source": "name", "map": {"x": "y"}, "default": 5}}}, format="json",
    )
    assert response.status_code == 400 and "default must be a string" in str(response.data["field_mapping"])


def test_preview_warns_per_field_about_rules_that_do_nothing_or_drop_records(api_as, servicenow):
    servicenow.field_mapping = {
        "location": {"source": "u_site"},  # in no record
        "status": {"source": "install_status", "map": {"Live": "active"}, "default": "unknown"},  # matches none
        "last_seen_at": {"source": "sys_updated_on", "date_format": "%d.%m.%Y %H:%M"},  # drops every record
        "department": {"source": "department.display_value"},  # fine
    }
    servicenow.save()
    response = api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/preview/")
    assert response.status_code == 200, response.data
    warnings = {(w["field"], w["problem"]): w["message"] for w in response.data["warnings"]}
    assert set(warnings) == {("location", "source_missing"), ("status", "map_unmatched"),
                             ("last_seen_at", "date_format")}, warnings
    assert "'u_site'" in warnings[("location", "source_missing")]
    assert "values seen" in warnings[("status", "map_unmatched")]
    assert "50 of 50 records" in warnings[("last_seen_at", "date_format")]
    assert all(record["error"] for record in response.data["records"])  # each shows why it would be left out


def test_preview_without_a_field_mapping_has_no_warnings(api_as, servicenow):
    response = api_as("operator").post(f"/api/v1/integrations/{servicenow.pk}/preview/")
    assert response.status_code == 200 and response.data["warnings"] == []


# --- pipelines of steps -----------------------------------------------------------------------------------------

PIPELINE_RAW = {
    "host": " LT-Fra-0042 ",
    "given": "Ann", "family": "Lee", "empty": "",
    "tags": "blue, green ,red",
    "site": {"value": "BER-01", "display_value": "Berlin 1"},
    "scanned": "18.05.2024",
    "roles": ["admin", "ops"],
}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"op": "lower"}], "lt-fra-0042"),
        ([{"op": "upper"}], "LT-FRA-0042"),
        ([{"op": "strip"}], "LT-Fra-0042"),
        ([{"op": "regex", "pattern": r"-(\w+)-"}], "Fra"),
        ([{"op": "regex", "pattern": r"(?P<site>[A-Z][a-z]+)", "group": "site"}], "Fra"),
        ([{"op": "regex", "pattern": r"\d+"}], "0042"),  # no group: the whole match
        ([{"op": "regex", "pattern": r"^x(\d)"}], ""),  # no match: empty
        ([{"op": "replace", "old": "-", "new": "_"}], "LT_Fra_0042"),
        ([{"op": "replace", "pattern": r"\d", "new": "#"}], "LT-Fra-####"),
        ([{"op": "replace", "pattern": r"-(\d+)", "new": r"\1"}], r"LT-Fra\1"),  # new is literal text
        ([{"op": "split", "sep": "-", "index": 1}], "Fra"),
        ([{"op": "split", "sep": "-", "index": -1}], "0042"),
        ([{"op": "split", "sep": "-", "index": 7}], ""),
        ([{"op": "split", "sep": "-"}, {"op": "lower"}], "lt"),
        ([{"op": "concat", "sources": ["given", "family"]}], "LT-Fra-0042 Ann Lee"),
        ([{"op": "concat", "sources": ["empty", "family"], "sep": "/"}], "LT-Fra-0042/Lee"),
        ([{"op": "map", "values": {"LT-Fra-0042": "known"}}], "known"),
        ([{"op": "map", "values": {"other": "x"}}], "LT-Fra-0042"),  # no fallback: kept
        ([{"op": "map", "values": {"other": "x"}, "fallback": "?"}], "?"),
        ([{"op": "regex", "pattern": "^z"}, {"op": "default", "value": "none"}], "none"),
        ([{"op": "default", "value": "none"}], "LT-Fra-0042"),
        ([{"op": "regex", "pattern": r"\d+"}, {"op": "date", "format": "%Y"}], "0042-01-01T00:00:00+00:00"),
    ],
)
def test_each_step_of_a_pipeline(steps, expected):
    rule = {"source": "host", "steps": steps}
    assert field_mapping.validate({"name": rule}) == []
    assert field_mapping.value_of("name", rule, PIPELINE_RAW) == expected


def test_concat_alone_builds_the_value_and_steps_run_in_order():
    rule = {"steps": [{"op": "concat", "sources": ["given", "family"], "sep": "."}, {"op": "lower"},
                      {"op": "concat", "sources": ["site"], "sep": "@"}]}
    assert field_mapping.value_of("owner_email", rule, PIPELINE_RAW) == "ann.lee@BER-01"
    split = {"source": "tags", "steps": [{"op": "split", "sep": ",", "index": 1}, {"op": "upper"}]}
    assert field_mapping.value_of("department", split, PIPELINE_RAW) == "GREEN"
    # A list (a multi-valued LDAP attribute) reads as its values joined: split picks one.
    roles = {"source": "roles", "steps": [{"op": "split", "sep": ",", "index": -1}]}
    assert field_mapping.value_of("department", roles, PIPELINE_RAW) == "ops"


def test_a_date_step_and_typed_fields_give_the_fields_type():
    seen = {"source": "scanned", "steps": [{"op": "date", "format": "%d.%m.%Y"}]}
    assert field_mapping.value_of("last_seen_at", seen, PIPELINE_RAW) == "2024-05-18T00:00:00+00:00"
    offset = {"source": "t", "steps": [{"op": "date"}]}
    assert field_mapping.value_of("last_seen_at", offset, {"t": "2024-05-18T10:00:00+02:00"}) \
        == "2024-05-18T08:00:00+00:00"  # ISO in, UTC out
    assert field_mapping.value_of("last_seen_at", seen, {}) is None
    score = {"source": "s", "steps": [{"op": "regex", "pattern": r"(\d+)%"}]}
    assert field_mapping.value_of("compliance_score", score, {"s": "at 87% compliant"}) == 87
    status = {"source": "s", "steps": [{"op": "lower"}]}
    assert field_mapping.value_of("status", status, {"s": "ACTIVE"}) == "active"
    assert field_mapping.value_of("status", status, {"s": "Lost"}) == "unknown"  # outside the vocabulary


def test_a_step_that_fails_on_a_record_names_the_field_and_the_step():
    rule = {"source": "scanned", "steps": [{"op": "strip"}, {"op": "date", "format": "%Y-%m-%d"}]}
    with pytest.raises(RecordError, match=r"last_seen_at: step 2 \(date\): '18.05.2024' does not match %Y-%m-%d"):
        field_mapping.value_of("last_seen_at", rule, PIPELINE_RAW)
    with pytest.raises(RecordError, match="compliance_score must be an integer from 0 to 100, not 'Ann'"):
        field_mapping.value_of("compliance_score", {"source": "given", "steps": [{"op": "strip"}]}, PIPELINE_RAW)


def test_a_regex_reads_at_most_the_input_cap():
    rule = {"source": "v", "steps": [{"op": "regex", "pattern": r"(\d+)$"}]}
    assert field_mapping.value_of("name", rule, {"v": "x" * 10 + "42"}) == "42"
    assert field_mapping.value_of("name", rule, {"v": "x" * field_mapping.MAX_INPUT + "42"}) == ""


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"source": "x", "steps": []}, "name: 'steps' must be a list of 1 to 20 steps"),
        ({"source": "x", "steps": [{"op": "title"}]}, "name: step 1: unknown op 'title' (one of lower, upper"),
        ({"source": "x", "steps": [{"pattern": "a"}]}, "name: step 1: needs an op"),
        ({"source": "x", "steps": [{"op": "lower"}, {"op": "regex"}]}, "name: step 2 (regex): 'pattern' must be"),
        ({"source": "x", "steps": [{"op": "regex", "pattern": "(a"}]}, "name: step 1 (regex): 'pattern' does not "
                                                                         "compile: missing )"),
        ({"source": "x", "steps": [{"op": "regex", "pattern": "a" * 201}]}, "longer than 200 characters"),
        ({"source": "x", "steps": [{"op": "regex", "pattern": "(a+)+$"}]}, "repeats a group that itself repeats"),
        ({"source": "x", "steps": [{"op": "replace", "pattern": r"(\w*\s?)*", "new": ""}]}, "itself repeats"),
        ({"source": "x", "steps": [{"op": "regex", "pattern": "(a)", "group": 2}]}, "'group' 2 does not exist"),
        ({"source": "x", "steps": [{"op": "replace", "new": "b"}]}, "give either 'old'"),
        ({"source": "x", "steps": [{"op": "split", "sep": ""}]}, "step 1 (split): 'sep' must be non-empty text"),
        ({"source": "x", "steps": [{"op": "split", "sep": ",", "index": "1"}]}, "'index' must be a whole number"),
        ({"source": "x", "steps": [{"op": "concat", "sources": "a"}]}, "'sources' must be a list of 1 to 10"),
        ({"source": "x", "steps": [{"op": "map", "values": {"a": 1}}]}, "'values' must map source values to text"),
        ({"source": "x", "steps": [{"op": "default"}]}, "step 1 (default): 'value' is required"),
        ({"source": "x", "steps": [{"op": "date", "format": "dd.mm"}]}, "'format' must be a strptime format"),
        ({"source": "x", "steps": [{"op": "lower", "locale": "tr"}]}, "step 1 (lower): unknown option locale"),
        ({"source": "x", "steps": [{"op": "lower"}], "transform": "upper"}, "use either 'steps' or the options"),
        ({"steps": [{"op": "lower"}]}, "'source' must name a field or dotted path of the raw record (or a concat"),
    ],
)
def test_each_step_is_validated_with_the_field_and_the_step_named(rule, reason):
    problems = field_mapping.validate({"name": rule})
    assert problems and reason in " ".join(problems), problems


@pytest.mark.parametrize(
    ("name", "steps", "reason"),
    [
        ("status", [{"op": "map", "values": {"Live": "alive"}}], "status: step 1 (map): value of 'Live' must be one"),
        ("status", [{"op": "default", "value": "sideways"}], "step 1 (default): value must be one of active"),
        ("compliance_score", [{"op": "default", "value": "high"}], "value must be an integer from 0 to 100"),
        ("last_seen_at", [{"op": "map", "values": {}, "fallback": "soon"}], "fallback 'soon' does not match ISO"),
        ("location", [{"op": "default", "value": None}], "value must be a string, not null"),
    ],
)
def test_a_constant_a_last_step_gives_must_be_a_value_of_the_field(name, steps, reason):
    problems = field_mapping.validate({name: {"source": "x", "steps": steps}})
    assert problems and reason in " ".join(problems), problems
    # The same constant followed by a step that changes it is left to the records (and the preview).
    assert field_mapping.validate({"status": {"source": "x", "steps": [
        {"op": "default", "value": "LIVE"}, {"op": "lower"}]}}) == []


@pytest.mark.parametrize("pattern", [r"(a+)+", r"(a*)*b", r"(?:\d+\s?)+", r"((ab)+c)*", r"(x+){5}", r"(a|b+)+?"])
def test_nested_repetition_is_found(pattern):
    assert field_mapping.nested_repetition(pattern)


@pytest.mark.parametrize("pattern", [r"(\d+)-(\d+)", r"^[(+*]+$", r"(a+)?", r"(ab)+", r"\(a+\)+", r"(?:x)*\d+",
                                     r"[a-z]{2,}(\.[a-z]{2})?"])
def test_harmless_patterns_pass(pattern):
    assert not field_mapping.nested_repetition(pattern)


def test_the_shorthand_is_a_pipeline_meaning_the_same():
    """The first version's options keep their meaning: transform, then the map (default its fallback), then
    the field's type; a default without a map only replaces a choice outside the vocabulary."""
    raw = {"s": " Live ", "n": "x"}
    assert field_mapping.value_of("status", {"source": "s", "map": {"Live": "active"}}, raw) == "active"
    assert field_mapping.value_of("status", {"source": "n", "map": {"Live": "active"}}, raw) == "unknown"
    assert field_mapping.value_of("name", {"source": "n", "map": {"Live": "y"}}, raw) == "x"
    assert field_mapping.value_of("name", {"source": "n", "map": {}, "default": "d"}, raw) == "d"
    assert field_mapping.value_of("name", {"source": "missing", "default": "d"}, raw) == ""
    assert field_mapping.value_of("status", {"source": "n", "default": "retired"}, raw) == "retired"
    assert field_mapping.value_of("name", {"source": "s", "transform": "upper"}, raw) == "LIVE"


# --- the fields of each record kind -------------------------------------------------------------------------------


def test_each_record_kind_names_its_own_fields():
    directory = field_mapping.targets("directory")
    assert {"user.username", "user.email", "group.name", "device.location"} <= set(directory)
    assert "location" not in directory and "user.is_active" not in directory
    finding = field_mapping.targets("finding")
    assert {"finding.severity", "finding.cvss_score", "finding.title", "machine.owner_email"} <= set(finding)
    assert "finding.vulnerability_id" not in finding  # part of the finding's external id
    assert field_mapping.targets("change") == {} and field_mapping.targets("event") == {}
    problems = field_mapping.validate({"location": {"source": "x"}}, "directory")
    assert "location: not a canonical field of directory records (one of user.username" in problems[0]
    assert "have no fields a field mapping can set" in field_mapping.validate({"state": {"source": "x"}},
                                                                             "change")[0]
    assert field_mapping.validate({"finding.severity": {"source": "x", "map": {"Hi": "severe"}}}, "finding")


def test_a_directory_mapping_sets_users_groups_and_devices_and_respects_deltas():
    from syncplane.integrations.connectors.microsoft.entra_id import map_directory_object

    mapping = field_mapping.compile_mapping({
        "user.email": {"source": "userPrincipalName", "steps": [{"op": "lower"}]},
        "user.display_name": {"steps": [{"op": "concat", "sources": ["surname", "givenName"], "sep": ", "}]},
        "group.name": {"source": "displayName", "steps": [{"op": "replace", "old": "SG-", "new": ""}]},
        "device.location": {"source": "physicalIds", "steps": [{"op": "regex", "pattern": r"\[OrderId\]:(\w+)"}]},
    }, "directory")
    user = {"@odata.type": "#microsoft.graph.user", "id": "u1", "userPrincipalName": "Ann.Lee@X.example",
            "givenName": "Ann", "surname": "Lee", "mail": None}
    record = map_directory_object(user)
    mapping.apply(record, user)
    assert record.attributes["email"] == "ann.lee@x.example" and record.attributes["display_name"] == "Lee, Ann"
    # A delta item without the property leaves it unchanged: no override invents an empty value.
    delta = {"@odata.type": "#microsoft.graph.user", "id": "u1", "accountEnabled": False}
    record = map_directory_object(delta)
    mapping.apply(record, delta)
    assert "email" not in record.attributes and "display_name" not in record.attributes
    group = {"@odata.type": "#microsoft.graph.group", "id": "g1", "displayName": "SG-Finance"}
    record = map_directory_object(group)
    mapping.apply(record, group)
    assert record.attributes["name"] == "Finance" and "email" not in record.attributes
    device = {"@odata.type": "#microsoft.graph.device", "id": "d1", "displayName": "LT-1", "deviceId": "abc",
              "physicalIds": ["[OrderId]:Berlin"]}
    record = map_directory_object(device)
    connector_asset = record.attributes["asset"]
    mapping.apply(record, device)
    assert record.attributes["asset"]["location"] == "Berlin" and "location" not in connector_asset


def test_a_finding_mapping_sets_the_findings_fields_and_the_machines():
    mapping = field_mapping.compile_mapping({
        "finding.severity": {"source": "sev", "steps": [{"op": "lower"},
                                                        {"op": "map", "values": {"moderate": "medium"}}]},
        "finding.cvss_score": {"source": "score"},
        "machine.location": {"source": "site"},
    }, "finding")
    finding = mapping.apply_attributes({"sev": "MODERATE", "score": "7.5"},
                                       {"kind": "finding", "severity": "unknown", "title": "t"})
    assert finding == {"kind": "finding", "severity": "medium", "title": "t", "cvss_score": 7.5}
    machine = mapping.apply_attributes({"site": "Berlin"}, {"kind": "machine", "removed": False, "asset": {}})
    assert machine["asset"] == {"location": "Berlin"}
    with pytest.raises(RecordError, match="finding.cvss_score must be a number from 0 to 10, not '11'"):
        mapping.apply_attributes({"score": "11"}, {"kind": "finding"})


# --- through the engine and the API -----------------------------------------------------------------------------

SERVICENOW_PIPELINES = {
    "location": {"source": "host_name", "steps": [{"op": "split", "sep": "-", "index": 1}, {"op": "upper"}]},
    "name": {"source": "host_name", "steps": [{"op": "concat", "sources": ["os"], "sep": " / "}]},
    "last_seen_at": {"source": "last_discovered", "steps": [{"op": "date", "format": "%Y-%m-%d %H:%M:%S"}]},
    "department": {"source": "department.display_value",
                   "steps": [{"op": "regex", "pattern": r"^(\w+)"}, {"op": "default", "value": "none"}]},
}


def test_a_sync_applies_pipelines_compiled_once(servicenow, monkeypatch):
    compiled = []
    real = field_mapping.compile_mapping
    monkeypatch.setattr(field_mapping, "compile_mapping",
                        lambda overrides, kind: compiled.append(overrides) or real(overrides, kind))
    servicenow.field_mapping = SERVICENOW_PIPELINES
    servicenow.save()
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == "success", log.error_summary
    # Compiled once for 250 records on 5 pages; each record is then mapped with the compiled form.
    assert log.pages == 5 and [c for c in compiled if isinstance(c, dict)] == [SERVICENOW_PIPELINES]
    sources = list(AssetSource.objects.all())
    assert len(sources) == 250
    for source in sources:
        raw, attributes = source.raw_payload, source.attributes
        assert attributes["location"] == value(raw, "host_name").split("-")[1].upper()
        assert attributes["name"] == " / ".join(filter(None, (value(raw, "host_name"), value(raw, "os"))))
        seen = value(raw, "last_discovered")
        assert attributes["last_seen_at"] == (seen.replace(" ", "T") + "+00:00" if seen else None)
        department = value(raw, "department", "display_value")
        assert attributes["department"] == (re.match(r"\w+", department).group() if department else "none")


def value(raw, name, part="value"):
    """A ServiceNow field read with display values: {"value", "display_value"}."""
    found = raw.get(name)
    return (found.get(part) or "") if isinstance(found, dict) else (found or "")


def test_a_step_failing_on_some_records_fails_those_records_only(servicenow):
    servicenow.field_mapping = {"compliance_score": {"source": "ip_address", "steps": [
        {"op": "split", "sep": ".", "index": -1}]}}
    servicenow.save()
    log = run_sync(start_sync(servicenow).pk)
    assert log.status == "partial" and 0 < log.records_failed < 250
    reason = log.outcomes.filter(status="failed").first().reason
    assert reason.startswith("compliance_score must be an integer from 0 to 100"), reason


def test_a_directory_pipeline_syncs_through_the_engine_against_the_graph_simulator(simulator):
    from django.contrib.auth.models import User

    from syncplane.integrations.choices import AuthType, SystemType
    from syncplane.integrations.models import ExternalSystem
    from syncplane.integrations.secrets import to_reference
    from syncplane_simulators import entra_id as graph_sim

    entra = ExternalSystem.objects.create(
        name="Entra mapped", system_type=SystemType.ENTRA_ID, category="identity",
        base_url=f"{simulator.url}/graph/v1.0", auth_type=AuthType.OAUTH2_CLIENT_CREDENTIALS,
        credentials={"client_id": graph_sim.DEFAULT_CLIENT_ID,
                     "client_secret": to_reference(graph_sim.DEFAULT_CLIENT_SECRET)},
        config={"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/graph/login"},
        field_mapping={
            "user.email": {"source": "userPrincipalName", "steps": [{"op": "lower"}]},
            "user.last_name": {"source": "surname", "steps": [{"op": "upper"}]},
        },
    )
    log = run_sync(start_sync(entra).pk)
    assert log.status == "success", log.error_summary
    users = User.objects.exclude(username="")
    assert users.count() == 120
    for user in users:
        assert user.email == user.username  # the mail-less users too: their UPN
        assert user.last_name == user.last_name.upper()
    assert users.filter(last_name="MÜLLER").exists()


def test_the_api_saves_pipelines_with_the_connectors_fields(api_as, servicenow):
    admin = api_as("admin")
    url = f"/api/v1/integrations/{servicenow.pk}/"
    saved = admin.patch(url, {"field_mapping": SERVICENOW_PIPELINES}, format="json")
    assert saved.status_code == 200 and saved.data["field_mapping"] == SERVICENOW_PIPELINES
    bad = admin.patch(url, {"field_mapping": {"location": {"source": "x", "steps": [
        {"op": "regex", "pattern": "(a+)+"}]}}}, format="json")
    assert bad.status_code == 400 and "location: step 1 (regex)" in str(bad.data["field_mapping"])
    wrong_kind = admin.patch(url, {"field_mapping": {"user.email": {"source": "x"}}}, format="json")
    assert wrong_kind.status_code == 400 and "not a canonical field of asset records" in str(wrong_kind.data)


def test_the_api_checks_a_directory_integrations_mapping_against_directory_fields(api_as, simulator):
    from syncplane_simulators import entra_id as graph_sim

    body = {"name": "Entra", "system_type": "entra_id", "base_url": f"{simulator.url}/graph/v1.0",
            "auth_type": "oauth2_client_credentials",
            "credentials": {"client_id": graph_sim.DEFAULT_CLIENT_ID, "client_secret": "s3cret"},
            "config": {"tenant_id": graph_sim.DEFAULT_TENANT, "authority_url": f"{simulator.url}/graph/login"}}
    admin = api_as("admin")
    refused = admin.post("/api/v1/integrations/", {**body, "field_mapping": {"location": {"source": "x"}}},
                         format="json")
    assert refused.status_code == 400 and "directory records (one of user.username" in str(refused.data)
    created = admin.post("/api/v1/integrations/", {**body, "field_mapping": {
        "user.email": {"source": "mail"}, "device.location": {"source": "x"}}}, format="json")
    assert created.status_code == 201, created.data


def test_preview_tries_a_pipeline_from_the_body_without_saving_it(api_as, servicenow):
    operator = api_as("operator")
    url = f"/api/v1/integrations/{servicenow.pk}/preview/"
    tried = {"location": SERVICENOW_PIPELINES["location"],
             "status": {"source": "install_status", "steps": [{"op": "map", "values": {"99": "retired"}}]}}
    response = operator.post(url, {"field_mapping": tried}, format="json")
    assert response.status_code == 200, response.data
    first = response.data["records"][0]
    assert first["mapped"]["location"] == value(first["raw"], "host_name").split("-")[1].upper()
    assert [w["problem"] for w in response.data["warnings"]] == ["map_unmatched"]
    servicenow.refresh_from_db()
    assert servicenow.field_mapping == {}
    bad = operator.post(url, {"field_mapping": {"location": {"source": "x", "steps": [{"op": "nope"}]}}},
                        format="json")
    assert bad.status_code == 400 and "location: step 1: unknown op 'nope'" in str(bad.data["field_mapping"])
    assert operator.post(url, {"fieldmapping": {}}, format="json").status_code == 400
    failing = operator.post(url, {"field_mapping": {"compliance_score": {"source": "name"}}}, format="json")
    assert failing.data["warnings"][0]["problem"] == "records_fail"
