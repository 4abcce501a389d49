"""Hot spots of Rasa 3.6's message loop, removed without changing behaviour.

Found with ``bench/profile_turn.py`` (py-spy on the Rasa server under 20 concurrent senders, see
docs/performance.md); together they were about a third of the server's CPU per message:

1. ``RemoteAction._validate_action_result`` calls ``jsonschema.validate``, which re-checks the *schema itself*
   (``check_schema`` of the large events schema) on every action server reply, then validates. The schema is a
   constant, so it is checked once here and the validator is reused; replies are still validated the same way and
   a bad reply still raises the same ``ValidationError`` with Rasa's explanation appended.
2. ``Event.resolve_by_type`` walks every subclass of ``Event`` (``all_subclasses`` with ``inspect.isabstract``) for
   each event it deserialises -- every event of every tracker read from the tracker store and every event an
   action returns. The type-name -> class map is built once and rebuilt only when new event classes appear.
3. Every action server call opens a new HTTP client session and TCP connection, and serialises the whole
   tracker (all events of the session with their parse data, about 100 KB after twenty turns) with the standard
   library's ``json.dumps``. ``EndpointConfig.session`` now hands out one kept session per endpoint and event
   loop (keep-alive connections, dropped after 2 s idle -- before the action server's 5 s timeout), which
   serialises with ``orjson`` (about four times faster than ``ujson`` on a tracker), falling back to
   ``json.dumps`` for anything orjson refuses. The action server parses it with orjson too
   (``kefu.sdk_speedups``).

   Each event of that payload is serialised once: ``RemoteAction._action_call_format`` builds Rasa's payload with
   the events as one pre-serialised part, and an event that lies before the latest user message keeps its JSON
   (two action calls per message re-sent the whole session, about 11 % of the server's CPU).

   The RabbitMQ event broker serialises each event with orjson too (about 3 % of a production-profile process
   went to ``json.dumps`` of the published events).

4. Every DIET (and any TensorFlow model) prediction binds its ~20 input arrays to the compiled function, and
   TensorFlow asks of each one ``isinstance(value, SupportsTracingProtocol)`` -- a runtime-checkable
   ``typing_extensions.Protocol``, whose check walks the value's class with ``inspect.getattr_static``. That
   was about 9 % of the Rasa server's CPU (``bench/profile_turn.py --gil``). The answer depends on the value's
   class, so TensorFlow's check now runs once per class and is remembered. After the first (tracing) call, DIET's
   compiled prediction function is called through its concrete function directly, with the inputs converted to
   its signature's dtypes -- what TensorFlow's own dispatch ends with, minus about 0.5 ms of input
   canonicalisation and function lookup per parse; inputs that do not fit the signature take TensorFlow's path.

5. Every graph run (one NLU parse and three action predictions per message) goes through ``DaskGraphRunner``:
   it rebuilds the minimal schema, builds a dask task graph, formats a debug message with all its inputs (even
   with debug logging off) and lets dask's synchronous scheduler walk it -- about 8 % of the server's CPU around
   the components themselves. ``SequentialGraphRunner`` runs the same nodes with the same inputs, each once, in
   dependency order, with the minimal schema computed once per set of targets. It replaces the runner the
   message processor loads models with (``rasa run``); training and ``rasa test`` keep Rasa's.

6. The dialogue history (applied events, states, rule matching) is extended per conversation instead of recomputed
   for every prediction: ``kefu.incremental_history``.

7. DIET's sparse input features are combined in one step instead of a deep copy and two ``hstack`` calls:
   ``kefu.sparse_features``.

8. The message processor deep-copies the events, slots and entities it passes to ``structlogger.debug`` even when
   debug logging is off (``_CopyForDebugLog``: copied only when that logs).

9. The garbage collector's full collections walked the whole loaded model (about 0.25 s each, stalling the event
   loop): ``kefu.heap`` freezes the long-lived objects after the model is loaded and after the first message.
   Before that, a few texts are parsed (``warm_up_nlu``), so TensorFlow traces DIET's prediction before the server
   takes requests rather than inside its first burst of customer messages.

The tracker store's own costs are handled in ``kefu.tracker_store``.

``apply()`` is idempotent; it runs when Rasa imports this project's tracker store or policy module (both named
in ``endpoints.yml`` / ``config.yml``), i.e. in the Rasa server, never in the action server.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, List, Optional, Text, Tuple, Type

import orjson

from kefu import crf_numpy, heap, incremental_history, nlu_batching, sparse_features

logger = logging.getLogger(__name__)
_applied = False
ORIGINAL: Dict[str, Any] = {}  # Rasa's own functions, kept for the equivalence tests


def _cached_action_result_validator():
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _event_type_validators(response_schema: Dict[Text, Any]) -> Optional[Tuple[Any, Dict[Text, Any]]]:
    """A reply's shape without its events' ``oneOf``, and per event type the schema of that type alone.

    Rasa's event schema is ``oneOf`` 23 event schemas, each fixing ``event`` to its own constant: an event can
    only match the one of its type, so "exactly one matches" is "the one of its type matches" -- what these
    check, without trying the other 22. None (no fast path) if the schema is not of that form."""
    from jsonschema.validators import validator_for

    events = response_schema.get("properties", {}).get("events", {})
    event_schema = events.get("items", {})
    branches = event_schema.get("oneOf")
    if events.get("type") != "array" or not branches:
        return None
    common = {key: value for key, value in event_schema.items() if key != "oneOf"}
    by_type: Dict[Text, Any] = {}
    for branch in branches:
        const = branch.get("properties", {}).get("event", {}).get("const")
        if not isinstance(const, str) or const in by_type:
            return None
        schema = {**common, "allOf": [branch]}
        by_type[const] = validator_for(schema)(schema)
    shape = {**response_schema, "properties": {**response_schema["properties"], "events": {"type": "array"}}}
    return validator_for(shape)(shape), by_type


def _patch_action_result_validation() -> None:
    from jsonschema import exceptions
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    validator = _cached_action_result_validator()
    fast = _event_type_validators(RemoteAction.action_response_format_spec())

    def valid_by_event_type(result: Any) -> bool:
        if fast is None or not fast[0].is_valid(result):
            return False
        by_type = fast[1]
        for event in result.get("events") or ():
            kind = event.get("event") if isinstance(event, dict) else None
            check = by_type.get(kind) if isinstance(kind, str) else None
            if check is None or not check.is_valid(event):
                return False
        return True

    def _validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
        if valid_by_event_type(result):
            return True
        # invalid (or not known to be valid): the whole schema, for Rasa's verdict and error message
        error = exceptions.best_match(validator.iter_errors(result))
        if error is not None:
            error.message += (
                f". Failed to validate Action server response from API, "
                f"make sure your response from the Action endpoint is valid. "
                f"For more information about the format visit "
                f"{DOCS_BASE_URL}/custom-actions"
            )
            raise error
        return True

    RemoteAction._validate_action_result = _validate_action_result


def structlog_debug_enabled() -> bool:
    """Whether Rasa's structlog loggers log at DEBUG (``rasa run --debug``); with a higher level Rasa's
    ``make_filtering_bound_logger`` makes ``debug`` a no-op named ``_nop``."""
    import structlog

    return getattr(getattr(structlog.get_config()["wrapper_class"], "debug", None), "__name__", "") != "_nop"


class _CopyForDebugLog:
    """``rasa.core.processor``'s ``copy`` module: it uses ``copy.deepcopy`` only for values it passes to
    ``structlogger.debug`` (six places, about 1 % of the server's CPU). They are copied only if that logs."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        import copy

        return copy.deepcopy(value, memo) if structlog_debug_enabled() else value


def _patch_processor_debug_copies() -> None:
    import inspect
    import re

    from rasa.core import processor

    uses = set(re.findall(r"\bcopy\.(\w+)", inspect.getsource(processor)))
    if uses == {"deepcopy"}:  # a Rasa version that copies for anything else keeps the real module
        processor.copy = _CopyForDebugLog


def _patch_event_type_lookup() -> None:
    import rasa.shared.utils.common
    from rasa.shared.core.events import Event

    original = Event.resolve_by_type
    by_name: Dict[Text, Type[Event]] = {}
    known = {"count": -1}

    def _count_subclasses(cls: type) -> int:
        return sum(1 + _count_subclasses(sub) for sub in cls.__subclasses__())

    def resolve_by_type(type_name: Text, default: Optional[Type[Event]] = None) -> Optional[Type[Event]]:
        cls = by_name.get(type_name)
        if cls is None:
            count = _count_subclasses(Event)
            if count != known["count"]:  # a new Event subclass was imported since the map was built
                by_name.clear()
                for candidate in reversed(rasa.shared.utils.common.all_subclasses(Event)):
                    by_name[candidate.type_name] = candidate  # first match wins, as in Rasa's linear scan
                known["count"] = count
                cls = by_name.get(type_name)
        if cls is not None:
            return cls
        return original(type_name, default)  # unknown names: Rasa's own handling ("topic", default, ValueError)

    Event.resolve_by_type = staticmethod(resolve_by_type)


class _EventsJson:
    """A tracker's events for the action server, serialised once per event: an event that lies before the
    conversation's latest user message keeps its JSON on the event object (``_kefu_json``); the events of the
    current turn are serialised afresh each time. What Rasa changes after an event was logged is the latest user
    message of the open turn (``EntitiesAdded``, ``DefinePrevUserUtteredFeaturization``), never an older event."""

    __slots__ = ("events", "json")

    def __init__(self, events: List[Any]) -> None:
        from rasa.shared.core.events import UserUttered

        self.events = events
        settled = 0  # events[:settled] lie before the latest user message
        for index in range(len(events) - 1, -1, -1):
            if isinstance(events[index], UserUttered):
                settled = index
                break
        parts = []
        for index, event in enumerate(events):
            cached = event.__dict__.get("_kefu_json")
            if cached is None:
                cached = json_bytes(event.as_dict())
                if index < settled:
                    event.__dict__["_kefu_json"] = cached
            parts.append(cached)
        self.json = b"[" + b",".join(parts) + b"]"

    def as_dicts(self) -> List[Dict[Text, Any]]:
        return [event.as_dict() for event in self.events]


def _orjson_default(value: Any) -> Any:
    if isinstance(value, _EventsJson):
        return orjson.Fragment(value.json)
    raise TypeError


def _json_default(value: Any) -> Any:
    if isinstance(value, _EventsJson):
        return value.as_dicts()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_orjson_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, OverflowError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, default=_json_default).encode()


