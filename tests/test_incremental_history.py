"""kefu.incremental_history gives what Rasa's own code gives, at every step of real and random conversations."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    DefinePrevUserUtteredFeaturization,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from rasa.shared.core.trackers import DialogueStateTracker

from kefu import incremental_history

ROOT = Path(__file__).resolve().parent.parent
incremental_history.apply()
ORIGINAL = incremental_history.ORIGINAL


class ReferenceTracker(DialogueStateTracker):
    """A subclass, so the patched functions hand it to Rasa's original code (nothing cached)."""


def reference_states(domain: Domain, events, slots):
    reference = ReferenceTracker.from_events("ref", list(events), slots=slots)
    return ORIGINAL["applied_events"](reference), domain.states_for_tracker_history(reference)


def assert_same_history(domain: Domain, tracker: DialogueStateTracker) -> None:
    applied, states = reference_states(domain, tracker.events, domain.slots)
    got_applied = tracker.applied_events()
    assert [type(e) for e in got_applied] == [type(e) for e in applied]
    assert got_applied == applied
    assert tracker.past_states(domain) == states


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain"))


def test_every_step_of_the_project_stories(domain):
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.core.training_data.structures import StoryGraph

    steps = []
    for folder in (ROOT / "data" / "stories", ROOT / "data" / "rules", ROOT / "tests" / "stories"):
        for path in sorted(folder.glob("*.yml")):
            steps += YAMLStoryReader(domain).read_from_file(str(path))
    trackers = TrainingDataGenerator(StoryGraph(steps), domain, augmentation_factor=0,
                                     remove_duplicates=False).generate_story_trackers()
    assert len(trackers) > 40
    loops = 0
    for story in trackers:
        tracker = DialogueStateTracker("live", domain.slots)
        for event in story.events:
            tracker.update(event)
            loops += isinstance(event, ActiveLoop)
            if isinstance(event, (ActionExecuted, UserUttered)):
                assert_same_history(domain, tracker)
        assert_same_history(domain, tracker)
    assert loops > 20  # the form loops (happy-path events removed from the applied events) were exercised


def random_events(rng: random.Random, domain: Domain, count: int):
    forms = list(domain.form_names)[:2]
    actions = ["utter_greet", "action_query_order", "utter_ask_phone"]
    intents = ["query_order", "inform", "affirm", "deny"]
    slot = next(s.name for s in domain.slots if s.name == "order_id")
    for _ in range(count):
        kind = rng.random()
        if kind < 0.25:
            yield ActionExecuted(ACTION_LISTEN_NAME)
            yield UserUttered("x", {"name": rng.choice(intents), "confidence": 1.0})
            if rng.random() < 0.5:
                yield DefinePrevUserUtteredFeaturization(rng.random() < 0.3)
        elif kind < 0.5:
            form = rng.choice(forms)
            yield ActionExecuted(form)
            yield ActiveLoop(form if rng.random() < 0.7 else None)
        elif kind < 0.65:
            yield ActionExecuted(rng.choice(actions))
        elif kind < 0.75:
            yield SlotSet(slot, rng.choice([None, "202411010001", "202411010002"]))
        elif kind < 0.8:
            yield ActionExecutionRejected(rng.choice(forms))
        elif kind < 0.85:
            yield LoopInterrupted(rng.random() < 0.5)
        elif kind < 0.9:
            yield UserUtteranceReverted()
        elif kind < 0.94:
            yield ActionReverted()
        elif kind < 0.97:
            yield SessionStarted()
        else:
            yield Restarted()


@pytest.mark.parametrize("seed", range(12))
def test_every_step_of_random_conversations_with_reverts_restarts_and_loops(domain, seed):
    rng = random.Random(seed)
    tracker = DialogueStateTracker("live", domain.slots)
    for event in random_events(rng, domain, 120):
        tracker.update(event)
        assert_same_history(domain, tracker)


def test_a_rebuilt_event_list_is_not_mistaken_for_the_old_one(domain):
    tracker = DialogueStateTracker("live", domain.slots)
    for event in [ActionExecuted(ACTION_LISTEN_NAME), UserUttered("x", {"name": "query_order"}),
                  ActionExecuted("utter_greet")]:
        tracker.update(event)
    assert_same_history(domain, tracker)
    tracker.events.pop()  # shrunk in place
    assert_same_history(domain, tracker)
    tracker.events[-1] = UserUttered("y", {"name": "deny"})  # replaced in place
    assert_same_history(domain, tracker)
    tracker.events.clear()
    assert_same_history(domain, tracker)


def test_callers_may_change_the_list_and_the_current_state(domain):
    """What Rasa's callers do (``_choose_last_user_input`` edits the last state in place); earlier states are
    shared with the cache and no caller changes them."""
    tracker = DialogueStateTracker("live", domain.slots)
    for event in [ActionExecuted(ACTION_LISTEN_NAME), UserUttered("x", {"name": "query_order"}),
                  ActionExecuted("utter_greet"), ActionExecuted(ACTION_LISTEN_NAME),
                  UserUttered("y", {"name": "deny"})]:
        tracker.update(event)
    first = tracker.past_states(domain)
    assert len(first) == 4 and first[-1]["user"]["intent"] == "deny"
    first[-1]["user"].clear()
    first[-1].clear()
    first.clear()
    tracker.applied_events().clear()
    assert_same_history(domain, tracker)


def test_rule_policy_sees_only_its_longest_rule_and_predicts_the_same(domain, monkeypatch, tmp_path):
    """The trained model's RulePolicy, with and without the shortened history, on every step of the stories."""
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.engine import loader
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.shared.core.generator import TrainingDataGenerator
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.core.training_data.structures import StoryGraph

    metadata, runner = loader.load_predict_graph_runner(tmp_path, ROOT / "models" / "kefu.tar.gz",
                                                        LocalModelStorage, DaskGraphRunner)
    policy = next(node._component for node in runner._instantiated_nodes.values()
                  if isinstance(node._component, RulePolicy))
    model_domain = metadata.domain
    longest = incremental_history._longest_rule(policy)
    assert longest and longest < 10

    steps = []
    for path in sorted((ROOT / "tests" / "stories").glob("*.yml")):
        steps += YAMLStoryReader(model_domain).read_from_file(str(path))
    stories = TrainingDataGenerator(StoryGraph(steps), model_domain, augmentation_factor=0,
                                    remove_duplicates=False).generate_story_trackers()
    compared = longer = 0
    for story in stories:
        tracker = DialogueStateTracker("live", model_domain.slots)
        for event in story.events:
            if isinstance(event, ActionExecuted) and len(tracker.events) > 1:
                prediction = policy.predict_action_probabilities(tracker, model_domain)
                states = policy._prediction_states(tracker, model_domain)
                assert len(states) <= longest
                with monkeypatch.context() as patch:
                    patch.setattr(RulePolicy, "_prediction_states", ORIGINAL["rule_prediction_states"])
                    expected = policy.predict_action_probabilities(tracker, model_domain)
                    longer += len(policy._prediction_states(tracker, model_domain)) > longest
                assert (prediction.probabilities, prediction.events, prediction.hide_rule_turn,
                        prediction.is_end_to_end_prediction) == (
                    expected.probabilities, expected.events, expected.hide_rule_turn,
                    expected.is_end_to_end_prediction)
                compared += 1
            tracker.update(event)
    assert compared > 100 and longer > 20  # histories longer than the longest rule were cut and compared
