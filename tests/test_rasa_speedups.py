"""kefu.rasa_speedups: each replacement must behave like the Rasa code it replaces."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import rasa.shared.utils.common
from aiohttp import web
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.utils.endpoints import EndpointConfig

from kefu import rasa_speedups

ROOT = Path(__file__).resolve().parent.parent

rasa_speedups.apply()


def _linear_scan(type_name):
    for cls in rasa.shared.utils.common.all_subclasses(Event):
        if cls.type_name == type_name:
            return cls
    return None


def test_event_lookup_matches_rasas_scan_for_every_event_type():
    names = {cls.type_name for cls in rasa.shared.utils.common.all_subclasses(Event)}
    assert {"user", "bot", "action", "slot", "active_loop", "session_started", "restart"} <= names
    for name in names:
        assert Event.resolve_by_type(name) is _linear_scan(name), name
    assert Event.resolve_by_type("topic") is None  # Rasa's backwards compatibility
    assert Event.resolve_by_type("no_such_event", default=Event) is Event
    with pytest.raises(ValueError, match="Unknown event name"):
        Event.resolve_by_type("no_such_event")


def test_an_event_class_imported_later_is_found():
    class KefuProbeEvent(Event):  # noqa: D401 - a throwaway subclass
        type_name = "kefu_probe_event"

        def __eq__(self, other):
            return isinstance(other, KefuProbeEvent)

        def __hash__(self):
            return 0

        def as_story_string(self):
            return None

    assert Event.resolve_by_type("kefu_probe_event") is KefuProbeEvent


def test_action_results_are_validated_as_before():
    action = RemoteAction("action_run_task", None)
    assert action._validate_action_result({"events": [{"event": "slot", "name": "a", "value": 1}],
                                           "responses": [{"text": "好的"}]})
    assert action._validate_action_result({})
    for bad in ({"events": "not a list"}, {"events": [{"event": "slot", "name": 5}]},
                {"responses": [1]}):
        with pytest.raises(ValidationError, match="Failed to validate Action server response"):
            action._validate_action_result(bad)


def test_event_type_validation_gives_rasas_verdict_on_every_kind_of_event():
    import copy

    from jsonschema import validate
    from rasa.shared.core import events as rasa_events

    spec = RemoteAction.action_response_format_spec()
    action = RemoteAction("action_run_task", None)
    good = [e.as_dict() for e in (
        rasa_events.SlotSet("order_id", "202411010001"), rasa_events.SlotSet("n", None),
        rasa_events.UserUttered("查订单", {"name": "query_order", "confidence": 0.9},
                                [{"entity": "order_id", "value": "1", "start": 0, "end": 1}]),
        rasa_events.ActionExecuted("action_listen", policy="RulePolicy", confidence=1.0),
        rasa_events.BotUttered("好的", {"buttons": []}), rasa_events.ActiveLoop("order_form"),
        rasa_events.ActiveLoop(None), rasa_events.FollowupAction("action_handoff"), rasa_events.Restarted(),
        rasa_events.AllSlotsReset(), rasa_events.ConversationPaused(), rasa_events.ConversationResumed(),
        rasa_events.SessionStarted(), rasa_events.UserUtteranceReverted(), rasa_events.ActionReverted(),
        rasa_events.EntitiesAdded([{"entity": "phone", "value": "13800138000"}]),
        rasa_events.LoopInterrupted(True), rasa_events.ActionExecutionRejected("order_form"),
        rasa_events.ReminderScheduled("remind", rasa_events.datetime.now()),
        rasa_events.ReminderCancelled(name="remind"), rasa_events.AgentUttered("人工回复"))]
    bad = [{"event": "slot", "name": 5, "value": 1}, {"event": "slot", "value": 1}, {"event": "nope"},
           {"event": ["slot"]}, {"event": None}, {"name": "x"}, "slot", 3, None,
           {"event": "slot", "name": "a", "value": 1, "timestamp": "today"},
           {"event": "slot", "name": "a", "value": 1, "metadata": []},
           {"event": "entities", "entities": [{"value": 1}]}, {"event": "entities"},
           {"event": "user", "parse_data": {"intent": {"name": 3}}},
           {"event": "user", "parse_data": {"entities": [{"entity": "x"}]}},
           {"event": "user", "text": 5}, {"event": "action", "name": 5}, {"event": "action", "hide_rule_turn": 1}]
    replies = [{"events": [event]} for event in good + bad] + [
        {"events": good, "responses": [{"text": "好的"}]}, {}, {"events": []}, {"events": None}, {"events": "x"},
        {"responses": [1]}, {"responses": "x"}, [], "reply", {"events": good + bad[:1]}]
    assert len(good) >= 20
    for reply in replies:
        try:
            validate(copy.deepcopy(reply), spec)
            rasa_says = True
        except ValidationError:
            rasa_says = False
        try:
            mine = action._validate_action_result(reply)
        except ValidationError as error:
            assert "Failed to validate Action server response" in error.message
            mine = False
        assert mine == rasa_says, reply


def test_processor_copies_values_for_its_debug_log_only_when_that_logs():
    import logging

    from rasa.core import processor
    from rasa.utils.log_utils import configure_structlog

    assert processor.copy is rasa_speedups._CopyForDebugLog  # Rasa's processor uses copy only for debug logs
    events = [{"event": "slot", "name": "order_id", "value": ["202411010001"]}]
    try:
        configure_structlog(logging.INFO)
        assert not rasa_speedups.structlog_debug_enabled()
        assert processor.copy.deepcopy(events) is events
        configure_structlog(logging.DEBUG)
        assert rasa_speedups.structlog_debug_enabled()
        copied = processor.copy.deepcopy(events)
        assert copied == events and copied is not events and copied[0]["value"] is not events[0]["value"]
    finally:
        configure_structlog(logging.INFO)


def test_action_endpoint_keeps_its_connection_and_sends_utf8_json():
    async def scenario():
        peers, bodies = [], []

        async def handle(request):
            peers.append(request.transport.get_extra_info("peername"))
            bodies.append(await request.read())
            return web.json_response({"events": [], "responses": [{"text": "收到"}]})

        app = web.Application()
        app.router.add_post("/webhook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook")
            payload = {"next_action": "action_run_task", "tracker": {"latest_message": {"text": "查订单/退款"}}}
            answers = [await endpoint.request(json=payload, method="post") for _ in range(3)]
        finally:
            await runner.cleanup()
        return peers, bodies, answers

    peers, bodies, answers = asyncio.run(scenario())
    assert answers == [{"events": [], "responses": [{"text": "收到"}]}] * 3
    assert len(set(peers)) == 1  # one kept-alive connection for three calls
    assert "查订单/退款".encode() in bodies[0]  # UTF-8, slashes unescaped; still valid JSON


def test_tensorflow_tracing_check_answers_as_tensorflow_does():
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.function.trace_type import trace_type_builder
    from tensorflow.python.types import trace

    values = [np.zeros((2, 3), dtype=np.float32), tf.constant([1.0, 2.0]), 3, "text", (1, 2), {"a": 1},
              tf.TensorSpec([None], tf.float32), tf.Variable(1.0)]
    for value in values:  # twice: the second answer comes from the per-class memory
        for _ in range(2):
            assert isinstance(value, trace_type_builder.trace.SupportsTracingProtocol) == \
                isinstance(value, trace.SupportsTracingProtocol), type(value)
    assert trace_type_builder.trace.TraceType is trace.TraceType  # everything else is TensorFlow's own
    signature = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    assert signature(np.array([1.0, 2.0], dtype=np.float32)).numpy().tolist() == [2.0, 4.0]


def test_sequential_graph_runner_gives_what_dask_gives(tmp_path):
    """The trained model's own graphs: one NLU parse and one action prediction, run by both runners."""
    from pathlib import Path

    from rasa.engine import loader
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.shared.core.constants import ACTION_LISTEN_NAME
    from rasa.shared.core.events import ActionExecuted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.core.channels.channel import UserMessage

    from kefu.rasa_speedups import _sequential_graph_runner

    model = Path(__file__).resolve().parent.parent / "models" / "kefu.tar.gz"
    outputs = []
    for index, runner_class in enumerate((DaskGraphRunner, _sequential_graph_runner())):
        storage = tmp_path / str(index)
        storage.mkdir()
        metadata, runner = loader.load_predict_graph_runner(storage, model, LocalModelStorage, runner_class)
        message = UserMessage("帮我查一下订单202411010001到哪了", sender_id="s")
        parsed = runner.run(inputs={"__message__": [message]}, targets=[metadata.nlu_target])
        parse_data = parsed[metadata.nlu_target][0].as_dict(only_output_properties=True)
        tracker = DialogueStateTracker.from_events("s", [ActionExecuted(ACTION_LISTEN_NAME),
                                                         UserUttered(message.text, parse_data)],
                                                   slots=metadata.domain.slots)
        predicted = runner.run(inputs={"__tracker__": tracker}, targets=[metadata.core_target])
        prediction = predicted[metadata.core_target]
        outputs.append((parse_data["intent"]["name"], [e["value"] for e in parse_data["entities"]],
                        prediction.max_confidence_index, prediction.policy_name))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == "track_logistics" and "202411010001" in outputs[0][1]


