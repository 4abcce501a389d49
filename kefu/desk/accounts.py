"""Desk accounts: agent rows from the routing config, password hashes, login sessions.

- Passwords are hashed with scrypt (``hashlib.scrypt``, random 16-byte salt) into a self-describing
  string ``scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``; verification reads the parameters back from
  the string (so they can be raised later without breaking old hashes) and compares in constant time.
- ``sync_agents`` mirrors the agents of config/routing.yml into ``desk_agents`` (name, role). A new
  agent gets the demo password (env ``KEFU_DEMO_AGENT_PASSWORD``, default ``kefu123``); an existing
  password is never overwritten.
- ``login`` returns a random bearer token and a CSRF token; only the SHA-256 (hex) of the bearer token is
  stored (``desk_sessions.token_hash``), so a leaked database does not leak live sessions.
- ``session_agent`` resolves a token to its agent; an expired session is deleted and gives None.

All functions work inside the caller's session/transaction (they flush, never commit).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta
from typing import Dict, List, Optional, Tuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kefu.desk.routing import RoutingConfig
from kefu.models import DeskAgent, DeskSession

DEMO_PASSWORD_ENV = "KEFU_DEMO_AGENT_PASSWORD"
DEFAULT_DEMO_PASSWORD = "kefu123"
DEFAULT_SESSION_TTL = timedelta(hours=8)

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN, _SALT_LEN = 2 ** 14, 8, 1, 32, 16
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """A salted scrypt hash in the format ``scrypt$n=…,r=…,p=…$<salt b64>$<hash b64>``."""
    salt = os.urandom(_SALT_LEN)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=_SCRYPT_LEN, maxmem=_MAXMEM)
    return f"scrypt$n={_SCRYPT_N},r={_SCRYPT_R},p={_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored` (a `hash_password` string); False for anything malformed."""
    try:
        algorithm, params, salt_b64, digest_b64 = stored.split("$")
        if algorithm != "scrypt":
            return False
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        if not expected or n > 2 ** 17 or r > 16 or p > 16:
            return False
        actual = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                maxmem=max(_MAXMEM, 256 * n * r))
    except (ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to verify against when the agent does not exist, so that a login for an unknown id takes as
# long as one with a wrong password (no user enumeration by timing).
_DUMMY_HASH: Optional[str] = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


def token_hash(token: str) -> str:
    """SHA-256 (hex, 64 chars) of a bearer token: what `desk_sessions` stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------
# agents

def get_agent(session: Session, agent_id: str) -> Optional[DeskAgent]:
    return session.execute(select(DeskAgent).where(DeskAgent.agent_id == agent_id)).scalar_one_or_none()


def sync_agents(session: Session, config: RoutingConfig, *, now: Optional[datetime] = None
                ) -> Dict[str, List[str]]:
    """Create/update `desk_agents` from the config's agents; returns ids by outcome.

    ``{"created": [...], "updated": [...], "unchanged": [...]}``. New agents get the demo password
    (env KEFU_DEMO_AGENT_PASSWORD, default "kefu123") and start offline; name and role of existing
    agents follow the config; passwords and presence of existing agents are never touched.
    Agents no longer in the config are left as they are (they get no chats: routing uses the config).
    """
    now = now or datetime.utcnow()
    result: Dict[str, List[str]] = {"created": [], "updated": [], "unchanged": []}
    existing = {row.agent_id: row for row in session.execute(select(DeskAgent)).scalars()}
    demo_hash: Optional[str] = None
    for agent in config.agents:
        row = existing.get(agent.id)
        if row is None:
            if demo_hash is None:
                demo_hash = hash_password(os.environ.get(DEMO_PASSWORD_ENV) or DEFAULT_DEMO_PASSWORD)
            session.add(DeskAgent(agent_id=agent.id, name=agent.name, role=agent.role,
                                  password_hash=demo_hash, online=0, updated_at=now))
            result["created"].append(agent.id)
        elif row.name != agent.name or row.role != agent.role:
            row.name, row.role, row.updated_at = agent.name, agent.role, now
            result["updated"].append(agent.id)
        else:
            result["unchanged"].append(agent.id)
    session.flush()
    return result


def set_password(session: Session, agent_id: str, password: str) -> None:
    """Replace an agent's password (and end their sessions). ValueError for an unknown agent."""
    agent = get_agent(session, agent_id)
    if agent is None:
        raise ValueError(f"unknown agent '{agent_id}'")
    agent.password_hash = hash_password(password)
    agent.updated_at = datetime.utcnow()
    session.execute(delete(DeskSession).where(DeskSession.agent_id == agent_id))
    session.flush()


# ------------------------------------------------------------------------------------------------
# sessions

def login(session: Session, agent_id: str, password: str, ttl: timedelta = DEFAULT_SESSION_TTL, *,
          now: Optional[datetime] = None) -> Optional[Tuple[str, str]]:
    """(bearer token, CSRF token) for a correct agent id + password, else None.

    Only the SHA-256 of the bearer token is stored; the session expires after `ttl`.
    """
    agent = get_agent(session, agent_id)
    if agent is None:
        verify_password(password, _dummy_hash())
        return None
    if not verify_password(password, agent.password_hash):
        return None
    now = now or datetime.utcnow()
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(DeskSession(token_hash=token_hash(token), agent_id=agent.agent_id, csrf_token=csrf,
                            created_at=now, expires_at=now + ttl))
    session.flush()
    return token, csrf


def _session_row(session: Session, token: str) -> Optional[DeskSession]:
    if not token:
        return None
    return session.get(DeskSession, token_hash(token))


def session_agent(session: Session, token: str, *, now: Optional[datetime] = None) -> Optional[DeskAgent]:
    """The agent of a live session token; None for an unknown or expired token (expired ones are deleted)."""
    row = _session_row(session, token)
    if row is None:
        return None
    if row.expires_at <= (now or datetime.utcnow()):
        session.delete(row)
        session.flush()
        return None
    return get_agent(session, row.agent_id)


def session_csrf(session: Session, token: str, *, now: Optional[datetime] = None) -> Optional[str]:
    """The CSRF token of a live session (for the desk to compare with hmac.compare_digest), else None."""
    if session_agent(session, token, now=now) is None:
        return None
    row = _session_row(session, token)
    return row.csrf_token if row is not None else None


def logout(session: Session, token: str) -> bool:
    """End the session of `token`; True when there was one."""
    row = _session_row(session, token)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def purge_expired_sessions(session: Session, *, now: Optional[datetime] = None) -> int:
    """Delete every expired session; returns how many."""
    result = session.execute(delete(DeskSession).where(DeskSession.expires_at <= (now or datetime.utcnow())))
    return result.rowcount or 0
