"""kefu.id_formats (shapes of business identifiers) and kefu.privacy (masking of personal data)."""
from __future__ import annotations

import io
import logging

import pytest

from kefu import id_formats
from kefu.privacy import MaskingFilter, mask_phone, mask_text

# ------------------------------------------------------------------ normalize


@pytest.mark.parametrize("raw,expected", [
    ("１３８００１３８０００", "13800138000"),           # full-width digits
    ("138 0013 8000", "13800138000"),
    ("138-0013-8000", "13800138000"),
    ("  2024-1101-0001 ", "202411010001"),
    ("sf 1000-0000-0001", "SF100000000001"),
    ("ＳＦ１００００００００００１", "SF100000000001"),  # full-width letters too
    ("+86 138 0013 8000", "+8613800138000"),
    ("订单#202411010001。", "订单202411010001"),
    (None, ""),
    (202411010001, "202411010001"),
])
def test_normalize(raw, expected):
    assert id_formats.normalize(raw) == expected


# ------------------------------------------------------------------ is_*


@pytest.mark.parametrize("value,expected", [
    ("202411010001", True),
    ("2024-1101-0001", True),
    ("２０２４１１０１０００１", True),
    ("20241201000101", True),            # 14 digits (imported orders)
    ("1" * 20, True),
    ("123456789", False),                # 9 digits
    ("1" * 21, False),
    ("SF100000000001", False),
    ("20241101000A", False),
    ("", False),
])
def test_is_order_id(value, expected):
    assert id_formats.is_order_id(value) is expected


@pytest.mark.parametrize("value,expected", [
    ("13800138000", True),
    ("１３８００１３８０００", True),
    ("138 0013 8000", True),
    ("138-0013-8000", True),
    ("+8613800138000", True),
    ("+86 138 0013 8000", True),
    ("19100000001", True),
    ("12800138000", False),              # no mainland mobile starts with 12
    ("1380013800", False),               # 10 digits
    ("138001380001", False),             # 12 digits
    ("+8512800138000", False),
    ("8000", False),
    ("", False),
])
def test_is_phone(value, expected):
    assert id_formats.is_phone(value) is expected


@pytest.mark.parametrize("value,expected", [
    ("8000", True), ("８０００", True), (" 0001 ", True), ("800", False), ("80000", False), ("80a0", False),
])
def test_is_phone_last4(value, expected):
    assert id_formats.is_phone_last4(value) is expected


@pytest.mark.parametrize("value,expected", [
    ("SF100000000001", True),
    ("sf100000000001", True),            # case-insensitive
    ("SF-1000-0000-0001", True),
    ("JD0000000000003", True),
    ("yt0000000000005", True),
    ("75100000000004", True),            # 14 plain digits (中通)
    ("751000000000", True),              # 12
    ("751000000000000", True),           # 15
    ("75100000000", False),              # 11 plain digits
    ("7510000000000000", False),         # 16
    ("SF10000000001", False),            # SF + 11
    ("SF1000000000011", False),          # SF + 13
    ("JD000000000003", False),           # JD + 12
    ("ZT100000000001", False),           # unknown prefix
    ("", False),
])
def test_is_tracking_number(value, expected):
    assert id_formats.is_tracking_number(value) is expected


# ------------------------------------------------------------------ find_* in free text


@pytest.mark.parametrize("text,expected", [
    ("手机13800138000尾号", "13800138000"),
    ("我的手机是１３８００１３８０００", "13800138000"),
    ("电话 138 0013 8000 谢谢", "13800138000"),
    ("+86 138-0013-8000", "13800138000"),
    ("8613800138000", "13800138000"),
    ("订单202411010001", None),
    ("12800138000", None),
    ("138001380001", None),              # 12 digits: not a phone
    ("尾号8000", None),
    ("", None),
])
def test_find_phone(text, expected):
    assert id_formats.find_phone(text) == expected


@pytest.mark.parametrize("text,length,expected", [
    ("尾号是8000", 4, "8000"),
    ("尾号８０００吧", 4, "8000"),
    ("手机13800138000尾号8000", 4, "8000"),   # the 4-digit run, not a piece of the phone
    ("13800138000", 4, None),
    ("80001", 4, None),
    ("验证码 123456 和 7788", 6, "123456"),
    ("没有数字", 4, None),
    (None, 4, None),
])
def test_find_digits(text, length, expected):
    assert id_formats.find_digits(text, length) == expected


@pytest.mark.parametrize("text,expected", [
    ("单号是 SF100000000001 的那个", "SF100000000001"),
    ("单号是sf100000000001的那个", "SF100000000001"),
    ("京东的 JD0000000000003 到哪了", "JD0000000000003"),
    ("订单2024-1101-0001", "202411010001"),
    ("订单 2024 1101 0001 怎么还没发货", "202411010001"),
    ("订单２０２４１１０１０００１", "202411010001"),
    ("中通 75100000000004", "75100000000004"),
    ("手机13800138000尾号", None),                          # a phone is not an order reference
    ("手机13800138000，订单202411010001", "202411010001"),   # ... so the order number after it is found
    ("+86 138 0013 8000 的订单 202411150002", "202411150002"),
    ("订单12345", None),
    ("我要退货", None),
    ("", None),
])
def test_find_order_reference(text, expected):
    assert id_formats.find_order_reference(text) == expected