def test_action_server_parses_with_orjson_and_falls_back_for_what_it_refuses():
    from types import SimpleNamespace

    import orjson
    from sanic.exceptions import InvalidUsage
    from sanic.request import Request

    from kefu import sdk_speedups

    sdk_speedups.apply()
    assert Request.load_json.__defaults__[0].__module__ == "kefu.sdk_speedups"
    body = {"tracker": {"events": [{"event": "user", "text": "查一下订单202411010001", "confidence": 0.98}]}}
    request = SimpleNamespace(body=orjson.dumps(body), parsed_json=None)
    assert Request.load_json(request) == body
    request = SimpleNamespace(body=b'{"value": NaN}', parsed_json=None)  # orjson refuses; ujson (Sanic's) accepts
    assert str(Request.load_json(request)["value"]) == "nan"
    for bad in (b"{bad", b"\xff\xfe"):
        with pytest.raises(InvalidUsage):
            Request.load_json(SimpleNamespace(body=bad, parsed_json=None))
    assert Request.load_json(SimpleNamespace(body=b"", parsed_json=None)) is None


def test_action_payload_serialiser_matches_json_and_handles_what_orjson_refuses():
    import json

    import numpy as np

    payload = {"text": "查一下/订单", "ranking": [0.5, 0.25], "big": 2 ** 70}
    assert json.loads(rasa_speedups.json_text({"text": "查一下/订单", "n": np.int64(3)})) == {
        "text": "查一下/订单", "n": 3}
    assert json.loads(rasa_speedups.json_text(payload))["big"] == 2 ** 70  # json.dumps fallback
    stored = json.dumps({"text": "查订单", "confidence": float("nan")})  # what Rasa's own store writes for NaN
    assert rasa_speedups.json_loads(stored)["text"] == "查订单"
    assert rasa_speedups.json_loads(rasa_speedups.json_text({"text": "查订单"})) == {"text": "查订单"}


