"""Masking of personal data for logs, handoff views and exports."""
from __future__ import annotations

import logging
import re

# also "+86 138-0013-8000", "8613800138000", "138 0013 8000": the forms id_formats accepts as phones
_PHONE_RE = re.compile(r"(?<!\d)((?:\+?86[\s\-]?)?1[3-9]\d)[\s\-]?(\d{4})[\s\-]?(\d{4})(?!\d)")
_ID_CARD_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")


def mask_phone(phone: str) -> str:
    """13812345678 -> 138****5678"""
    return _PHONE_RE.sub(r"\1****\3", phone or "")


def mask_text(text: str) -> str:
    """Mask every phone number and ID-card number inside free text."""
    text = _ID_CARD_RE.sub(lambda m: m.group(1) + "********" + m.group(3), text or "")
    return _PHONE_RE.sub(r"\1****\3", text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks phones and ID numbers in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - never break logging
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_installed = False


def install_log_masking() -> None:
    """Mask phones and ID numbers in every log record of this process.

    A record factory (rather than a handler filter) also covers handlers that
    frameworks such as rasa-sdk attach after this call.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()
    mask = MaskingFilter()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        mask.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
