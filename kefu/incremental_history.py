"""The dialogue history of a live conversation, computed once and extended, instead of replayed per prediction.

``bench/profile_turn.py`` showed Rasa 3.6 spending about a fifth of the server's CPU per message on the same
history, recomputed from the session start for every prediction (three per message, two state histories each):

1. ``DialogueStateTracker.applied_events`` walks every event of the session, and for every execution of a loop
   action walks back again to find its previous execution -- quadratic in the session length. It runs for every
   state history, session check and ``get_last_event_for``.
2. ``Domain.states_for_tracker_history`` replays all applied events on a fresh tracker and builds a state at every
   action -- for ``RulePolicy``, whose rules look at the last few states only.
3. ``RulePolicy`` then matches every rule against every state of the session, and formats and deep-copies them
   all for a debug message, even with debug logging off.

What changes, each with the same result as Rasa's own code (``tests/test_incremental_history.py`` compares them
on every prefix of real conversations, including form loops, reverts, restarts and new sessions):

1. ``applied_events`` keeps, per tracker object, the events it has processed and its result. When the tracker's
   event deque has only grown and no new loop name appeared (the loop names are the one input taken from the
   whole session), it processes only the new events with Rasa's own steps; otherwise it starts over.
2. ``states_for_tracker_history`` (the plain kind ``RulePolicy`` and ``TrackerFeaturizer`` ask for, without
   rule-only turns) keeps the states already built and the replay tracker. A state before an action depends only
   on the applied events before it, so the states of the unchanged prefix are reused; when the applied events only
   grew, the kept replay tracker goes on, otherwise it replays from the start and builds only the states past the
   common prefix. The last state (the current one) is always built fresh, so callers may change it.
3. ``RulePolicy`` gets only the last *n* states, *n* being its longest rule: a rule is checked against as many
   states as it has, so older states never change the answer. Its rule matching (``_get_possible_keys``) parses
   and reverses each rule's states once per model instead of once per rule, state and prediction, and stops when
   no remaining rule is that long; the check of each state is Rasa's (``_does_rule_match_state``).

4. ``DialogueStateTracker.copy`` -- which the message processor calls before every action it runs -- replays every
   event of the session on a new tracker. The state that replay reaches is the state the tracker already holds
   (trackers change only through ``update``), so the copy takes it over directly: the same event objects, copies
   of the slots and of the active loop, the latest message, action and bot utterance, the follow-up action and the
   paused flag. Trackers whose replay could differ from their state keep Rasa's copy: a bounded event history (the
   replay would miss evicted events) and histories with a ``StoryExported`` event (its replay writes a file).

5. ``FormAction._temporary_tracker`` -- before every validation of a form's slots -- builds a tracker by replaying
   the session's events plus the form's new ones (``DialogueStateTracker.from_events``). Where the session has no
   restart (so "the events after the latest restart" are all its events) and the tracker's slots are the domain's,
   that is the copy above with the new events applied (``temporary_tracker``); otherwise Rasa's replay.

Only plain ``DialogueStateTracker`` objects (the ones the tracker store hands out) are cached, never the training
trackers (``TrackerWithCachedStates`` has its own cache, and there are tens of thousands of them).
"""
from __future__ import annotations

import copy
import itertools
from collections import deque
from typing import Any, Dict, List, Optional, Set, Text, Tuple

from rasa.shared.constants import DEFAULT_SENDER_ID
from rasa.shared.core.constants import PREVIOUS_ACTION, REQUESTED_SLOT, SHOULD_NOT_BE_SET
from rasa.shared.core.domain import Domain, State
from rasa.shared.core.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    StoryExported,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import ACTION_NAME

_APPLIED = "_kefu_applied_cache"
_STATES = "_kefu_states_cache"


class _AppliedCache:
    __slots__ = ("events", "seen", "loop_names", "applied")

    def __init__(self, events: Any, seen: List[Event], loop_names: frozenset, applied: List[Event]) -> None:
        self.events = events  # the tracker's deque object: replaced when Rasa rebuilds the tracker's events
        self.seen = seen
        self.loop_names = loop_names
        self.applied = applied


class _StatesCache:
    __slots__ = ("domain", "omit_unset_slots", "applied", "states", "replay")

    def __init__(self, domain: Domain, omit_unset_slots: bool, applied: List[Event], states: List[State],
                 replay: DialogueStateTracker) -> None:
        self.domain = domain
        self.omit_unset_slots = omit_unset_slots
        self.applied = applied  # the applied events replayed on `replay`
        self.states = states  # the state before each ActionExecuted of `applied`
        self.replay = replay


