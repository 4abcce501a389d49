"""The one place where the shapes of business identifiers are defined.

Order numbers, phone numbers and tracking numbers are recognised by the spaCy
entity ruler (built from these patterns), validated by the forms and generated
by the demo data from the same definitions.  Change them here only.
"""
from __future__ import annotations

import re
from typing import Optional

ORDER_ID = r"\d{10,20}"
PHONE = r"1[3-9]\d{9}"
PHONE_LAST4 = r"\d{4}"
# carrier prefix -> number of digits after it; plain digits are also accepted
TRACKING_PREFIXED = {"SF": 12, "JD": 13, "YT": 13}
TRACKING_PLAIN = r"\d{12,15}"
TRACKING_NUMBER = "|".join(
    [f"{prefix}\\d{{{n}}}" for prefix, n in TRACKING_PREFIXED.items()] + [TRACKING_PLAIN]
)

_ORDER_RE = re.compile(rf"^{ORDER_ID}$")
_PHONE_RE = re.compile(rf"^{PHONE}$")
_LAST4_RE = re.compile(rf"^{PHONE_LAST4}$")
_TRACKING_RE = re.compile(rf"^(?:{TRACKING_NUMBER})$", re.IGNORECASE)

# full-width digits / letters customers type on Chinese IMEs
_FULLWIDTH = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ"}


def normalize(value: object) -> str:
    """Strip separators customers put into numbers ("138 1234 5678", "SF-1234…")."""
    text = str(value or "").translate(_FULLWIDTH)
    return re.sub(r"[\s\-_.,，。:：#＃]", "", text).upper()


def is_order_id(value: object) -> bool:
    return bool(_ORDER_RE.match(normalize(value)))


def is_phone(value: object) -> bool:
    return bool(_PHONE_RE.match(normalize(value).removeprefix("+86")))


def is_phone_last4(value: object) -> bool:
    return bool(_LAST4_RE.match(normalize(value)))


def is_tracking_number(value: object) -> bool:
    return bool(_TRACKING_RE.match(normalize(value)))


def find_phone(text: str) -> Optional[str]:
    m = re.search(rf"(?<!\d)(?:\+?86)?({PHONE})(?!\d)", normalize(text))
    return m.group(1) if m else None


def find_digits(text: str, length: int) -> Optional[str]:
    """The first run of exactly `length` digits in free text (e.g. a phone's last 4)."""
    m = re.search(rf"(?<!\d)(\d{{{length}}})(?!\d)", str(text or "").translate(_FULLWIDTH))
    return m.group(1) if m else None


def find_order_reference(text: str) -> Optional[str]:
    """An order number or tracking number inside free text ("单号是 SF1234…的那个")."""
    cleaned = str(text or "").translate(_FULLWIDTH).upper()
    prefixed = "|".join(f"{p}\\d{{{n}}}" for p, n in TRACKING_PREFIXED.items())
    m = re.search(rf"(?<![0-9A-Z])({prefixed})(?!\d)", cleaned)
    if m:
        return m.group(1)
    joined = re.sub(r"(?<=\d)[\s\-](?=\d)", "", cleaned)
    for m in re.finditer(r"(?<!\d)(\d{10,20})(?!\d)", joined):
        # a phone ("手机13800138000，订单…") is not an order reference (as in the spaCy entity ruler)
        if not re.match(rf"^(?:86)?{PHONE}$", m.group(1)):
            return m.group(1)
    return None