def test_diet_called_through_its_concrete_function_predicts_what_tensorflow_call_predicts(tmp_path, monkeypatch,
                                                                                        test_split_texts):
    """The trained model's NLU graph on the NLU test split, with the direct call and with TensorFlow's own call."""
    from pathlib import Path

    from rasa.core.channels.channel import UserMessage
    from rasa.engine import loader
    from rasa.engine.runner.dask import DaskGraphRunner
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.utils.tensorflow.models import RasaModel

    root = Path(__file__).resolve().parent.parent
    rasa_speedups.apply()
    metadata, runner = loader.load_predict_graph_runner(tmp_path, root / "models" / "kefu.tar.gz",
                                                        LocalModelStorage, DaskGraphRunner)
    texts = list(test_split_texts[::5][:60])
    assert len(texts) >= 40

    def parse(text):
        result = runner.run(inputs={"__message__": [UserMessage(text, sender_id="s")]}, targets=[metadata.nlu_target])
        data = result[metadata.nlu_target][0].as_dict(only_output_properties=True)
        return data["intent"], data["intent_ranking"], [(e["entity"], e["value"]) for e in data["entities"]]

    parse(texts[0])  # the first call traces the function (TensorFlow's path either way)
    direct = [parse(text) for text in texts]
    diet = [node._component.model for node in runner._instantiated_nodes.values()
            if type(node._component).__name__ == "DIETClassifier"]
    assert diet and "_kefu_concrete" in vars(diet[0])  # the direct call was taken
    calls = []
    with monkeypatch.context() as patch:
        def counted(self, batch_in):
            calls.append(1)
            return rasa_speedups.ORIGINAL["_rasa_predict"](self, batch_in)

        patch.setattr(RasaModel, "_rasa_predict", counted)
        through_tensorflow = [parse(text) for text in texts]
    assert len(calls) >= len(texts)
    for mine, theirs in zip(direct, through_tensorflow):
        assert mine[0]["name"] == theirs[0]["name"] and mine[2] == theirs[2]
        assert [r["name"] for r in mine[1]] == [r["name"] for r in theirs[1]]
        assert [r["confidence"] for r in mine[1]] == pytest.approx([r["confidence"] for r in theirs[1]], abs=1e-6)


