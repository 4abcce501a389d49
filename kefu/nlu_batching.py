"""Concurrent parses of one Rasa server process go through the NLU graph together.

DIET's TensorFlow call costs about the same for one message as for eight (``bench/diet_batch.py``: 9.0 ms per
message alone, 1.8 ms each in a batch of eight, on a 2-core machine), and a parse used to be one graph run of
one message, run on the event loop. Here:

1. ``MessageProcessor.parse_message`` hands the message to the processor's ``ParseBatcher`` and awaits its parse.
   The batcher lets the event loop turn twice (so conversations whose tracker or lock has just arrived reach
   their parse too), then runs the NLU graph once for every message waiting (at most ``KEFU_NLU_MAX_BATCH``,
   default 32; 1 parses each message alone). Under load, the messages that arrive during a graph run make the
   next batch; a message on an idle server waits two loop turns, microseconds. (A worker thread for the graph
   run batched about as well and cost the same CPU, with more to get wrong; measured in docs/performance.md.)
2. ``DIETClassifier.process`` predicts all messages of a run in one TensorFlow call, then reads each message's
   intent and entities from its own row, exactly as Rasa's per-message ``process`` does from a batch of one (the
   entity rows are cut to the message's own token count; padding never reaches the entity tags).

The parse data is the same as Rasa's ``_parse_message_with_graph`` builds (``tests/test_nlu_batching.py``
compares them, and batched DIET against one-by-one, on the NLU test split). A graph run that raises is repeated
for each of its messages alone, so one bad message fails only its own parse. A model whose NLU nodes read the
tracker (none of Rasa's do) is parsed one message at a time, with its tracker, as before.

``apply()`` runs from ``kefu.rasa_speedups.apply()``: only in processes that load this project's model.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any, Dict, List, Optional, Text, Tuple

import numpy as np

logger = logging.getLogger(__name__)

MAX_BATCH_ENV = "KEFU_NLU_MAX_BATCH"  # at most this many messages per graph run; 1 parses each message alone
DEFAULT_MAX_BATCH = 32
ORIGINAL: Dict[str, Any] = {}  # Rasa's own functions, kept for the equivalence tests
_applied = False


def _row(value: Any, index: int) -> Any:
    """Row `index` of a batch output, kept as a batch of one (what Rasa's single-message path gets)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value[index:index + 1]
    if isinstance(value, dict):
        return {key: _row(item, index) for key, item in value.items()}
    return value


def _diet_outputs_per_message(classifier: Any, outputs: Dict[Text, Any], messages: List[Any]) -> List[Dict]:
    from rasa.shared.nlu.constants import TEXT
    from rasa.nlu.constants import TOKENS_NAMES

    per_message = []
    for index, message in enumerate(messages):
        single = {key: _row(value, index) for key, value in outputs.items()}
        length = len(message.get(TOKENS_NAMES[TEXT], []))
        for spec in classifier._entity_tag_specs:
            for kind in ("ids", "scores"):
                key = f"e_{spec.tag_name}_{kind}"
                if isinstance(single.get(key), np.ndarray):
                    single[key] = single[key][:, :length]  # the batch is padded to its longest message
        per_message.append(single)
    return per_message


def _batchable(classifier: Any, messages: List[Any]) -> bool:
    from rasa.nlu.constants import TOKENS_NAMES
    from rasa.shared.nlu.constants import TEXT

    return (len(messages) > 1 and classifier.model is not None
            and not classifier._execution_context.should_add_diagnostic_data
            and all(message.get(TOKENS_NAMES[TEXT]) for message in messages))


def _patch_diet_process() -> None:
    from rasa.nlu.classifiers.diet_classifier import DIETClassifier
    from rasa.shared.nlu.constants import ENTITIES, INTENT
    from rasa.utils.tensorflow.constants import ENTITY_RECOGNITION, INTENT_CLASSIFICATION

    original = DIETClassifier.process
    ORIGINAL["diet_process"] = original

    @functools.wraps(original)  # Rasa's graph validation reads process's type hints (resolved in Rasa's module)
    def process(self: DIETClassifier, messages: List[Any]) -> List[Any]:
        if type(self) is not DIETClassifier or not _batchable(self, messages):
            return original(self, messages)  # subclasses (ResponseSelector) and single messages: Rasa's loop
        model_data = self._create_model_data(messages, training=False)
        if model_data.is_empty() or model_data.number_of_examples() != len(messages):
            return original(self, messages)
        outputs = self.model.run_inference(model_data, batch_size=len(messages))
        for message, out in zip(messages, _diet_outputs_per_message(self, outputs, messages)):
            if self.component_config[INTENT_CLASSIFICATION]:
                label, label_ranking = self._predict_label(out)
                message.set(INTENT, label, add_to_output=True)
                message.set("intent_ranking", label_ranking, add_to_output=True)
            if self.component_config[ENTITY_RECOGNITION]:
                message.set(ENTITIES, self._predict_entities(out, message), add_to_output=True)
        return messages

    DIETClassifier.process = process


def max_batch_setting() -> int:
    value = os.environ.get(MAX_BATCH_ENV) or str(DEFAULT_MAX_BATCH)
    try:
        return max(1, int(value))
    except ValueError:
        logger.warning("%s=%r is not a whole number; using %d", MAX_BATCH_ENV, value, DEFAULT_MAX_BATCH)
        return DEFAULT_MAX_BATCH


class ParseBatcher:
    """One per message processor (i.e. per loaded model): see the module's docstring."""

    def __init__(self, processor: Any) -> None:
        from rasa.engine.constants import PLACEHOLDER_TRACKER

        self.processor = processor
        self.target = processor.model_metadata.nlu_target
        nodes = processor.graph_runner._graph_schema.minimal_graph_schema([self.target]).nodes
        self.reads_tracker = any(PLACEHOLDER_TRACKER in node.needs.values() for node in nodes.values())
        self.pending: List[Tuple[Any, bool, asyncio.Future]] = []
        self.draining = False
        self.max_batch = max_batch_setting()
        self.runs = 0

    async def parse(self, message: Any, only_output_properties: bool) -> Dict[Text, Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((message, only_output_properties, future))
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                # two turns of the event loop first: conversations whose tracker or lock has just arrived reach
                # their parse too, and join this graph run
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                batch, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
                for (_, _, future), result in zip(batch, self._parse_batch(batch)):
                    _deliver(future, result)
        finally:
            self.draining = False

    def _parse_batch(self, batch: List[Tuple[Any, bool, asyncio.Future]]) -> List[Any]:
        """Parse data (or the exception) for each message of the batch."""
        if len(batch) > 1:
            try:
                return self._run_graph([message for message, _, _ in batch], [only for _, only, _ in batch])
            except Exception:  # noqa: BLE001 -- find the message that broke it: each alone below
                logger.debug("batched parse failed; parsing its %d messages one by one", len(batch), exc_info=True)
        results: List[Any] = []
        for message, only_output_properties, _ in batch:
            try:
                results.extend(self._run_graph([message], [only_output_properties]))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results

    def _run_graph(self, messages: List[Any], only_output: List[bool]) -> List[Dict[Text, Any]]:
        from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
        from rasa.shared.core.trackers import DialogueStateTracker
        from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_NAME_KEY, PREDICTED_CONFIDENCE_KEY, TEXT

        tracker = DialogueStateTracker.from_events(messages[0].sender_id, [])  # what Rasa passes without one
        results = self.processor.graph_runner.run(
            inputs={PLACEHOLDER_MESSAGE: messages, PLACEHOLDER_TRACKER: tracker}, targets=[self.target])
        parsed = results[self.target]
        if len(parsed) != len(messages):
            raise RuntimeError(f"NLU graph returned {len(parsed)} parses for {len(messages)} messages")
        self.runs += 1
        out = []
        for message, only_output_properties in zip(parsed, only_output):
            parse_data = {TEXT: "", INTENT: {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0}, ENTITIES: []}
            parse_data.update(message.as_dict(only_output_properties=only_output_properties))
            out.append(parse_data)
        return out


def _deliver(future: asyncio.Future, result: Any) -> None:
    if future.done():
        return  # its request was cancelled
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except RuntimeError:  # the future's event loop is closed: nobody waits for it any more
        logger.debug("parse result for a closed event loop dropped")


def batcher_for(processor: Any) -> ParseBatcher:
    batcher = processor.__dict__.get("_kefu_parse_batcher")
    if batcher is None:
        batcher = processor.__dict__["_kefu_parse_batcher"] = ParseBatcher(processor)
    return batcher


def _patch_parse_message() -> None:
    from rasa.core.processor import MessageProcessor

    parse_message = MessageProcessor.parse_message
    ORIGINAL["parse_message"] = parse_message

    async def batched_parse_message(self: MessageProcessor, message: Any, tracker: Optional[Any] = None,
                                    only_output_properties: bool = True) -> Dict[Text, Any]:
        if self.http_interpreter:
            return await parse_message(self, message, tracker, only_output_properties)
        batcher = batcher_for(self)
        if batcher.reads_tracker:
            return await parse_message(self, message, tracker, only_output_properties)
        parse_data = await batcher.parse(message, only_output_properties)
        # the rest of Rasa's parse_message, after its graph run
        self._update_full_retrieval_intent(parse_data)
        self._check_for_unseen_features(parse_data)
        return parse_data

    MessageProcessor.parse_message = batched_parse_message


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _patch_diet_process()
    _patch_parse_message()
