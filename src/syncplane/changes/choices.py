"""The change vocabularies, defined with the canonical records the ITSM connectors produce (one definition)."""

from syncplane.integrations.records import ChangeState, Decision

__all__ = ["ChangeState", "Decision"]