def test_event_broker_messages_carry_the_same_event_and_headers():
    import json

    from rasa.core.brokers.pika import PikaEventBroker
    from rasa.shared.core.events import UserUttered

    rasa_speedups.apply()
    broker = PikaEventBroker.__new__(PikaEventBroker)
    event = dict(UserUttered("查一下订单202411010001", {"name": "query_order", "confidence": 0.98}).as_dict(),
                 sender_id="s1")
    mine = broker._message(event, {"rasa-message-key": "s1"})
    theirs = rasa_speedups.ORIGINAL["PikaEventBroker._message"](broker, event, {"rasa-message-key": "s1"})
    assert json.loads(mine.body) == json.loads(theirs.body) == json.loads(json.dumps(event))
    assert (mine.headers, mine.app_id, mine.delivery_mode) == (theirs.headers, theirs.app_id, theirs.delivery_mode)


def test_action_payload_has_rasas_fields_and_events_turn_after_turn():
    """The payload sent to the action server, built with cached per-event JSON, parses to what Rasa's own
    `_action_call_format` gives, at every step of a conversation -- including a change to the open turn's message
    after it was sent once, and values orjson refuses (json fallback)."""
    import json

    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import (ActionExecuted, ActiveLoop, BotUttered, EntitiesAdded, SessionStarted,
                                         SlotSet, UserUttered)
    from rasa.shared.core.trackers import DialogueStateTracker

    domain = Domain.from_yaml("""
version: "3.1"
intents: [query_order, inform]
entities: [order_id]
slots:
  order_id: {type: text, mappings: [{type: from_entity, entity: order_id}]}
  big: {type: any, mappings: [{type: custom}]}
actions: [action_run_task, validate_order_form]
""")
    action = RemoteAction("action_run_task", EndpointConfig("http://127.0.0.1:1/webhook"))
    original = rasa_speedups.ORIGINAL["action_call_format"]
    tracker = DialogueStateTracker.from_events("客户-1", [ActionExecuted("action_session_start"), SessionStarted(),
                                                          ActionExecuted("action_listen")], slots=domain.slots)

    def same_payload() -> None:
        expected = json.loads(json.dumps(original(action, tracker, domain)))
        assert json.loads(rasa_speedups.json_bytes(action._action_call_format(tracker, domain))) == expected
        assert json.loads(json.dumps(action._action_call_format(tracker, domain),
                                     default=rasa_speedups._json_default)) == expected

    for turn in range(4):
        tracker.update(UserUttered(f"查一下订单20241101000{turn}", {"name": "query_order", "confidence": 0.9},
                                   [{"entity": "order_id", "value": f"20241101000{turn}", "start": 5, "end": 17}]))
        same_payload()
        tracker.update(EntitiesAdded([{"entity": "order_id", "value": "202411019999"}]))
        tracker.latest_message.parse_data["entities"].append({"entity": "order_id", "value": "202411019999"})
        same_payload()  # the open turn's message changed after it was sent once: sent as it is now
        tracker.update(ActionExecuted("order_form"))
        tracker.update(ActiveLoop("order_form"))
        tracker.update(SlotSet("order_id", f"20241101000{turn}"))
        same_payload()
        tracker.update(BotUttered("订单已发货", {"buttons": [{"title": "转人工", "payload": "/request_human"}]}))
        tracker.update(ActionExecuted("action_listen"))
        same_payload()
    assert sum("_kefu_json" in event.__dict__ for event in tracker.events) > len(tracker.events) // 2  # cached
    tracker.update(SlotSet("big", 2 ** 70))  # orjson refuses it: the whole payload goes through json.dumps
    same_payload()


