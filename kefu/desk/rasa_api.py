"""A small client for the Rasa HTTP API as the agent desk uses it (token auth with ``?token=``).

- ``get_tracker``: ``GET /conversations/{id}/tracker?include_events=ALL``
- ``append_events``: ``POST /conversations/{id}/tracker/events`` (a list of events) with
  ``output_channel`` and ``execute_side_effects`` so bot events reach the customer's channel
- ``execute_action``: ``POST /conversations/{id}/execute`` ``{"name": ...}`` with ``output_channel``

Every failure (connection refused, timeout, non-2xx answer, non-JSON body) raises :class:`RasaUnavailable`
with an English message, so the desk can answer 502 or log and carry on.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional
from urllib.parse import quote

import aiohttp

DEFAULT_TIMEOUT = 10.0


class RasaUnavailable(Exception):
    """Rasa could not be reached or refused the request."""


class RasaClient:
    def __init__(self, base_url: str, token: Optional[str] = None, *, timeout: float = DEFAULT_TIMEOUT,
                 session: Optional[aiohttp.ClientSession] = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    def _url(self, conversation_id: str, suffix: str) -> str:
        return f"{self.base_url}/conversations/{quote(conversation_id, safe=':')}/{suffix}"

    def _params(self, **params: Any) -> Dict[str, str]:
        result = {key: str(value) for key, value in params.items() if value is not None}
        if self.token:
            result["token"] = self.token
        return result

    async def _request(self, method: str, url: str, params: Dict[str, str], body: Any = None) -> Any:
        session = await self._client()
        try:
            async with session.request(method, url, params=params, json=body, timeout=self.timeout) as response:
                if response.status >= 300:
                    detail = (await response.text())[:200]
                    raise RasaUnavailable(f"Rasa answered {response.status} to {method} {url}: {detail}")
                if response.content_type != "application/json":
                    return None
                return await response.json()
        except RasaUnavailable:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:  # asyncio.TimeoutError is TimeoutError
            raise RasaUnavailable(f"Rasa is unreachable at {self.base_url}: {error!r}") from error
        except Exception as error:  # e.g. asyncio.TimeoutError on Python < 3.11
            if error.__class__.__name__ == "TimeoutError":
                raise RasaUnavailable(f"Rasa timed out at {self.base_url}") from error
            raise

    async def get_tracker(self, conversation_id: str) -> Dict[str, Any]:
        """The conversation's tracker with every event."""
        result = await self._request("GET", self._url(conversation_id, "tracker"),
                                     self._params(include_events="ALL"))
        if not isinstance(result, dict):
            raise RasaUnavailable("Rasa returned no tracker")
        return result

    async def append_events(self, conversation_id: str, events: List[Dict[str, Any]],
                            output_channel: Optional[str] = None, execute_side_effects: bool = True) -> Any:
        """Append events to the tracker; bot events are sent to `output_channel` (default "latest")."""
        return await self._request(
            "POST", self._url(conversation_id, "tracker/events"),
            self._params(include_events="NONE", output_channel=output_channel or "latest",
                         execute_side_effects="true" if execute_side_effects else "false"),
            events)

    async def execute_action(self, conversation_id: str, name: str, output_channel: Optional[str] = None) -> Any:
        """Run an action (e.g. a response such as utter_ask_rating) in the conversation."""
        return await self._request(
            "POST", self._url(conversation_id, "execute"),
            self._params(include_events="NONE", output_channel=output_channel or "latest"),
            {"name": name})
