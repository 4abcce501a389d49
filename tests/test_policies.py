"""kefu.policies.ActionFailurePolicy: an apology instead of silence when a custom action fails."""
from __future__ import annotations

from typing import List

import pytest
from rasa.core.policies.policy import PolicyPrediction
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from kefu.policies import APOLOGY, ActionFailurePolicy

# raised by every Domain.from_yaml in Rasa 3.6
pytestmark = pytest.mark.filterwarnings("ignore:Slot auto-fill has been removed")

DOMAIN_YAML = """
version: "3.1"
intents:
  - query_order
slots:
  order_id:
    type: text
    influence_conversation: false
    mappings:
      - type: from_text
        conditions:
          - active_loop: order_form
forms:
  order_form:
    required_slots:
      - order_id
responses:
  utter_service_unavailable:
    - text: "抱歉，系统暂时有点忙，请稍后再试，或回复“人工”转人工客服。"
  utter_ask_order_id:
    - text: "请提供订单号"
actions:
  - action_run_task
"""


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.from_yaml(DOMAIN_YAML)


@pytest.fixture
def policy(tmp_path) -> ActionFailurePolicy:
    return ActionFailurePolicy.create(
        ActionFailurePolicy.get_default_config(),
        LocalModelStorage(tmp_path),
        Resource("p"),
        ExecutionContext(GraphSchema({}), "id"),
    )


@pytest.fixture(autouse=True)
def _not_evaluating(monkeypatch):
    monkeypatch.delenv("KEFU_EVALUATING_STORIES", raising=False)


def start(text: str = "查一下订单202411010001") -> List[Event]:
    return [
        ActionExecuted(ACTION_SESSION_START_NAME),
        SessionStarted(),
        ActionExecuted(ACTION_LISTEN_NAME),
        UserUttered(text, intent={"name": "query_order", "confidence": 0.99}),
    ]


def predict(policy, domain, events) -> PolicyPrediction:
    tracker = DialogueStateTracker.from_events("s", events, domain.slots)
    return policy.predict_action_probabilities(tracker, domain)


def assert_predicts(prediction: PolicyPrediction, domain: Domain, action: str) -> None:
    probabilities = prediction.probabilities
    assert len(probabilities) == domain.num_actions
    index = domain.index_for_action(action)
    assert probabilities[index] == 1.0
    assert sum(probabilities) == 1.0
    assert prediction.max_confidence == 1.0
    assert prediction.is_no_user_prediction is True
    assert prediction.policy_name == "ActionFailurePolicy"


def assert_abstains(prediction: PolicyPrediction, domain: Domain) -> None:
    assert len(prediction.probabilities) == domain.num_actions
    assert all(p == 0.0 for p in prediction.probabilities)
    assert prediction.max_confidence == 0.0
    assert prediction.is_no_user_prediction is False


def test_domain_under_test(domain):
    assert "action_run_task" in domain.user_actions
    assert "order_form" in domain.form_names
    assert APOLOGY == "utter_service_unavailable" and APOLOGY in domain.action_names_or_texts


def test_default_config_and_priority(policy):
    assert ActionFailurePolicy.get_default_config()["priority"] == 7
    assert policy.priority == 7


def test_custom_action_without_events_gets_an_apology(policy, domain):
    prediction = predict(policy, domain, start() + [ActionExecuted("action_run_task")])
    assert_predicts(prediction, domain, APOLOGY)


def test_custom_action_that_replied_is_fine(policy, domain):
    events = start() + [ActionExecuted("action_run_task"), BotUttered("您的订单已签收")]
    assert_abstains(predict(policy, domain, events), domain)


def test_custom_action_that_set_a_slot_is_fine(policy, domain):
    events = start() + [ActionExecuted("action_run_task"), SlotSet("order_id", "202411010001")]
    assert_abstains(predict(policy, domain, events), domain)


def test_after_the_apology_listen(policy, domain):
    events = start() + [ActionExecuted("action_run_task"), ActionExecuted(APOLOGY),
                        BotUttered("抱歉，系统暂时有点忙")]
    assert_predicts(predict(policy, domain, events), domain, ACTION_LISTEN_NAME)
    # also when the apology is the very last event
    events = start() + [ActionExecuted("action_run_task"), ActionExecuted(APOLOGY)]
    assert_predicts(predict(policy, domain, events), domain, ACTION_LISTEN_NAME)


def test_failed_form_gets_an_apology(policy, domain):
    prediction = predict(policy, domain, start() + [ActionExecuted("order_form")])
    assert_predicts(prediction, domain, APOLOGY)
    assert ActionFailurePolicy.failed_action(
        DialogueStateTracker.from_events("s", start() + [ActionExecuted("order_form")], domain.slots),
        domain) == "order_form"


def test_form_that_ran_is_fine(policy, domain):
    events = start() + [ActionExecuted("order_form"), ActiveLoop("order_form"),
                        SlotSet("requested_slot", "order_id")]
    assert_abstains(predict(policy, domain, events), domain)


@pytest.mark.parametrize("last", [
    [],                                                    # the user just spoke
    [ActionExecuted(ACTION_LISTEN_NAME)],
    [ActionExecuted("utter_ask_order_id")],                # responses are served by Rasa itself
    [ActionExecuted("action_restart")],                    # default actions are not custom actions
])
def test_nothing_to_do(policy, domain, last):
    assert_abstains(predict(policy, domain, start() + last), domain)


def test_empty_tracker(policy, domain):
    assert_abstains(predict(policy, domain, []), domain)
    assert ActionFailurePolicy.failed_action(DialogueStateTracker.from_events("s", [], domain.slots),
                                             domain) is None


def test_story_evaluation_switches_the_policy_off(policy, domain, monkeypatch):
    monkeypatch.setenv("KEFU_EVALUATING_STORIES", "1")
    assert_abstains(predict(policy, domain, start() + [ActionExecuted("action_run_task")]), domain)
    assert_abstains(predict(policy, domain, start() + [ActionExecuted("order_form")]), domain)
    assert_abstains(predict(policy, domain, start() + [ActionExecuted("action_run_task"),
                                                       ActionExecuted(APOLOGY)]), domain)


def test_without_the_apology_response_the_policy_abstains(policy):
    domain = Domain.from_yaml(DOMAIN_YAML.replace("utter_service_unavailable", "utter_something_else"))
    assert APOLOGY not in domain.action_names_or_texts
    assert_abstains(predict(policy, domain, start() + [ActionExecuted("action_run_task")]), domain)


def test_train_and_load(policy, domain, tmp_path):
    assert policy.train([], domain) == Resource("p")
    loaded = ActionFailurePolicy.load(ActionFailurePolicy.get_default_config(), LocalModelStorage(tmp_path),
                                      Resource("p"), ExecutionContext(GraphSchema({}), "id"))
    assert_predicts(predict(loaded, domain, start() + [ActionExecuted("action_run_task")]), domain, APOLOGY)
