"""Field mapping overrides: validated on save, applied by syncs, shown by the preview (which writes nothing)."""

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
        ({"colour": {"source": "x"}}, "not a canonical attribute"),
        ({"name": "x"}, "must be an object"),
        ({"name": {}}, "'source' must name"),
        ({"name": {"source": "x", "transform": "title"}}, "transform must be one of"),
        ({"status": {"source": "x", "map": {"Live": "alive"}}}, "alive not one of"),
        ({"status": {"source": "x", "default": "sideways"}}, "default must be one of"),
        ({"name": {"source": "x", "date_format": "%Y"}}, "only applies to last_seen_at"),
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