def _loop_names(events: Any) -> frozenset:
    return frozenset(event.name for event in events if isinstance(event, ActiveLoop) and event.name)


def _apply(tracker: DialogueStateTracker, events: Any, loop_names: frozenset, applied: List[Event]) -> None:
    """The body of Rasa's ``applied_events`` loop, extending `applied` in place."""
    for event in events:
        if isinstance(event, (Restarted, SessionStarted)):
            applied.clear()
        elif isinstance(event, ActionReverted):
            tracker._undo_till_previous(ActionExecuted, applied)
        elif isinstance(event, UserUtteranceReverted):
            tracker._undo_till_previous(UserUttered, applied)
            tracker._undo_till_previous(ActionExecuted, applied)
        elif (isinstance(event, ActionExecuted) and event.action_name in loop_names
              and not tracker._first_loop_execution_or_unhappy_path(event.action_name, applied)):
            tracker._undo_till_previous_loop_execution(event.action_name, applied)
        else:
            applied.append(event)


def _same_prefix(events: Any, seen: List[Event]) -> bool:
    return len(events) >= len(seen) and all(a is b for a, b in zip(events, seen))


def applied_events(tracker: DialogueStateTracker) -> List[Event]:
    """``DialogueStateTracker.applied_events``, extended from the last call on the same tracker."""
    events = tracker.events
    cache: Optional[_AppliedCache] = tracker.__dict__.get(_APPLIED)
    if cache is not None and cache.events is events and _same_prefix(events, cache.seen):
        new = list(itertools.islice(events, len(cache.seen), None))
        if _loop_names(new) <= cache.loop_names:
            _apply(tracker, new, cache.loop_names, cache.applied)
            cache.seen.extend(new)
            return list(cache.applied)
    seen = list(events)
    loop_names = _loop_names(seen)
    applied: List[Event] = []
    _apply(tracker, seen, loop_names, applied)
    tracker.__dict__[_APPLIED] = _AppliedCache(events, seen, loop_names, applied)
    return list(applied)


