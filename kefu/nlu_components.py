"""Custom Rasa NLU graph components."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES
from rasa.shared.nlu.training_data.message import Message

from kefu import id_formats
from kefu.privacy import install_log_masking

# this module is imported by every Rasa process that loads the model: mask PII in its logs
install_log_masking()

FORMAT_CHECKS = {
    # a phone-shaped number is a phone, never an order (as in the spaCy entity ruler)
    "order_id": lambda value: id_formats.is_order_id(value) and not id_formats.is_phone(value),
    "phone": id_formats.is_phone,
    "phone_last4": id_formats.is_phone_last4,
    "tracking_number": id_formats.is_tracking_number,
}


def _overlaps(a: Dict[Text, Any], b: Dict[Text, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def _well_formed(entity: Dict[Text, Any]) -> bool:
    check = FORMAT_CHECKS.get(entity.get("entity"))
    return check is None or check(entity.get("value"))


def reconcile(entities: List[Dict[Text, Any]], preferred: Text = "DIETClassifier") -> List[Dict[Text, Any]]:
    """One entity per text span.

    The spaCy entity ruler is exact about shapes but blind to context (a
    12-digit number may be an order or a parcel); DIET reads the context but
    may mislabel a shape.  On overlapping spans the well-formed prediction
    wins, and between two well-formed ones the context-aware extractor.
    """
    ranked = sorted(entities, key=lambda e: (not _well_formed(e), e.get("extractor") != preferred,
                                             -(e["end"] - e["start"])))
    kept: List[Dict[Text, Any]] = []
    for entity in ranked:
        if not _well_formed(entity) and any(_overlaps(entity, k) for k in kept):
            continue
        if any(_overlaps(entity, k) for k in kept):
            continue
        kept.append(entity)
    return sorted(kept, key=lambda e: e["start"])


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class EntityReconciler(GraphComponent):
    """Merges the entities of several extractors into one entity per span."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"preferred_extractor": "DIETClassifier", "drop_malformed": True}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.preferred = config["preferred_extractor"]
        self.drop_malformed = config["drop_malformed"]

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "EntityReconciler":
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            entities = message.get(ENTITIES) or []
            if not entities:
                continue
            kept = reconcile(entities, self.preferred)
            if self.drop_malformed:
                kept = [e for e in kept if _well_formed(e)]
            message.set(ENTITIES, kept, add_to_output=True)
        return messages
