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
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    FollowupAction,
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
        elif kind < 0.95:
            yield rng.choice([BotUttered("好的"), FollowupAction("utter_greet"), ConversationPaused(),
                              ConversationResumed(), AllSlotsReset()])
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
    compared = longer = matched = 0
    for story in stories:
        tracker = DialogueStateTracker("live", model_domain.slots)
        for event in story.events:
            if isinstance(event, ActionExecuted) and len(tracker.events) > 1:
                prediction = policy.predict_action_probabilities(tracker, model_domain)
                states = policy._prediction_states(tracker, model_domain)
                assert len(states) <= longest
                full = ORIGINAL["rule_prediction_states"](policy, tracker, model_domain)
                for lookup in policy.lookup.values():
                    if isinstance(lookup, dict):
                        expected_keys = ORIGINAL["get_possible_keys"](policy, lookup, full)
                        assert policy._get_possible_keys(lookup, states) == expected_keys
                        assert policy._get_possible_keys(lookup, full) == expected_keys
                        matched += bool(expected_keys)
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
    assert compared > 100 and longer > 20 and matched > 100  # histories longer than the longest rule were cut and compared


def tracker_state(tracker: DialogueStateTracker) -> dict:
    state = {key: value for key, value in vars(tracker).items() if not key.startswith("_kefu")}
    state["events"] = list(tracker.events)
    state["slots"] = {name: (type(slot), slot.value, slot.has_been_set) for name, slot in tracker.slots.items()}
    state["active_loop"] = vars(tracker.active_loop) if tracker.active_loop else None
    return state


def assert_same_copy(tracker: DialogueStateTracker) -> None:
    duplicate = tracker.copy()
    assert tracker_state(duplicate) == tracker_state(ORIGINAL["copy"](tracker))
    # a real copy: changing it leaves the original alone
    before = tracker_state(tracker)
    if tracker.active_loop:
        duplicate.active_loop.is_interrupted = not tracker.active_loop.is_interrupted
    duplicate.update(SlotSet("order_id", "209901010001"))
    duplicate.update(ActiveLoop(None))
    duplicate.update(ActionExecuted("utter_greet"))
    assert tracker_state(tracker) == before


@pytest.mark.parametrize("seed", range(6))
def test_copy_takes_over_the_state_that_replaying_reaches(domain, seed):
    rng = random.Random(100 + seed)
    tracker = DialogueStateTracker("live", domain.slots)
    tracker.model_id, tracker.assistant_id, tracker.sender_source = "m1", "kefu-zh", "rest"
    for event in random_events(rng, domain, 80):
        tracker.update(event)
        assert_same_copy(tracker)


def test_copy_falls_back_to_replaying_where_only_that_is_right(domain):
    from rasa.shared.core.events import StoryExported

    bounded = DialogueStateTracker("b", domain.slots, max_event_history=3)
    for event in [SlotSet("order_id", "202411010001"), ActionExecuted(ACTION_LISTEN_NAME),
                  UserUttered("x", {"name": "deny"}), ActionExecuted("utter_greet")]:
        bounded.update(event)
    assert bounded.get_slot("order_id") == "202411010001"
    assert bounded.copy().get_slot("order_id") is None  # Rasa's replay: the slot event was evicted
    assert incremental_history.copy_tracker(bounded) is None
    exported = DialogueStateTracker("e", domain.slots)
    exported.events.append(StoryExported("/dev/null"))
    assert incremental_history.copy_tracker(exported) is None
    assert incremental_history.copy_tracker(DialogueStateTracker("n", None)) is None


@pytest.mark.parametrize("seed", range(6))
def test_a_forms_temporary_tracker_is_the_one_rasa_replays(domain, seed):
    from rasa.core.actions.forms import FormAction

    rng = random.Random(200 + seed)
    form = FormAction(list(domain.form_names)[0], None)
    tracker = DialogueStateTracker("live", domain.slots)
    taken = 0
    for step, event in enumerate(random_events(rng, domain, 80)):
        tracker.update(event)
        extra = [SlotSet("order_id", f"20241101000{step % 10}")] if step % 2 else []
        mine = form._temporary_tracker(tracker, extra, domain)
        theirs = ORIGINAL["temporary_tracker"](form, tracker, extra, domain)
        assert tracker_state(mine) == tracker_state(theirs), step
        taken += incremental_history.temporary_tracker(form, tracker, extra, domain) is not None
        before = tracker_state(tracker)
        mine.update(SlotSet("order_id", "209901010001"))
        assert tracker_state(tracker) == before  # the temporary tracker is a copy
    assert taken >= 5  # the copy was taken (and compared) where the session had no restart yet


@pytest.mark.parametrize("seed", range(5))
def test_rule_matching_matches_rasas_on_random_rules_including_conversation_starts(seed):
    import json

    from rasa.core.policies.rule_policy import RulePolicy

    rng = random.Random(seed)
    policy = RulePolicy.__new__(RulePolicy)

    def random_state(start: bool) -> dict:
        state = {} if start else {"prev_action": rng.choice(
            [{"action_name": name} for name in ("action_listen", "utter_a", "f", "should_not_be_set")]
            + [{"action_text": "hi"}])}
        if rng.random() < 0.7:
            state["user"] = {"intent": rng.choice(["greet", "deny", "inform"])}
        if rng.random() < 0.4:
            state["active_loop"] = {"name": rng.choice(["f", "should_not_be_set"])}
        return state

    def random_states(n: int) -> list:
        return [random_state(i == 0 and rng.random() < 0.5) for i in range(n)]

    lookup = {json.dumps(random_states(rng.randint(0, 4))): "utter_a" for _ in range(60)}
    for _ in range(300):
        states = random_states(rng.randint(0, 7))
        assert policy._get_possible_keys(lookup, states) == ORIGINAL["get_possible_keys"](policy, lookup, states)
