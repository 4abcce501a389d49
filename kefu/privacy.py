"""Masking of personal data for logs, handoff views and exports."""
from __future__ import annotations

import logging
import re
import warnings

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


# Chinese postal addresses: the region (province / city / district) stays, the road, compound, building
# and room are replaced. Three shapes count as an address: region + named road/compound (+ numbers),
# named road/compound + house number, or two house numbers in a row (3栋2单元501室).
_NAME_CH = r"(?:(?![的是在到我你他她址改送寄和或想要请把给从往收货吗呢了么啊吧将就还也都])[\u4e00-\u9fff])"
# a region name cannot contain a region suffix, so a run of regions splits one way only (no backtracking)
_REGION_CH = r"(?:(?![省市区县旗盟])" + _NAME_CH + ")"
_REGION = rf"(?:{_REGION_CH}{{1,7}}?(?:省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗))"
_PLACE = (rf"(?:{_NAME_CH}{{1,8}}?(?:大道|大街|路|街|巷|弄|胡同|道|村|镇|乡|小区|花园|家园|公寓|大厦|广场|华庭|"
          rf"天地|国际|社区|院|苑|城|里)(?:[一二三四五六七八九十东南西北中]{{1,2}}段)?)")
_NUM = r"[0-9０-９]+(?:[-－][0-9０-９]+)*"
_HOUSE = rf"(?:{_NUM}\s*(?:号楼|号院|号|栋|幢|座|单元|室|层|楼|弄))"
_HOUSES = rf"(?:{_HOUSE}(?:\s*[A-Za-z\u4e00-\u9fff]{{0,8}}?{_HOUSE})*(?:\s*{_NUM})?)"
_ADDRESS_RE = re.compile(
    rf"(?P<region>{_REGION}{{1,4}})(?P<detail>{_PLACE}(?:[A-Za-z\u4e00-\u9fff]{{0,10}}?{_HOUSES})?)"
    rf"|(?P<place>{_PLACE}\s*{_HOUSES})"
    rf"|(?P<rooms>{_HOUSE}(?:[\s\-]?{_HOUSE})+(?:\s*{_NUM})?)"
)


def mask_address(text: str) -> str:
    """Mask street addresses inside free text, keeping only the region.

    北京市朝阳区建国路88号院3号楼 -> 北京市朝阳区****; 文三路100号 -> ****; 3栋2单元501室 -> ****
    """
    def repl(match: re.Match) -> str:
        return (match.group("region") or "") + "****"
    return _ADDRESS_RE.sub(repl, text or "")


def mask_pii(text: str) -> str:
    """Mask phones, ID-card numbers and street addresses (analytics store and exports)."""
    return mask_address(mask_text(text))


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
        if record.exc_info and not record.exc_text:
            # a traceback carries exception messages, e.g. an action server error with the request body in it;
            # formatters reuse a record's exc_text, so the masked text is what every handler prints
            try:
                record.exc_text = mask_text(_TRACEBACK_FORMATTER.formatException(record.exc_info))
            except Exception:  # pragma: no cover - never break logging
                pass
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


_TRACEBACK_FORMATTER = logging.Formatter()


_installed = False


def install_log_masking() -> None:
    """Mask phones and ID numbers in every log record and every printed warning of this process.

    A record factory (rather than a handler filter) also covers handlers that
    frameworks such as rasa-sdk attach after this call. Warnings matter too: Rasa
    warns with the customer's text (``Failed to parse arguments in line '/…'``).
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
    show = warnings.showwarning

    def show_masked(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        masked = mask_text(text)
        show(masked if masked != text else message, category, filename, lineno, file, line)

    warnings.showwarning = show_masked
    _installed = True