WINDOW_SETTING = "events_window_turns"
WINDOW_BY_ACTION_SETTING = "events_window_turns_by_action"  # {action name: turns}, for actions that read less
_WARNED_WINDOWS: set = set()


def window_turns(settings: Dict[Text, Any], action_name: Text) -> Optional[int]:
    """How many user messages back the events sent to `action_name` start: its own entry under
    ``events_window_turns_by_action`` in the action endpoint, else ``events_window_turns``, else all (None).
    A value that is not a positive whole number is ignored with a warning (the endpoint file is hand-edited)."""
    by_action = settings.get(WINDOW_BY_ACTION_SETTING) or {}
    candidates = []
    if isinstance(by_action, dict) and action_name in by_action:
        candidates.append((f"{WINDOW_BY_ACTION_SETTING}.{action_name}", by_action[action_name]))
    candidates.append((WINDOW_SETTING, settings.get(WINDOW_SETTING)))
    for name, value in candidates:
        if value is None:
            continue
        if isinstance(value, str) and value.strip().isdigit():  # `"10"`, quoted in the YAML
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if (name, repr(value)) not in _WARNED_WINDOWS:  # once, not on every action call
            _WARNED_WINDOWS.add((name, repr(value)))
            logger.warning("action endpoint: %s=%r is not a positive whole number; ignored", name, value)
    return None


