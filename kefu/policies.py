"""ActionFailurePolicy: never leave a customer in silence when the action server fails.

When a custom action (or a form whose validation runs on the action server)
cannot be executed — the action server is down, times out or crashes — Rasa
logs the error, drops the action's events and carries on predicting, usually
``action_listen``: the customer gets no answer at all.  Every custom action of
this project returns at least one event (its reply), so a tracker whose last
event is the ``ActionExecuted`` of a custom action or form means that action
failed.  This policy then predicts ``utter_service_unavailable`` (a response
served by Rasa itself, so it works without the action server), and after it
``action_listen``.

Story evaluation (``rasa test core``) replays story events without running
any action, so every custom action there *looks* failed; ``make test`` sets
``KEFU_EVALUATING_STORIES=1`` for that step only.  The runtime behaviour is
covered by ``tests/test_rasa_server.py``, which stops the action server.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Text

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from kefu import rasa_speedups

rasa_speedups.apply()  # loaded with every model that uses this policy: Rasa server, rasa shell, rasa test

APOLOGY = "utter_service_unavailable"


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=False
)
class ActionFailurePolicy(Policy):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"priority": 7}

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
                 execution_context: ExecutionContext, featurizer=None) -> None:
        super().__init__(config, model_storage, resource, execution_context, featurizer)

    def train(self, training_trackers: List[TrackerWithCachedStates], domain: Domain,
              **kwargs: Any) -> Resource:
        return self._resource

    @staticmethod
    def failed_action(tracker: DialogueStateTracker, domain: Domain) -> Optional[Text]:
        """The custom action or form that just ran without producing any event, if any."""
        if not tracker.events:
            return None
        last = tracker.events[-1]
        if not isinstance(last, ActionExecuted) or last.action_name in (None, ACTION_LISTEN_NAME):
            return None
        name = last.action_name
        is_custom = name in domain.user_actions and not name.startswith("utter_")
        return name if (is_custom or name in domain.form_names) else None

    def predict_action_probabilities(self, tracker: DialogueStateTracker, domain: Domain,
                                     rule_only_data: Optional[Dict[Text, Any]] = None,
                                     **kwargs: Any) -> PolicyPrediction:
        result = self._default_predictions(domain)
        if os.environ.get("KEFU_EVALUATING_STORIES") or APOLOGY not in domain.action_names_or_texts:
            return self._prediction(result)
        if self.failed_action(tracker, domain):
            result[domain.index_for_action(APOLOGY)] = 1.0
            return self._prediction(result, is_no_user_prediction=True)
        if tracker.latest_action_name == APOLOGY:
            result[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
            return self._prediction(result, is_no_user_prediction=True)
        return self._prediction(result)

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "ActionFailurePolicy":
        return cls(config, model_storage, resource, execution_context)
