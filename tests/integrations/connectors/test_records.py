"""The canonical records are the one definition: the domain apps' vocabularies and fields are these."""

from syncplane.changes import choices as change_choices
from syncplane.integrations import itsm, records
from syncplane.inventory import choices as inventory_choices
from syncplane.inventory.models import CANONICAL_FIELDS


def test_asset_attributes_are_the_inventory_canonical_fields():
    assert records.ASSET_FIELDS == CANONICAL_FIELDS


def test_domain_vocabularies_are_re_exported_not_copied():
    assert inventory_choices.AssetType is records.AssetType
    assert inventory_choices.AssetStatus is records.AssetStatus
    assert inventory_choices.ComplianceState is records.ComplianceState
    assert change_choices.ChangeState is records.ChangeState
    assert change_choices.Decision is records.Decision


def test_the_itsm_contract_names_the_change_records():
    assert (itsm.ChangeDraft, itsm.ExternalChange, itsm.ApprovalDecision) == (
        records.ChangeDraft, records.ExternalChange, records.ApprovalDecision)


def test_directory_shapes_hold_the_keys_the_directory_sink_accepts():
    from syncplane.directory.sink import DEVICE_KEYS, GROUP_KEYS, USER_KEYS

    assert set(records.DirectoryUser.__annotations__) == USER_KEYS
    assert set(records.DirectoryGroup.__annotations__) == GROUP_KEYS
    assert set(records.DirectoryDevice.__annotations__) == DEVICE_KEYS