def test_identifier_shapes_are_consistent():
    """The generated regexes agree with the documented shapes."""
    assert id_formats.TRACKING_PREFIXED == {"SF": 12, "JD": 13, "YT": 13}
    for prefix, n in id_formats.TRACKING_PREFIXED.items():
        assert id_formats.is_tracking_number(prefix + "1" * n)
        assert not id_formats.is_tracking_number(prefix + "1" * (n + 1))
        assert id_formats.find_order_reference(f"单号 {prefix.lower()}{'2' * n}") == prefix + "2" * n


# ------------------------------------------------------------------ privacy


@pytest.mark.parametrize("phone,expected", [
    ("13800138000", "138****8000"),
    ("19100000002", "191****0002"),
    ("+8613800138000", "+86138****8000"),
    ("8000", "8000"),
    ("", ""),
    (None, ""),
])
def test_mask_phone(phone, expected):
    assert mask_phone(phone) == expected


@pytest.mark.parametrize("text,expected", [
    ("我的手机13800138000，麻烦查一下", "我的手机138****8000，麻烦查一下"),
    ("两个号码13800138000和13900139000", "两个号码138****8000和139****9000"),
    ("身份证号110105194912310021谢谢", "身份证号110105********0021谢谢"),
    ("身份证11010519491231002X，手机13800138000", "身份证110105********002X，手机138****8000"),
    ("id 11010519491231002x", "id 110105********002x"),
    ("电话 138 0013 8000", "电话 138****8000"),
    ("电话+8613800138000", "电话+86138****8000"),
    ("订单202411010001已发货", "订单202411010001已发货"),          # order numbers stay readable
    ("银行卡6222021234567890", "银行卡6222021234567890"),          # 16 digits: not a phone nor an ID
    ("发票24442000000012345678", "发票24442000000012345678"),      # 20 digits
    ("快递SF100000000001", "快递SF100000000001"),
    ("尾号8000", "尾号8000"),
    ("", ""),
])
def test_mask_text(text, expected):
    assert mask_text(text) == expected


def test_mask_text_leaves_no_full_number_behind():
    text = "张伟 13800138000 身份证 11010519491231002X 订单 202411010001"
    masked = mask_text(text)
    assert "13800138000" not in masked and "11010519491231002X" not in masked
    assert "0013" not in masked and "19491231" not in masked
    assert "202411010001" in masked and "张伟" in masked


def _record(msg, args=()) -> logging.LogRecord:
    # built directly, not through logging's record factory (which kefu may have wrapped)
    return logging.LogRecord("kefu.test", logging.INFO, __file__, 1, msg, args, None)


def test_masking_filter_masks_message_and_args():
    record = _record("customer %s verified with id %s for order %s",
                     ("13800138000", "11010519491231002X", "202411010001"))
    assert MaskingFilter().filter(record) is True  # never drops a record
    assert record.getMessage() == "customer 138****8000 verified with id 110105********002X for order 202411010001"
    assert record.args == ()

    clean = _record("order %s shipped", ("202411010001",))
    assert MaskingFilter().filter(clean) is True
    assert (clean.msg, clean.args) == ("order %s shipped", ("202411010001",))  # untouched


def test_masking_filter_on_a_real_handler():
    logger = logging.getLogger("kefu.test.masking")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("用户 %s 说：我的手机是13900139000", "李娜")
        logger.warning("payload=%r", {"phone": "13700137000", "order": "202410010007"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    output = stream.getvalue()
    assert "用户 李娜 说：我的手机是139****9000" in output
    assert "137****7000" in output and "202410010007" in output
    assert "13900139000" not in output and "13700137000" not in output


def test_masking_filter_with_caplog(caplog):
    logger = logging.getLogger("kefu.test.caplog")
    caplog.handler.addFilter(MaskingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="kefu.test.caplog"):
            logger.info("回拨 %s", "13800138000")
    finally:
        caplog.handler.removeFilter(caplog.handler.filters[-1])
    assert [r.getMessage() for r in caplog.records] == ["回拨 138****8000"]
    assert "13800138000" not in caplog.text


def test_tracebacks_in_logs_are_masked_too():
    from kefu.privacy import install_log_masking

    install_log_masking()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("kefu.test.traceback_masking")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError('action server said 500, body={"text": "我的手机13912345678 身份证110101199003071234"}')
        except RuntimeError:
            log.exception("custom action failed for 13912345678")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "Traceback" in text and "RuntimeError" in text
    assert "13912345678" not in text and "110101199003071234" not in text
    assert "139****5678" in text