def events_window(events: Any, turns: Any) -> List[Any]:
    """The events the action server gets. Rasa sends every event the tracker holds -- every session the customer
    ever had, re-sent and re-parsed on each of the two or three action calls of every message. With
    ``events_window_turns: N`` in the action endpoint, they start at the N-th latest user message (all of them
    while there are fewer). The tracker state around them (slots, latest message, active loop, ...) is always the
    whole tracker's, and the tracker store keeps every event. An action that reads older history than N user
    messages must not be run with a window."""
    events = list(events)
    if not turns:
        return events
    from rasa.shared.core.events import UserUttered

    seen = 0
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], UserUttered):
            seen += 1
            if seen == int(turns):
                return events[index:]
    return events


def _patch_action_payload_events() -> None:
    import rasa
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.trackers import EventVerbosity

    original = RemoteAction._action_call_format
    ORIGINAL["action_call_format"] = original

    def _action_call_format(self: RemoteAction, tracker: Any, domain: Any) -> Dict[Text, Any]:
        # Rasa's payload (RemoteAction._action_call_format), with the tracker state built without events and the
        # events (verbosity ALL: every event the tracker holds; see `events_window` and `window_turns` for the
        # endpoint's `events_window_turns` and `events_window_turns_by_action`) added as one pre-serialised part
        state = tracker.current_state(EventVerbosity.NONE)
        turns = window_turns(self.action_endpoint.kwargs, self._name)
        state["events"] = _EventsJson(events_window(tracker.events, turns))
        result = {"next_action": self._name, "sender_id": tracker.sender_id, "tracker": state,
                  "version": rasa.__version__}
        if not self._is_selective_domain_enabled() or domain.does_custom_action_explicitly_need_domain(self.name()):
            result["domain"] = domain.as_dict()
        return result

    RemoteAction._action_call_format = _action_call_format


