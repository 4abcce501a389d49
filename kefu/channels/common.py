"""What every customer channel shares: conversation ids per channel, message size limits, notices."""
from __future__ import annotations

from typing import Tuple

# Longer customer messages are cut to this many characters before NLU sees them.
MAX_MESSAGE_CHARS = 1000
CLIPPED_NOTICE = f"您的消息较长，我先按前{MAX_MESSAGE_CHARS}个字处理；如有遗漏请分开发送。"


def clip_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> Tuple[str, bool]:
    """The message cut to `limit` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def conversation_id(channel: str, peer_id: str) -> str:
    """The Rasa sender id for a channel's peer, e.g. ``tg:12345``: ids of different channels never collide."""
    return f"{channel}:{peer_id}"