def _common_prefix(a: List[Event], b: List[Event]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x is not y:
            break
        n += 1
    return n


def states_for_tracker_history(domain: Domain, tracker: DialogueStateTracker,
                               omit_unset_slots: bool = False) -> List[State]:
    """``Domain.states_for_tracker_history`` without rule-only turns, reusing the states of the unchanged prefix."""
    applied = tracker.applied_events()
    cache: Optional[_StatesCache] = tracker.__dict__.get(_STATES)
    if cache is None or cache.domain is not domain or cache.omit_unset_slots != omit_unset_slots:
        cache = None
    kept = _common_prefix(cache.applied, applied) if cache is not None else 0

    def state_of(replay: DialogueStateTracker) -> State:
        return domain._clean_state(domain.get_active_state(replay, omit_unset_slots=omit_unset_slots))

    if cache is not None and kept == len(cache.applied):  # only grew: go on from the kept replay
        replay, states = cache.replay, cache.states
        for event in applied[kept:]:
            if isinstance(event, ActionExecuted):
                states.append(state_of(replay))
            replay.update(event)
    else:  # replay from the start; the states before the first `reusable` actions are unchanged
        reusable = sum(1 for event in applied[:kept] if isinstance(event, ActionExecuted))
        old_states = cache.states if cache is not None else []
        replay, states = tracker.init_copy(), []
        for event in applied:
            if isinstance(event, ActionExecuted):
                states.append(old_states[len(states)] if len(states) < reusable else state_of(replay))
            replay.update(event)
    tracker.__dict__[_STATES] = _StatesCache(domain, omit_unset_slots, applied, states, replay)
    return states + [state_of(replay)]


_PLAIN_COPY: Dict[type, bool] = {}


def _copied_like_a_plain_object(cls: type) -> bool:
    """Whether ``copy.copy`` of a `cls` instance is a new instance with the same ``__dict__`` (no copy hooks)."""
    if cls not in _PLAIN_COPY:
        _PLAIN_COPY[cls] = (not hasattr(cls, "__copy__") and not hasattr(cls, "__setstate__")
                            and not any(vars(base).get("__slots__") for base in cls.__mro__[:-1])
                            and all(getattr(cls, name) is getattr(object, name)
                                    for name in ("__reduce_ex__", "__reduce__", "__getstate__")))
    return _PLAIN_COPY[cls]


def copy_slot(slot: Any) -> Any:
    """``copy.copy(slot)`` -- what ``copy.copy`` does for a plain object, without its generic protocol walk
    (a tracker copy copies every slot of the domain)."""
    cls = type(slot)
    if not _copied_like_a_plain_object(cls):
        return copy.copy(slot)
    duplicate = cls.__new__(cls)
    duplicate.__dict__.update(slot.__dict__)
    return duplicate


def copy_tracker(tracker: DialogueStateTracker) -> Optional[DialogueStateTracker]:
    """What ``tracker.copy()`` returns, without the replay; None where only the replay gives it."""
    if (type(tracker) is not DialogueStateTracker or tracker._max_event_history is not None
            or type(tracker.slots) is not dict):  # AnySlotDict: a tracker without a domain
        return None
    if any(isinstance(event, StoryExported) for event in tracker.events):
        return None
    # init_copy() without its slots (they would be copied, reset, then replaced)
    duplicate = DialogueStateTracker(tracker.sender_id or DEFAULT_SENDER_ID, None,
                                     is_rule_tracker=tracker.is_rule_tracker)
    duplicate.events = deque(tracker.events)
    duplicate.slots = {name: copy_slot(slot) for name, slot in tracker.slots.items()}
    duplicate.latest_message = tracker.latest_message
    duplicate.latest_bot_utterance = tracker.latest_bot_utterance
    duplicate.latest_action = dict(tracker.latest_action) if tracker.latest_action is not None else None
    duplicate.followup_action = tracker.followup_action
    duplicate.active_loop = copy.copy(tracker.active_loop)
    duplicate._paused = tracker._paused
    return duplicate


def temporary_tracker(form: Any, current_tracker: DialogueStateTracker, additional_events: List[Event],
                      domain: Domain) -> Optional[DialogueStateTracker]:
    """What ``FormAction._temporary_tracker`` returns, without the replay; None where only the replay gives it."""
    if current_tracker.is_rule_tracker or any(isinstance(event, Restarted) for event in current_tracker.events):
        return None
    slots = current_tracker.slots
    if type(slots) is not dict or [(s.name, type(s)) for s in domain.slots] != [
            (name, type(slot)) for name, slot in slots.items()]:
        return None
    duplicate = copy_tracker(current_tracker)
    if duplicate is None:
        return None
    for event in [SlotSet(REQUESTED_SLOT, form.get_slot_to_fill(current_tracker)),
                  ActionExecuted(form.name()), *additional_events]:
        duplicate.update(event)
    return duplicate


class _PreparedRules:
    """A lookup's rules, each as its states newest first, and grouped by the previous action their newest state
    requires (a rule naming another previous action cannot match; ``None`` holds the rules that name none)."""

    def __init__(self, policy: Any, lookup: Dict[Text, Text]) -> None:
        self.rules = [(key, list(reversed(policy._rule_key_to_state(key)))) for key in lookup]
        self.by_previous_action: Dict[Optional[Text], List[Tuple[Text, List[State]]]] = {}
        for key, rule in self.rules:
            required = _required_action_name(rule[0]) if rule else None
            self.by_previous_action.setdefault(required, []).append((key, rule))

    def candidates(self, newest: State) -> List[Tuple[Text, List[State]]]:
        name = _required_action_name(newest, of_conversation=True)
        unconstrained = self.by_previous_action.get(None, [])
        return unconstrained + self.by_previous_action.get(name, []) if name is not None else unconstrained


def _required_action_name(state: State, of_conversation: bool = False) -> Optional[Text]:
    """The previous action's name a rule state requires (None: it requires none, or a condition on it that
    the generic check handles); for a conversation state, the name it has."""
    name = (state.get(PREVIOUS_ACTION) or {}).get(ACTION_NAME)
    if not isinstance(name, str) or not name or (not of_conversation and name == SHOULD_NOT_BE_SET):
        return None
    return name


def _prepared_rules(policy: Any, lookup: Dict[Text, Text]) -> _PreparedRules:
    prepared = policy.__dict__.setdefault("_kefu_prepared_rules", {})
    stamp = (id(lookup), len(lookup))
    if stamp not in prepared:
        prepared[stamp] = _PreparedRules(policy, lookup)
    return prepared[stamp]


def possible_rule_keys(policy: Any, lookup: Dict[Text, Text], states: List[State]) -> Set[Text]:
    """``RulePolicy._get_possible_keys``: the rules whose states match the end of `states` (see
    ``RulePolicy._is_rule_applicable``, whose steps these are)."""
    prepared = _prepared_rules(policy, lookup)
    if not states:
        return {key for key, _ in prepared.rules}
    candidates = prepared.candidates(states[-1])
    for turn, state in enumerate(reversed(states)):
        if not any(turn < len(rule) for _, rule in candidates):
            break  # every remaining rule matched all its states; older states cannot change that
        current_previous_action = state.get(PREVIOUS_ACTION)
        kept = []
        for key, rule in candidates:
            if turn >= len(rule):
                kept.append((key, rule))
                continue
            rule_previous_action = rule[turn].get(PREVIOUS_ACTION)
            if not rule_previous_action and not current_previous_action:
                kept.append((key, rule))
            elif not rule_previous_action or not current_previous_action:
                continue
            elif policy._does_rule_match_state(rule[turn], state):
                kept.append((key, rule))
        candidates = kept
    return {key for key, _ in candidates}


def _longest_rule(policy: Any) -> Optional[int]:
    """The number of states of the policy's longest rule (None: no rules to bound the history by)."""
    from rasa.core.policies.rule_policy import RULES, RULES_FOR_LOOP_UNHAPPY_PATH

    lookups = [policy.lookup.get(RULES) or {}, policy.lookup.get(RULES_FOR_LOOP_UNHAPPY_PATH) or {}]
    stamp = tuple((id(lookup), len(lookup)) for lookup in lookups)
    known = policy.__dict__.get("_kefu_longest_rule")
    if known is None or known[0] != stamp:
        lengths = [len(policy._rule_key_to_state(key)) for lookup in lookups for key in lookup]
        known = (stamp, max(lengths) if lengths else None)
        policy.__dict__["_kefu_longest_rule"] = known
    return known[1]


_applied = False
ORIGINAL: Dict[str, Any] = {}  # Rasa's own functions, kept for the equivalence tests


def apply() -> None:
    """Install the five changes (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    from rasa.core.policies.rule_policy import RulePolicy

    original_applied_events = DialogueStateTracker.applied_events

    def patched_applied_events(self: DialogueStateTracker) -> List[Event]:
        if type(self) is not DialogueStateTracker:
            return original_applied_events(self)
        return applied_events(self)

    original_states = Domain.states_for_tracker_history

    def patched_states(self: Domain, tracker: DialogueStateTracker, omit_unset_slots: bool = False,
                       ignore_rule_only_turns: bool = False,
                       rule_only_data: Optional[Dict[Text, Any]] = None) -> List[State]:
        if ignore_rule_only_turns or type(tracker) is not DialogueStateTracker:
            return original_states(self, tracker, omit_unset_slots=omit_unset_slots,
                                   ignore_rule_only_turns=ignore_rule_only_turns, rule_only_data=rule_only_data)
        return states_for_tracker_history(self, tracker, omit_unset_slots=omit_unset_slots)

    original_prediction_states = RulePolicy._prediction_states

    def rule_prediction_states(self: RulePolicy, tracker: DialogueStateTracker, domain: Domain,
                               use_text_for_last_user_input: bool = False,
                               rule_only_data: Optional[Dict[Text, Any]] = None) -> List[State]:
        states = original_prediction_states(self, tracker, domain, use_text_for_last_user_input, rule_only_data)
        longest = _longest_rule(self)
        return states[-longest:] if longest and len(states) > longest else states

    ORIGINAL.update(applied_events=original_applied_events, states_for_tracker_history=original_states,
                    rule_prediction_states=original_prediction_states)
    original_copy = DialogueStateTracker.copy

    def patched_copy(self: DialogueStateTracker) -> DialogueStateTracker:
        duplicate = copy_tracker(self)
        return duplicate if duplicate is not None else original_copy(self)

    ORIGINAL["copy"] = original_copy
    DialogueStateTracker.copy = patched_copy
    from rasa.core.actions.forms import FormAction

    original_temporary = FormAction._temporary_tracker

    def patched_temporary(self: FormAction, current_tracker: DialogueStateTracker, additional_events: List[Event],
                          domain: Domain) -> DialogueStateTracker:
        duplicate = temporary_tracker(self, current_tracker, additional_events, domain)
        return duplicate if duplicate is not None else original_temporary(self, current_tracker, additional_events,
                                                                          domain)

    ORIGINAL["temporary_tracker"] = original_temporary
    FormAction._temporary_tracker = patched_temporary
    ORIGINAL["get_possible_keys"] = RulePolicy._get_possible_keys
    RulePolicy._get_possible_keys = possible_rule_keys
    DialogueStateTracker.applied_events = patched_applied_events
    Domain.states_for_tracker_history = patched_states
    RulePolicy._prediction_states = rule_prediction_states