def json_text(value: Any) -> str:
    return json_bytes(value).decode()


def json_loads(text: Any) -> Any:
    """orjson's parse, or the standard library's for what orjson refuses (NaN and Infinity, which json.dumps
    writes for such floats)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class _JsonAsBytes:
    """The client session, sending a ``json=`` body as orjson's UTF-8 bytes (aiohttp's own ``json=`` path wants a
    ``str``, which costs a decode and an encode of the whole tracker)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if "json" in kwargs and kwargs.get("data") is None:
            kwargs["data"] = json_bytes(kwargs.pop("json"))
            headers = dict(kwargs.get("headers") or {})
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
            kwargs["headers"] = headers
        return self._session.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _KeptSession:
    """``async with endpoint.session() as session`` without closing it: the next request reuses the connection."""

    def __init__(self, session: Any) -> None:
        self._session = session

    async def __aenter__(self) -> Any:
        return _JsonAsBytes(self._session)

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


def _patch_action_client_session() -> None:
    import asyncio

    import aiohttp
    from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig

    def new_session(self: EndpointConfig) -> aiohttp.ClientSession:
        auth = None
        if self.basic_auth:
            auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"])
        # idle connections are dropped after 2 s, well before the action server's (Sanic's) 5 s keep-alive timeout
        connector = aiohttp.TCPConnector(keepalive_timeout=2.0, limit=100)
        return aiohttp.ClientSession(headers=self.headers, auth=auth, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
                                     json_serialize=json_text)

    def session(self: EndpointConfig) -> _KeptSession:
        loop = asyncio.get_running_loop()
        kept = self.__dict__.get("_kefu_session")
        if kept is None or kept[0] is not loop or kept[1].closed:
            kept = (loop, new_session(self))
            self.__dict__["_kefu_session"] = kept
        return _KeptSession(kept[1])

    EndpointConfig.session = session