def test_action_payload_events_window_starts_at_the_nth_latest_user_message():
    import json

    import yaml
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from actions.leave_message import TRANSCRIPT_MESSAGES
    from kefu.stack import action_endpoint

    domain = Domain.from_yaml('version: "3.1"\nintents: [greet]\nactions: [action_run_task]\n')
    events = [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")]
    for turn in range(5):
        events += [UserUttered(f"第{turn}句", {"name": "greet", "confidence": 0.9}), ActionExecuted("utter_greet"),
                   BotUttered(f"回复{turn}"), ActionExecuted("action_listen")]
    tracker = DialogueStateTracker.from_events("客户-2", events, slots=domain.slots)
    original = json.loads(json.dumps(rasa_speedups.ORIGINAL["action_call_format"](
        RemoteAction("action_run_task", EndpointConfig("http://127.0.0.1:1/webhook")), tracker, domain)))

    def payload(**settings):
        action = RemoteAction("action_run_task", EndpointConfig("http://127.0.0.1:1/webhook", **settings))
        return json.loads(rasa_speedups.json_bytes(action._action_call_format(tracker, domain)))

    windowed = payload(events_window_turns=2)
    assert windowed["tracker"]["events"] == original["tracker"]["events"][-8:]  # from the 2nd latest user message
    assert [e.get("text") for e in windowed["tracker"]["events"] if e["event"] == "user"] == ["第3句", "第4句"]
    assert {k: v for k, v in windowed["tracker"].items() if k != "events"} == {
        k: v for k, v in original["tracker"].items() if k != "events"}  # the state is the whole tracker's
    assert payload(events_window_turns=9) == payload() == original  # fewer user messages, or no window: all
    # both profiles run with a window, and it covers what the actions read back (a ticket's transcript)
    configured = yaml.safe_load((ROOT / "endpoints.yml").read_text())["action_endpoint"][rasa_speedups.WINDOW_SETTING]
    assert action_endpoint(5055)[rasa_speedups.WINDOW_SETTING] == configured >= TRANSCRIPT_MESSAGES


def test_an_action_can_have_its_own_events_window():
    import json

    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from kefu.stack import action_endpoint

    domain = Domain.from_yaml('version: "3.1"\nintents: [greet]\nslots:\n  phone:\n    type: any\n    mappings: []\n'
                              'actions: [action_run_task, validate_order_form]\n')
    events = [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")]
    for turn in range(4):
        events += [UserUttered(f"第{turn}句", {"name": "greet", "confidence": 0.9}, input_channel="telegram"),
                   ActionExecuted("order_form"), SlotSet("phone", f"1380013800{turn}"), ActionExecuted("action_listen")]
    events = events[:-1]  # the current turn is still open
    tracker = DialogueStateTracker.from_events("客户-3", events, slots=domain.slots)

    def sent(action_name, **settings):
        action = RemoteAction(action_name, EndpointConfig("http://127.0.0.1:1/webhook", **settings))
        return json.loads(rasa_speedups.json_bytes(action._action_call_format(tracker, domain)))["tracker"]["events"]

    settings = {"events_window_turns": 3, "events_window_turns_by_action": {"validate_order_form": 1}}
    assert [e.get("text") for e in sent("validate_order_form", **settings) if e["event"] == "user"] == ["第3句"]
    assert [e["event"] for e in sent("validate_order_form", **settings)] == ["user", "action", "slot"]
    assert [e.get("text") for e in sent("action_run_task", **settings) if e["event"] == "user"] == ["第1句", "第2句", "第3句"]
    # rasa-sdk reads what the validator needs from that window: the channel and the slot candidates
    from rasa_sdk import Tracker

    state = json.loads(rasa_speedups.json_bytes(RemoteAction("validate_order_form", EndpointConfig(
        "http://127.0.0.1:1/webhook", **settings))._action_call_format(tracker, domain)))["tracker"]
    sdk_tracker = Tracker.from_dict(state)
    assert sdk_tracker.get_latest_input_channel() == "telegram"
    assert sdk_tracker.slots_to_validate() == {"phone": "13800138003"}
    # bad values are ignored (with a warning), never a failed action call
    for bad in (0, -1, "0", "eins", True, 1.5, [1]):
        broken = {"events_window_turns": 3, "events_window_turns_by_action": {"validate_order_form": bad}}
        assert sent("validate_order_form", **broken) == sent("action_run_task", **settings)
    assert rasa_speedups.window_turns({"events_window_turns_by_action": ["validate_order_form"]}, "x") is None
    assert rasa_speedups.window_turns({"events_window_turns": " 7"}, "x") == 7  # quoted in the YAML
    # what the project runs with
    configured = action_endpoint(5055)
    assert rasa_speedups.window_turns(configured, "validate_order_form") == 1
    assert rasa_speedups.window_turns(configured, "validate_leave_message_form") == configured["events_window_turns"]


def test_sparse_features_are_combined_as_rasa_combines_them():
    import numpy as np
    import scipy.sparse
    from rasa.shared.nlu.training_data.features import Features

    from kefu import sparse_features

    rasa_combine = sparse_features.ORIGINAL["combine_features"]
    rng = np.random.default_rng(7)

    def sparse(rows, cols, fmt, dtype=np.float64):
        return scipy.sparse.random(rows, cols, density=0.3, format=fmt, random_state=rng, dtype=dtype)

    featurizers = ["LexicalSyntacticFeaturizer", "CountVectorsFeaturizer"]
    for rows, formats, dtypes in [(5, ["coo", "coo", "coo"], [np.float64] * 3), (1, ["coo", "csr"], [np.float64] * 2),
                                  (7, ["csr", "coo", "coo"], [np.float32, np.float64, np.int64]),
                                  (3, ["coo", "coo"], [np.float32, np.float32])]:
        features = [Features(sparse(rows, 4 + i * 3, fmt, dtype), "sequence", "text", f"f{i}")
                    for i, (fmt, dtype) in enumerate(zip(formats, dtypes))]
        mine, theirs = sparse_features.combine_features(features, featurizers), rasa_combine(features, featurizers)
        assert type(mine.features) is type(theirs.features) and mine.features.dtype == theirs.features.dtype
        assert mine.features.shape == theirs.features.shape
        for field in ("row", "col", "data"):
            np.testing.assert_array_equal(getattr(mine.features, field), getattr(theirs.features, field))
        assert (mine.type, mine.attribute, mine.origin) == (theirs.type, theirs.attribute, theirs.origin)
        assert features[0].features.shape[1] == 4  # the inputs are left as they were
    dense = [Features(np.ones((2, 3)), "sentence", "text", "a"), Features(np.zeros((2, 2)), "sentence", "text", "b")]
    np.testing.assert_array_equal(sparse_features.combine_features(dense, featurizers).features,
                                  rasa_combine(dense, featurizers).features)
    assert sparse_features.combine_features([], featurizers) is None
    mismatched = [Features(sparse(2, 3, "coo"), "sequence", "text", "a"),
                  Features(sparse(3, 3, "coo"), "sequence", "text", "b")]
    with pytest.raises(ValueError):
        sparse_features.combine_features(mismatched, featurizers)


def test_model_load_traces_diet_before_the_first_message_and_a_failing_warm_up_is_only_logged(caplog):
    from pathlib import Path
    from types import SimpleNamespace

    from rasa.core.agent import Agent

    rasa_speedups.apply()
    agent = Agent.load(str(Path(__file__).resolve().parent.parent / "models" / "kefu.tar.gz"))
    diet = [node._component.model for node in agent.processor.graph_runner._instantiated_nodes.values()
            if type(node._component).__name__ == "DIETClassifier"]
    assert diet and "_kefu_concrete" in vars(diet[0])  # traced, and the direct call taken, with no message yet

    def broken(*args, **kwargs):
        raise RuntimeError("graph broken")

    with caplog.at_level("WARNING", logger="kefu.rasa_speedups"):
        rasa_speedups.warm_up_nlu(SimpleNamespace(processor=SimpleNamespace(_parse_message_with_graph=broken)))
    assert "NLU warm-up failed" in caplog.text