def _patch_event_broker_serialiser() -> None:
    import aio_pika
    from rasa.core.brokers.pika import PikaEventBroker

    def _message(self: PikaEventBroker, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]]) -> Any:
        return aio_pika.Message(json_bytes(event), headers=headers, app_id=self.rasa_environment,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)

    ORIGINAL["PikaEventBroker._message"] = PikaEventBroker._message
    PikaEventBroker._message = _message


def _patch_tensorflow_tracing_check() -> None:
    import types

    from tensorflow.core.function.trace_type import trace_type_builder
    from tensorflow.python.types import trace

    protocol = trace.SupportsTracingProtocol
    by_class: Dict[type, bool] = {}

    class _OncePerClass(type):
        def __instancecheck__(cls, value: Any) -> bool:
            kind = type(value)
            known = by_class.get(kind)
            if known is None:
                known = by_class[kind] = isinstance(value, protocol)  # TensorFlow's own check, once per class
            return known

    class SupportsTracingProtocol(metaclass=_OncePerClass):
        """Stands in for ``trace.SupportsTracingProtocol`` inside ``trace_type_builder`` only."""

    class _Trace(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(trace, name)

    proxy = _Trace(trace.__name__)
    proxy.SupportsTracingProtocol = SupportsTracingProtocol
    trace_type_builder.trace = proxy


def _patch_tensorflow_predict_call() -> None:
    import tensorflow as tf
    from rasa.shared.constants import DIAGNOSTIC_DATA
    from rasa.utils.tensorflow import models

    RasaModel = models.RasaModel
    original = RasaModel._rasa_predict
    tf_utils = models.tf_utils

    def concrete_call(self: Any) -> tuple:
        step = self._tf_predict_step
        kept = self.__dict__.get("_kefu_concrete")
        if kept is None or kept[0] is not step:
            concrete = step.get_concrete_function()
            kept = (step, concrete, list(concrete.structured_input_signature[0][0]))
            self.__dict__["_kefu_concrete"] = kept
        return kept

    def _rasa_predict(self: Any, batch_in: Any) -> Dict[Text, Any]:
        if self._tf_predict_step is None or self._run_eagerly or not self.prepared_for_prediction:
            return original(self, batch_in)  # the first call traces the function
        _, concrete, specs = concrete_call(self)
        if len(batch_in) != len(specs) or not all(
                spec.shape.is_compatible_with(value.shape) for value, spec in zip(batch_in, specs)):
            return original(self, batch_in)  # TensorFlow's own call raises the error
        self._training = False
        inputs = [tf.convert_to_tensor(value, dtype=spec.dtype) for value, spec in zip(batch_in, specs)]
        outputs = tf_utils.sync_to_numpy_or_python_type(
            concrete._call_flat(inputs, captured_inputs=concrete.captured_inputs))
        if DIAGNOSTIC_DATA in outputs:
            outputs[DIAGNOSTIC_DATA] = self._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
        return outputs

    ORIGINAL["_rasa_predict"] = original
    RasaModel._rasa_predict = _rasa_predict


def _sequential_graph_runner() -> type:
    from rasa.engine.exceptions import GraphRunError
    from rasa.engine.runner.dask import DaskGraphRunner

    class SequentialGraphRunner(DaskGraphRunner):
        """``DaskGraphRunner`` without dask: the same nodes, each run once, dependencies first."""

        def run(self, inputs: Optional[Dict[Text, Any]] = None,
                targets: Optional[List[Text]] = None) -> Dict[Text, Any]:
            run_targets = list(targets if targets else self._graph_schema.target_names)
            schemas = self.__dict__.setdefault("_kefu_minimal_schemas", {})
            key = tuple(run_targets)
            if key not in schemas:
                schemas[key] = self._graph_schema.minimal_graph_schema(run_targets)
            nodes = schemas[key].nodes
            done: Dict[Text, Any] = {}
            for name, value in (inputs or {}).items():
                if isinstance(value, str) and value in nodes:
                    raise GraphRunError(
                        f"Input value '{value}' clashes with a node name. Make sure that none of the input names "
                        f"passed to the `run` method are the same as node names in the graph schema.")
                done[name] = (name, value)  # what dask passes on for an input: the (name, value) tuple

            def compute(name: Text) -> Any:
                if name in done:
                    return done[name]
                if name not in nodes:
                    return name  # dask passes a name it does not know as the plain string
                args = [compute(dependency) for dependency in nodes[name].needs.values()]
                done[name] = self._instantiated_nodes[name](*args)
                return done[name]

            try:
                return dict(compute(target) for target in run_targets)
            except RuntimeError as error:
                raise GraphRunError("Error running runner.") from error

    return SequentialGraphRunner


def _patch_prediction_graph_runner() -> None:
    import rasa.core.processor

    rasa.core.processor.DaskGraphRunner = _sequential_graph_runner()


# Short, long, with an identifier, digits only: the shapes TensorFlow traces DIET's prediction for.
WARM_UP_TEXTS = ("你好", "查一下订单202411010001", "13800138000", "我上周买的手机到现在还没发货，能不能帮我催一下，谢谢")


def warm_up_nlu(agent: Any) -> None:
    """Parse a few texts right after the model is loaded, before the server takes requests: TensorFlow traces
    DIET's prediction function on its first calls (seconds on a small machine, blocking the event loop), and a
    freshly started process would otherwise spend them inside its first burst of customer messages. Touches no
    tracker store, lock or event broker; a failure is logged and never stops the server."""
    from rasa.core.channels.channel import UserMessage
    from rasa.shared.core.trackers import DialogueStateTracker

    processor = getattr(agent, "processor", None)
    if processor is None:
        return
    started = time.perf_counter()
    try:
        for text in WARM_UP_TEXTS:
            message = UserMessage(text, sender_id="kefu-warm-up")
            processor._parse_message_with_graph(message, DialogueStateTracker.from_events(message.sender_id, []))
    except Exception:  # noqa: BLE001 -- a warm-up must not keep the server from starting
        logger.warning("NLU warm-up failed; the first messages will be slower", exc_info=True)
        return
    logger.info("NLU warmed up in %.2f s", time.perf_counter() - started)


def _patch_freeze_after_model_load() -> None:
    from rasa.core.agent import Agent
    from rasa.core.processor import MessageProcessor

    load_model = Agent.load_model

    def load_model_then_freeze(self: Agent, *args: Any, **kwargs: Any) -> None:
        load_model(self, *args, **kwargs)
        warm_up_nlu(self)
        heap.freeze_long_lived_objects("model loaded")

    handle_message = MessageProcessor.handle_message

    async def handle_message_then_freeze(self: MessageProcessor, message: Any) -> Any:
        try:
            return await handle_message(self, message)
        finally:
            if not self.__dict__.get("_kefu_frozen"):  # TensorFlow traces its functions on the first prediction
                self.__dict__["_kefu_frozen"] = True
                heap.freeze_long_lived_objects("first message handled")

    Agent.load_model = load_model_then_freeze
    MessageProcessor.handle_message = handle_message_then_freeze


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _patch_action_result_validation()
    _patch_processor_debug_copies()
    _patch_event_type_lookup()
    _patch_action_client_session()
    _patch_action_payload_events()
    _patch_event_broker_serialiser()
    _patch_tensorflow_tracing_check()
    _patch_tensorflow_predict_call()
    _patch_prediction_graph_runner()
    incremental_history.apply()
    sparse_features.apply()
    nlu_batching.apply()
    crf_numpy.apply()
    _patch_freeze_after_model_load()
    logger.debug("kefu.rasa_speedups applied")
