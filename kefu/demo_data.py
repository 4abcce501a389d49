"""A realistic, deterministic Chinese demo data set for the business database.

``seed(session)`` fills an *empty* database with ~65 customers, ~46 products,
~270 orders over the last 90 days (every order status), shipments with
tracking events, after-sales requests, refunds, invoices and tickets.  The
random part depends only on ``rng_seed`` (and ``now`` for the timestamps), so
the same arguments always give the same rows.

On top of that comes a fixed *showcase* set (``SHOWCASE_CUSTOMERS``,
``SHOWCASE_ORDERS``, ``SHOWCASE_TICKETS``) that conversation tests and the docs
rely on: 张伟 (13800138000) with a delivered phone, an unshipped down jacket, an
air conditioner on its way and an earphone refund in progress; 李娜 with a parcel
stuck at the carrier; 王芳 with a cancelled and refunded order.  Its values do
not depend on ``rng_seed``.

All timestamps are naive UTC datetimes relative to ``now``.  ``seed`` flushes
but does not commit: use it inside :func:`kefu.db.session_scope`.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kefu import id_formats
from kefu.importer import CUSTOMER_LEVELS, SLA_HOURS, SQLITE_DECIMAL_WARNING, TICKET_CATEGORIES
from kefu.models import (
    ORDER_STATUSES,
    AfterSale,
    Customer,
    Invoice,
    Order,
    OrderItem,
    Product,
    Refund,
    Shipment,
    Ticket,
    TicketEvent,
    TrackingEvent,
)

CENT = Decimal("0.01")
PAYMENT_METHODS = ("微信支付", "支付宝", "银行卡", "白条")
CARRIERS = ("顺丰速运", "京东物流", "圆通速递", "中通快递", "韵达快递")
AGENTS = ("客服-小王", "客服-小李", "客服-小陈", "客服-阿杰", "客服-小美")
TICKET_CHANNELS = ("web", "app", "wechat", "telegram", "phone")

# ---------------------------------------------------------------------------------------------
# product catalogue: sku, name, brand, category, price, return_days, warranty_months, needs_installation
PRODUCTS: Tuple[Tuple[str, str, str, str, str, int, int, int], ...] = (
    # 手机数码
    ("HW-MATE60PRO-512", "华为 Mate 60 Pro 手机 12GB+512GB 雅川青", "华为", "手机数码", "6999.00", 7, 12, 0),
    ("HW-PURA70-256", "华为 Pura 70 手机 12GB+256GB 冰晶蓝", "华为", "手机数码", "5499.00", 7, 12, 0),
    ("HW-WATCH4-46", "华为 WATCH 4 智能手表 46mm 曜石黑", "华为", "手机数码", "2699.00", 7, 12, 0),
    ("MI-14-512", "小米 14 手机 16GB+512GB 黑色", "小米", "手机数码", "4599.00", 7, 12, 0),
    ("MI-BUDS4PRO", "小米 Xiaomi Buds 4 Pro 蓝牙耳机 主动降噪", "小米", "手机数码", "699.00", 7, 12, 0),
    ("MI-BAND8", "小米手环8 NFC版 运动健康监测", "小米", "手机数码", "299.00", 7, 12, 0),
    ("MI-PB20K", "小米 移动电源 20000mAh 22.5W 快充版", "小米", "手机数码", "129.00", 7, 12, 0),
    ("RM-K70-256", "小米 Redmi K70 手机 12GB+256GB 晴雪", "小米", "手机数码", "2499.00", 7, 12, 0),
    ("APL-IP15-256", "苹果 iPhone 15 256GB 粉色", "苹果", "手机数码", "6999.00", 7, 12, 0),
    ("APL-AIRPODSPRO2", "苹果 AirPods Pro（第二代）USB-C 蓝牙耳机", "苹果", "手机数码", "1899.00", 7, 12, 0),
    ("APL-IPADAIR-128", "苹果 iPad Air 11英寸 M2 128GB WLAN版", "苹果", "手机数码", "4799.00", 7, 12, 0),
    # 家用电器
    ("MD-KFR35-AC", "美的 酷省电 1.5匹 新一级能效 变频冷暖 壁挂式空调 KFR-35GW", "美的", "家用电器", "2799.00", 7, 72, 1),
    ("GL-KFR35-AC", "格力 云佳 1.5匹 新一级能效 变频冷暖 壁挂式空调", "格力", "家用电器", "3199.00", 7, 72, 1),
    ("GL-KFR72-AC", "格力 云锦Ⅱ 3匹 新一级能效 立柜式空调", "格力", "家用电器", "7999.00", 7, 72, 1),
    ("HE-XQG100-WM", "海尔 10公斤 直驱变频 滚筒洗衣机 EG100MATE28S", "海尔", "家用电器", "2199.00", 7, 36, 1),
    ("MD-MG100-WM", "美的 10公斤 变频 滚筒洗衣机 MG100V11F", "美的", "家用电器", "1699.00", 7, 36, 1),
    ("HE-BCD510-FR", "海尔 510升 对开门 一级能效 风冷无霜冰箱", "海尔", "家用电器", "3299.00", 7, 36, 1),
    ("MD-BCD430-FR", "美的 430升 十字四门 变频冰箱", "美的", "家用电器", "2999.00", 7, 36, 1),
    ("HE-ES60H-WH", "海尔 60升 电热水器 一级能效 3300W速热", "海尔", "家用电器", "1299.00", 7, 36, 1),
    ("MD-JSQ30-WH", "美的 16升 燃气热水器 零冷水 恒温", "美的", "家用电器", "1899.00", 7, 36, 1),
    ("MI-ROBOT-X10", "小米 米家扫拖机器人 X10+ 自动集尘", "小米", "家用电器", "2999.00", 7, 12, 0),
    ("MD-RC40-MB", "美的 电饭煲 4L IH电磁加热 MB-HS4077", "美的", "家用电器", "399.00", 7, 12, 0),
    ("DS-V12-VAC", "戴森 V12 Detect Slim 无绳吸尘器", "戴森", "家用电器", "3999.00", 7, 24, 0),
    # 服饰鞋包
    ("BSD-DOWN-M-175", "波司登 男士 连帽羽绒服 鹅绒 黑色 175/92A", "波司登", "服饰鞋包", "1599.00", 7, 0, 0),
    ("BSD-DOWN-W-165", "波司登 女士 中长款羽绒服 鹅绒 米白 165/88A", "波司登", "服饰鞋包", "1899.00", 7, 0, 0),
    ("NK-AF1-42", "耐克 Air Force 1 '07 男子运动鞋 白色 42码", "耐克", "服饰鞋包", "799.00", 7, 0, 0),
    ("NK-HOODIE-L", "耐克 男子加绒连帽卫衣 黑色 L", "耐克", "服饰鞋包", "429.00", 7, 0, 0),
    ("AT-KT9-43", "安踏 KT9 篮球鞋 男款 43码", "安踏", "服饰鞋包", "899.00", 7, 0, 0),
    ("AT-C202-41", "安踏 C202 5代 竞速跑鞋 41码", "安踏", "服饰鞋包", "499.00", 7, 0, 0),
    ("LN-BAG-01", "李宁 双肩背包 大容量 运动休闲 黑色", "李宁", "服饰鞋包", "199.00", 7, 0, 0),
    # 母婴
    ("FH-XFF3-700", "飞鹤 星飞帆 3段 婴幼儿配方奶粉 700g", "飞鹤", "母婴", "298.00", 7, 0, 0),
    ("FH-ZZ1-800", "飞鹤 臻稚有机 1段 婴儿配方奶粉 800g", "飞鹤", "母婴", "428.00", 7, 0, 0),
    ("HQ-DIAPER-L76", "好奇 心钻装 纸尿裤 L码 76片", "好奇", "母婴", "139.00", 7, 0, 0),
    ("HHZ-STROLLER", "好孩子 婴儿推车 可坐可躺 轻便折叠", "好孩子", "母婴", "1299.00", 7, 12, 0),
    # 美妆个护
    ("LC-GENIFIQUE-50", "兰蔻 小黑瓶 精华肌底液 50ml", "兰蔻", "美妆个护", "1080.00", 7, 0, 0),
    ("LC-ABSOLUE-60", "兰蔻 菁纯 臻颜面霜 60ml", "兰蔻", "美妆个护", "1650.00", 7, 0, 0),
    ("EL-ANR-50", "雅诗兰黛 特润修护肌活精华露（小棕瓶）50ml", "雅诗兰黛", "美妆个护", "1050.00", 7, 0, 0),
    ("SK2-FTE-230", "SK-II 护肤精华露（神仙水）230ml", "SK-II", "美妆个护", "1540.00", 7, 0, 0),
    ("PH-S5000-SH", "飞利浦 电动剃须刀 5系 S5266", "飞利浦", "美妆个护", "599.00", 7, 24, 0),
    # 食品生鲜（生鲜 return_days = 0）
    ("SX-CHERRY-2KG", "智利车厘子 JJ级 2kg 礼盒装 顺丰冷链", "京鲜生", "食品生鲜", "269.00", 0, 0, 0),
    ("SX-SALMON-500", "挪威冰鲜三文鱼 中段 500g", "京鲜生", "食品生鲜", "159.00", 0, 0, 0),
    ("SX-STEAK-10", "恒都 澳洲谷饲西冷牛排 10片装 1.3kg", "恒都", "食品生鲜", "199.00", 0, 0, 0),
    ("SX-CRAB-8", "阳澄湖大闸蟹 公4.0两 母3.0两 8只 礼盒", "苏州蟹庄", "食品生鲜", "398.00", 0, 0, 0),
    ("SS-NUTS-750", "三只松鼠 每日坚果 750g/30袋", "三只松鼠", "食品生鲜", "129.00", 7, 0, 0),
    ("YL-MILK-12", "伊利 金典 纯牛奶 250ml×12盒", "伊利", "食品生鲜", "65.00", 7, 0, 0),
    ("SYDT-RICE-10KG", "十月稻田 五常大米 稻花香 10kg", "十月稻田", "食品生鲜", "89.90", 7, 0, 0),
    # 图书
    ("BK-SANTI-3", "三体（全三册）刘慈欣 著", "重庆出版社", "图书", "93.00", 7, 0, 0),
    ("BK-HUOZHE", "活着（余华 著）", "作家出版社", "图书", "35.00", 7, 0, 0),
    ("BK-FLUENTPY2", "流畅的Python（第2版）", "人民邮电出版社", "图书", "149.00", 7, 0, 0),
    ("BK-JINYONG-36", "金庸作品集（全36册）朗声新修版", "广州出版社", "图书", "898.00", 7, 0, 0),
)

# ---------------------------------------------------------------------------------------------
# the showcase set: exact values other code and the conversation tests rely on

SHOWCASE_CUSTOMERS: Dict[str, Dict[str, Any]] = {
    "C0001": {"customer_no": "C0001", "name": "张伟", "phone": "13800138000", "level": "gold", "city": "北京",
              "email": "zhang.wei@example.com", "created_ago": timedelta(days=812)},
    "C0002": {"customer_no": "C0002", "name": "李娜", "phone": "13900139000", "level": "normal", "city": "上海",
              "email": "li.na@example.com", "created_ago": timedelta(days=365)},
    "C0003": {"customer_no": "C0003", "name": "王芳", "phone": "13700137000", "level": "silver", "city": "广州",
              "email": None, "created_ago": timedelta(days=530)},
}

_ZW = {"customer_no": "C0001", "receiver_name": "张伟", "receiver_phone": "13800138000",
       "address": "北京市朝阳区建国路88号"}

# Timestamps are given as "…_ago" offsets before `now`.  An order's shipment, invoices,
# after-sales and refunds are listed with it.
SHOWCASE_ORDERS: Dict[str, Dict[str, Any]] = {
    "202411010001": {
        **_ZW, "order_no": "202411010001", "status": "delivered", "payment_method": "微信支付",
        "items": [{"sku": "HW-MATE60PRO-512", "quantity": 1}],
        "created_ago": timedelta(days=6), "paid_ago": timedelta(days=6) - timedelta(minutes=3),
        "shipped_ago": timedelta(days=5), "delivered_ago": timedelta(days=2),
        "shipment": {"carrier": "顺丰速运", "tracking_no": "SF100000000001", "status": "delivered",
                     "origin": "深圳", "plan": "delivered", "courier": "王师傅", "courier_phone": "13511112222"},
        "invoices": [{"request_no": "FP202411010001", "kind": "electronic", "title": "个人", "tax_id": None,
                      "status": "issued", "invoice_no": "24442000000012345678",
                      "download_url": "https://fapiao.example.com/24442000000012345678.pdf",
                      "requested_ago": timedelta(days=1, hours=20), "issued_ago": timedelta(days=1, hours=19)}],
        "after_sales": [],
        "refunds": [],
    },
    "202411150002": {
        **_ZW, "order_no": "202411150002", "status": "paid", "payment_method": "支付宝",
        "items": [{"sku": "BSD-DOWN-M-175", "quantity": 1}],
        "created_ago": timedelta(days=1), "paid_ago": timedelta(days=1) - timedelta(minutes=2),
        "shipment": None, "invoices": [], "after_sales": [], "refunds": [],
    },
    "202411100003": {
        **_ZW, "order_no": "202411100003", "status": "shipped", "payment_method": "白条",
        "delivery_note": "送货前请电话联系，需要预约安装",
        "items": [{"sku": "MD-KFR35-AC", "quantity": 1}],
        "created_ago": timedelta(days=3), "paid_ago": timedelta(days=3) - timedelta(minutes=5),
        "shipped_ago": timedelta(days=2),
        "shipment": {"carrier": "京东物流", "tracking_no": "JD0000000000003", "status": "in_transit",
                     "origin": "武汉", "plan": "in_transit", "events": 4, "estimated_delivery_in_days": 1},
        "invoices": [], "after_sales": [], "refunds": [],
    },
    "202410200004": {
        **_ZW, "order_no": "202410200004", "status": "completed", "payment_method": "微信支付",
        "items": [{"sku": "MI-BUDS4PRO", "quantity": 1}],
        "created_ago": timedelta(days=44), "paid_ago": timedelta(days=44) - timedelta(minutes=4),
        "shipped_ago": timedelta(days=43), "delivered_ago": timedelta(days=40),
        "shipment": {"carrier": "中通快递", "tracking_no": "75100000000004", "status": "delivered",
                     "origin": "广州", "plan": "delivered", "courier": "刘师傅", "courier_phone": "13622223333"},
        "invoices": [],
        "after_sales": [{"rma_no": "RMA2024102000041", "kind": "return", "status": "approved",
                         "reason": "商品质量问题：左耳机偶发断连、降噪失效",
                         "detail": "已超过7天无理由退货期，经检测确认质量问题，协商部分退款 199 元，耳机无需寄回",
                         "created_ago": timedelta(days=3), "updated_ago": timedelta(days=1)}],
        "refunds": [{"refund_no": "TK2024102000041", "rma_no": "RMA2024102000041", "amount": Decimal("199.00"),
                     "status": "processing", "method": "原路退回（微信支付）", "reason": "质量问题协商部分退款",
                     "failure_reason": None, "created_ago": timedelta(days=1), "completed_ago": None}],
    },
    "202411050005": {
        "customer_no": "C0002", "receiver_name": "李娜", "receiver_phone": "13900139000",
        "address": "上海市浦东新区张杨路500号华润时代广场12楼", "order_no": "202411050005", "status": "shipped",
        "payment_method": "支付宝", "items": [{"sku": "LC-GENIFIQUE-50", "quantity": 1}],
        "created_ago": timedelta(days=5), "paid_ago": timedelta(days=5) - timedelta(minutes=1),
        "shipped_ago": timedelta(days=4),
        "shipment": {"carrier": "圆通速递", "tracking_no": "YT0000000000005", "status": "exception",
                     "origin": "广州", "plan": "exception", "exception": "包裹滞留", "events": 5},
        "invoices": [], "after_sales": [], "refunds": [],
    },
    "202411180006": {
        "customer_no": "C0002", "receiver_name": "李娜", "receiver_phone": "13900139000",
        "address": "上海市浦东新区张杨路500号华润时代广场12楼", "order_no": "202411180006",
        "status": "pending_payment", "payment_method": None,
        "items": [{"sku": "FH-XFF3-700", "quantity": 2}],
        "created_ago": timedelta(minutes=20),  # clamped to today (UTC) by seed()
        "shipment": None, "invoices": [], "after_sales": [], "refunds": [],
    },
    "202410010007": {
        "customer_no": "C0003", "receiver_name": "王芳", "receiver_phone": "13700137000",
        "address": "广东省广州市天河区天河路385号太古汇公寓2栋1503室", "order_no": "202410010007",
        "status": "cancelled", "payment_method": "支付宝", "items": [{"sku": "NK-AF1-42", "quantity": 1}],
        "created_ago": timedelta(days=48), "paid_ago": timedelta(days=48) - timedelta(minutes=2),
        "cancelled_ago": timedelta(days=48) - timedelta(minutes=95), "cancel_reason": "拍错了尺码，重新下单",
        "shipment": None, "invoices": [], "after_sales": [],
        "refunds": [{"refund_no": "TK2024100100071", "rma_no": None, "amount": None, "status": "completed",
                     "method": "原路退回（支付宝）", "reason": "订单取消，全额退款", "failure_reason": None,
                     "created_ago": timedelta(days=48) - timedelta(minutes=95),
                     "completed_ago": timedelta(days=48) - timedelta(minutes=215)}],
    },
}

SHOWCASE_TICKETS: Dict[str, Dict[str, Any]] = {
    "GD20241120001": {
        "ticket_no": "GD20241120001", "customer_no": "C0001", "order_no": "202411100003", "category": "物流",
        "priority": "normal", "status": "in_progress", "channel": "web",
        "subject": "美的空调发货两天还没送到，配送太慢，请催促尽快送达并预约安装",
        "description": "客户反映订单 202411100003 的美的空调已发货两天仍在运输中，希望尽快送达并同步预约上门安装。",
        "created_ago": timedelta(hours=20),
        "history": [
            {"ago": timedelta(hours=20), "actor": "system", "action": "created",
             "note": "用户通过在线客服反馈：空调配送太慢，转人工创建工单"},
            {"ago": timedelta(hours=19, minutes=30), "actor": "客服-小王", "action": "assigned",
             "note": "已分配给 客服-小王（订单物流组），将联系京东物流催件"},
        ],
    },
}

SHOWCASE_PHONES = tuple(c["phone"] for c in SHOWCASE_CUSTOMERS.values())
# numbers used by docs/examples; the random data never uses them either
_EXAMPLE_PHONES = ("19100000001", "19100000002")

# ---------------------------------------------------------------------------------------------
# geography: city -> (address prefix, {district: [roads]})
CITIES: Dict[str, Tuple[str, Dict[str, List[str]]]] = {
    "北京": ("北京市", {"朝阳区": ["建国路", "望京街", "朝阳北路"], "海淀区": ["中关村大街", "学院路", "知春路"],
                      "丰台区": ["丰台北路", "南三环西路"]}),
    "上海": ("上海市", {"浦东新区": ["张杨路", "世纪大道", "陆家嘴环路"], "徐汇区": ["漕溪北路", "肇嘉浜路"],
                      "静安区": ["南京西路", "延平路"]}),
    "广州": ("广东省广州市", {"天河区": ["天河路", "体育西路", "华夏路"], "海珠区": ["江南大道中", "新港中路"],
                           "越秀区": ["环市东路", "中山五路"]}),
    "深圳": ("广东省深圳市", {"南山区": ["科技园南路", "深南大道", "后海大道"], "福田区": ["福华一路", "彩田路"],
                           "宝安区": ["新安六路", "宝安大道"]}),
    "杭州": ("浙江省杭州市", {"西湖区": ["文三路", "天目山路"], "滨江区": ["江南大道", "网商路"],
                           "余杭区": ["文一西路", "五常大道"]}),
    "南京": ("江苏省南京市", {"鼓楼区": ["中山北路", "湖南路"], "建邺区": ["江东中路", "应天大街"]}),
    "苏州": ("江苏省苏州市", {"工业园区": ["星湖街", "苏州大道东"], "姑苏区": ["人民路", "干将西路"]}),
    "成都": ("四川省成都市", {"武侯区": ["人民南路四段", "科华北路"], "高新区": ["天府大道中段", "天府三街"],
                           "锦江区": ["春熙路", "东大街"]}),
    "武汉": ("湖北省武汉市", {"洪山区": ["珞喻路", "光谷大道"], "江汉区": ["解放大道", "建设大道"]}),
    "西安": ("陕西省西安市", {"雁塔区": ["小寨东路", "高新路"], "碑林区": ["长安北路", "南大街"]}),
    "重庆": ("重庆市", {"渝北区": ["金开大道", "新牌坊路"], "江北区": ["建新北路", "北城天街"]}),
    "天津": ("天津市", {"南开区": ["鞍山西道", "红旗南路"], "和平区": ["南京路", "滨江道"]}),
    "长沙": ("湖南省长沙市", {"岳麓区": ["麓山南路", "枫林三路"], "天心区": ["芙蓉中路", "书院路"]}),
    "郑州": ("河南省郑州市", {"金水区": ["花园路", "经三路"], "郑东新区": ["商务外环路", "金水东路"]}),
    "青岛": ("山东省青岛市", {"市南区": ["香港中路", "山东路"], "崂山区": ["海尔路", "松岭路"]}),
    "厦门": ("福建省厦门市", {"思明区": ["湖滨南路", "莲前东路"], "湖里区": ["吕岭路", "枋湖路"]}),
}
CITY_WEIGHTS = {"北京": 10, "上海": 10, "广州": 8, "深圳": 8, "杭州": 7, "南京": 5, "苏州": 5, "成都": 6,
                "武汉": 5, "西安": 4, "重庆": 5, "天津": 4, "长沙": 3, "郑州": 3, "青岛": 3, "厦门": 3}
WAREHOUSES = ("广州", "深圳", "杭州", "上海", "北京", "武汉", "成都", "苏州", "天津", "东莞", "嘉兴")
COMPOUNDS = ("阳光花园", "金色家园", "锦绣华庭", "翠湖天地", "万科城", "绿城桂花园", "保利香槟国际", "碧桂园",
             "幸福里小区", "龙湖春江郦城", "融创壹号院", "世茂滨江花园", "华润橡树湾", "中海国际社区")

SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何",
            "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "萧", "田",
            "董", "潘", "袁", "蔡", "蒋", "余", "于", "杜", "叶", "程", "魏", "苏", "吕", "丁", "沈", "任")
GIVEN_NAMES = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
               "超", "秀英", "霞", "平", "刚", "桂英", "晨", "浩然", "子轩", "欣怡", "梓涵", "雨桐", "宇航",
               "思远", "佳琪", "一鸣", "海燕", "建国", "春梅", "志强", "晓东", "婷婷", "文博", "嘉怡", "俊杰",
               "雪", "慧", "鹏", "丹", "宁", "亮", "倩", "博文", "诗涵", "晓明", "丽华", "国强", "红梅")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "138", "139", "150", "151", "152", "155", "156",
                   "158", "159", "166", "176", "177", "180", "181", "182", "185", "186", "187", "188", "189")
COMPANIES = (
    ("杭州云帆网络科技有限公司", "330106"), ("上海启明星信息技术有限公司", "310115"),
    ("北京华夏天成商贸有限公司", "110105"), ("深圳市前海数智科技有限公司", "440305"),
    ("广州市恒信贸易有限公司", "440106"), ("南京蓝鲸软件有限公司", "320106"),
    ("成都天府之星文化传媒有限公司", "510107"), ("武汉光谷智造科技有限公司", "420111"),
    ("苏州博远电子有限公司", "320594"), ("西安秦川医疗器械有限公司", "610113"),
)
DELIVERY_NOTES = ("放快递柜", "工作日白天送货", "送货前请电话联系", "放门卫室", "周末送货", "请勿放驿站")
CANCEL_UNPAID = ("超时未支付，系统自动取消", "不想要了", "商品价格有变动，重新下单")
CANCEL_PAID = ("拍错了，重新下单", "重复下单", "收货地址填写错误", "不想要了", "发货太慢，不想等了")
REFUND_FAILURES = ("原支付账户已注销，退款被退回，请提供新的收款账户", "银行卡已挂失，退款被银行退回",
                   "支付渠道退款超时，请联系客服重新发起")
REFUND_REJECTIONS = ("商品已拆封使用，不符合仅退款条件", "未提供商品问题凭证")


def _price(text: str) -> Decimal:
    return Decimal(text).quantize(CENT)


# ---------------------------------------------------------------------------------------------
# tracking events


@dataclass
class _Route:
    carrier: str
    origin: str
    dest_city: str
    dest_district: str
    courier: str
    courier_phone: str

    def hub(self, city: str) -> str:
        suffix = {"顺丰速运": "中转场", "京东物流": "分拣中心", "韵达快递": "分拨中心"}.get(self.carrier, "转运中心")
        return f"{city}{suffix}"

    @property
    def station(self) -> str:
        district = self.dest_district.removesuffix("区").removesuffix("新")
        suffix = {"顺丰速运": "营业点", "京东物流": "营业部", "圆通速递": "公司", "中通快递": "网点"}.get(
            self.carrier, "服务部")
        return f"{self.dest_city}{district}{suffix}"


# step -> (min, max) minutes after the previous step
_GAPS = {
    "collect": (0, 0), "arrive_origin": (60, 240), "depart_origin": (30, 180), "arrive_dest": (480, 1800),
    "depart_dest": (60, 180), "arrive_station": (120, 360), "out": (30, 120), "delivered": (30, 240),
    "exception": (120, 1200), "rejected": (20, 90), "returned": (1440, 4320),
}


def _plan(rng: random.Random, outcome: str, n_events: Optional[int] = None) -> List[str]:
    full = ["collect", "arrive_origin", "depart_origin", "arrive_dest", "depart_dest", "arrive_station", "out"]
    if outcome == "delivered":
        steps = full + ["delivered"]
        if rng.random() < 0.5:
            steps.remove("depart_dest")  # 7 events
        if rng.random() < 0.25:
            steps.remove("arrive_origin")  # 6 events
        return steps
    if outcome == "in_transit":
        return full[: n_events or rng.randint(3, 5)]
    if outcome == "out_for_delivery":
        steps = list(full)
        steps.remove("depart_dest")
        return steps  # 6 events
    if outcome == "exception":
        return full[: (n_events or rng.randint(3, 5)) - 1] + ["exception"]
    if outcome == "returned":
        steps = list(full)
        steps.remove("depart_dest")
        return steps + ["rejected", "returned"]  # 8 events
    raise ValueError(outcome)


def _gaps(rng: random.Random, steps: Sequence[str]) -> List[int]:
    return [rng.randint(*_GAPS[s]) for s in steps]


def _render(step: str, route: _Route, rng: random.Random, exception: Optional[str]) -> Tuple[str, str]:
    o, d = route.origin, route.dest_city
    if step == "collect":
        return f"{o}市", f"商家已发货，{route.carrier}已揽收"
    if step == "arrive_origin":
        return f"{o}市", f"快件已到达【{route.hub(o)}】"
    if step == "depart_origin":
        return f"{o}市", f"快件已从【{route.hub(o)}】发出，下一站【{route.hub(d)}】"
    if step == "arrive_dest":
        return f"{d}市", f"快件已到达【{route.hub(d)}】"
    if step == "depart_dest":
        return f"{d}市", f"快件已从【{route.hub(d)}】发出，下一站【{route.station}】"
    if step == "arrive_station":
        return f"{d}市", f"快件已到达【{route.station}】，正在安排派送"
    if step == "out":
        return f"{d}市", f"派送中，快递员 {route.courier} 电话 {route.courier_phone}，请保持电话畅通"
    if step == "delivered":
        who = rng.choice(("本人", "本人", "家人", "前台", "门卫"))
        return f"{d}市", f"已签收，签收人：{who}。感谢使用{route.carrier}，期待再次为您服务"
    if step == "exception":
        if exception == "地址不详" or (exception is None and rng.random() < 0.4):
            return f"{d}市", "地址不详：收件地址信息不完整，快递员正在联系收件人确认地址"
        return f"{d}市", f"包裹滞留：因转运量激增，快件在【{route.hub(d)}】滞留，预计延误1-2天，请耐心等待"
    if step == "rejected":
        return f"{d}市", "收件人拒收，快件将退回寄件人"
    if step == "returned":
        return f"{o}市", "退回件已签收，签收人：商家仓库"
    raise ValueError(step)


# ---------------------------------------------------------------------------------------------
# the builder


@dataclass
class _Numberer:
    """Sequential numbers per date prefix, skipping reserved ones (same shape as the services use)."""

    reserved: set = field(default_factory=set)
    counters: Dict[str, int] = field(default_factory=dict)

    def next(self, prefix: str, digits: int) -> str:
        while True:
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            number = f"{prefix}{self.counters[prefix]:0{digits}d}"
            if number not in self.reserved:
                return number


class _Builder:
    def __init__(self, session: Session, now: datetime, rng_seed: int) -> None:
        self.session = session
        self.now = now
        self.rng = random.Random(rng_seed)
        self.show_rng = random.Random(20241101)  # showcase details never depend on rng_seed
        self.products: Dict[str, Product] = {}
        self.customers: List[Customer] = []
        self.random_customers: List[Customer] = []
        self.orders: List[Order] = []
        self.used_phones = set(SHOWCASE_PHONES) | set(_EXAMPLE_PHONES)
        self.used_order_nos = set(SHOWCASE_ORDERS)
        self.used_tracking = {o["shipment"]["tracking_no"] for o in SHOWCASE_ORDERS.values() if o["shipment"]}
        self.used_invoice_nos = {i["invoice_no"] for o in SHOWCASE_ORDERS.values() for i in o["invoices"]}
        self.numbers = _Numberer(reserved={i["request_no"] for o in SHOWCASE_ORDERS.values() for i in o["invoices"]}
                                 | {a["rma_no"] for o in SHOWCASE_ORDERS.values() for a in o["after_sales"]}
                                 | set(SHOWCASE_TICKETS))
        # (order, after_sale or None, Refund kwargs) -- refunds need the after-sale's id
        self.pending_refunds: List[Tuple[Order, Optional[AfterSale], Dict[str, Any]]] = []
        self.after_sales: List[AfterSale] = []
        self.invoices: List[Invoice] = []
        self.tickets: List[Ticket] = []
        self._status_turn: Dict[str, int] = {}
        self._refund_turn = 0
        self._refunded_turn = 0

    # ----- small helpers
    def between(self, start: datetime, end: datetime, rng: Optional[random.Random] = None) -> datetime:
        rng = rng or self.rng
        if end <= start:
            return start
        return start + timedelta(seconds=rng.randint(0, int((end - start).total_seconds())))

    def minutes_ago(self, lo: int, hi: int) -> datetime:
        return self.now - timedelta(minutes=self.rng.randint(lo, hi))

    def phone(self, rng: Optional[random.Random] = None) -> str:
        rng = rng or self.rng
        while True:
            number = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
            if number not in self.used_phones:
                assert id_formats.is_phone(number)
                self.used_phones.add(number)
                return number

    def person_name(self, taken: Optional[set] = None) -> str:
        while True:
            name = self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)
            if taken is None or name not in taken:
                return name

    def address(self, city: str, rng: Optional[random.Random] = None) -> Tuple[str, str]:
        rng = rng or self.rng
        prefix, districts = CITIES[city]
        district = rng.choice(list(districts))
        road = rng.choice(districts[district])
        text = (f"{prefix}{district}{road}{rng.randint(1, 999)}号{rng.choice(COMPOUNDS)}"
                f"{rng.randint(1, 30)}栋{rng.randint(1, 4)}单元{rng.randint(1, 33)}{rng.randint(1, 4):02d}室")
        return text, district

    # ----- catalogue and customers
    def build_products(self) -> None:
        for sku, name, brand, category, price, return_days, warranty, install in PRODUCTS:
            product = Product(sku=sku, name=name, brand=brand, category=category, price=_price(price),
                              return_days=return_days, warranty_months=warranty, needs_installation=install)
            self.products[sku] = product

    def build_customers(self, count: int = 62) -> None:
        for data in SHOWCASE_CUSTOMERS.values():
            customer = Customer(customer_no=data["customer_no"], name=data["name"], phone=data["phone"],
                                email=data["email"], level=data["level"], city=data["city"],
                                created_at=self.now - data["created_ago"])
            self.customers.append(customer)
        taken = {c["name"] for c in SHOWCASE_CUSTOMERS.values()}
        cities = list(CITY_WEIGHTS)
        weights = list(CITY_WEIGHTS.values())
        for index in range(count):
            name = self.person_name(taken)
            taken.add(name)
            email = None
            if self.rng.random() < 0.6:
                email = (f"{self.rng.randint(10_000_000, 3_999_999_999)}@qq.com" if self.rng.random() < 0.5
                         else f"user{4 + index:04d}@example.com")
            customer = Customer(
                customer_no=f"C{4 + index:04d}", name=name, phone=self.phone(), email=email,
                level=self.rng.choices(CUSTOMER_LEVELS, weights=(50, 25, 15, 10))[0],
                city=self.rng.choices(cities, weights=weights)[0],
                created_at=self.now - timedelta(days=self.rng.randint(91, 1500), minutes=self.rng.randint(0, 1439)),
            )
            self.customers.append(customer)
            self.random_customers.append(customer)

    # ----- orders
    def order_no(self, created: datetime) -> str:
        while True:
            number = created.strftime("%Y%m%d") + f"{self.rng.randint(0, 99_999_999):08d}"
            if number not in self.used_order_nos:
                assert id_formats.is_order_id(number)
                self.used_order_nos.add(number)
                return number

    def tracking_no(self, carrier: str) -> str:
        while True:
            if carrier == "顺丰速运":
                number = "SF" + str(self.rng.randint(10**11, 10**12 - 1))
            elif carrier == "京东物流":
                number = "JD" + str(self.rng.randint(10**12, 10**13 - 1))
            elif carrier == "圆通速递":
                number = "YT" + str(self.rng.randint(10**12, 10**13 - 1))
            elif carrier == "中通快递":
                number = "7" + f"{self.rng.randint(0, 10**13 - 1):013d}"  # 14 digits
            else:
                number = "4" + f"{self.rng.randint(0, 10**12 - 1):012d}"  # 13 digits
            if number not in self.used_tracking:
                assert id_formats.is_tracking_number(number)
                self.used_tracking.add(number)
                return number

    def pick_items(self) -> List[Tuple[Product, int, Decimal]]:
        count = self.rng.choices((1, 2, 3), weights=(60, 28, 12))[0]
        products = self.rng.sample(list(self.products.values()), count)
        lines = []
        for product in products:
            quantity = self.rng.choices((1, 2, 3), weights=(70, 20, 10))[0] if product.price < 200 else 1
            price = product.price
            if self.rng.random() < 0.15:
                price = (price * Decimal(self.rng.choice(("0.95", "0.90", "0.88")))).quantize(CENT)
            lines.append((product, quantity, price))
        return lines

    def make_order(self, customer: Customer, order_no: Optional[str], status: str,
                   lines: List[Tuple[Product, int, Decimal]], created: datetime, *,
                   payment_method: Optional[str], receiver: Tuple[str, str], address: str,
                   delivery_note: Optional[str] = None) -> Order:
        order = Order(
            order_no=order_no or self.order_no(created), customer=customer, status=status,
            total_amount=sum((q * p for _, q, p in lines), Decimal("0.00")).quantize(CENT),
            payment_method=payment_method, receiver_name=receiver[0], receiver_phone=receiver[1],
            address=address, delivery_note=delivery_note, created_at=created,
        )
        for product, quantity, price in lines:
            order.items.append(OrderItem(product=product, quantity=quantity, unit_price=price))
        self.orders.append(order)
        return order

    def make_shipment(self, order: Order, carrier: str, tracking_no: str, status: str, steps: List[str],
                      times: List[datetime], route: _Route, rng: random.Random,
                      exception: Optional[str] = None, estimated: Optional[date] = None) -> Shipment:
        shipment = Shipment(carrier=carrier, tracking_no=tracking_no, status=status, shipped_at=times[0],
                            estimated_delivery=estimated
                            or (times[0] + timedelta(days=rng.choice((2, 3, 3, 4)))).date())
        for step, moment in zip(steps, times):
            location, description = _render(step, route, rng, exception)
            shipment.events.append(TrackingEvent(occurred_at=moment, location=location, description=description))
        if "out" in steps:
            shipment.courier_phone = route.courier_phone
        if status == "delivered":
            shipment.delivered_at = times[-1]
        order.shipments.append(shipment)
        return shipment

    def route_for(self, carrier: str, dest_city: str, dest_district: str, rng: random.Random,
                  origin: Optional[str] = None, courier: Optional[str] = None,
                  courier_phone: Optional[str] = None) -> _Route:
        if origin is None:
            origin = rng.choice([w for w in WAREHOUSES if w != dest_city])
        return _Route(carrier, origin, dest_city, dest_district,
                      courier or rng.choice(SURNAMES[:12]) + "师傅", courier_phone or self.phone(rng))

    @staticmethod
    def times_from(start: datetime, gaps: Sequence[int]) -> List[datetime]:
        times, moment = [], start
        for gap in gaps:
            moment = moment + timedelta(minutes=gap)
            times.append(moment)
        return times

    @staticmethod
    def times_between(start: datetime, end: datetime, gaps: Sequence[int]) -> List[datetime]:
        """Spread the steps from `start` to `end` in proportion to their gaps."""
        total = sum(gaps[1:]) or 1
        span = (end - start).total_seconds()
        times, acc = [], 0
        for index, gap in enumerate(gaps):
            acc += gap if index else 0
            times.append(start + timedelta(seconds=round(span * acc / total)))
        times[-1] = end
        return times

    # ----- showcase
    def build_showcase(self) -> None:
        rng = self.show_rng
        customers = {c.customer_no: c for c in self.customers}
        midnight = datetime.combine(self.now.date(), time.min)
        for spec in SHOWCASE_ORDERS.values():
            ago = lambda key: self.now - spec[key] if spec.get(key) is not None else None  # noqa: E731
            created = ago("created_ago")
            if spec["status"] == "pending_payment":
                created = max(created, midnight)
            lines = [(self.products[i["sku"]], i["quantity"], self.products[i["sku"]].price) for i in spec["items"]]
            order = self.make_order(customers[spec["customer_no"]], spec["order_no"], spec["status"], lines, created,
                                    payment_method=spec["payment_method"],
                                    receiver=(spec["receiver_name"], spec["receiver_phone"]),
                                    address=spec["address"], delivery_note=spec.get("delivery_note"))
            order.paid_at = ago("paid_ago")
            order.shipped_at = ago("shipped_ago")
            order.delivered_at = ago("delivered_ago")
            order.cancelled_at = ago("cancelled_ago")
            order.cancel_reason = spec.get("cancel_reason")
            ship = spec["shipment"]
            if ship:
                city = customers[spec["customer_no"]].city
                district = next(d for d in CITIES[city][1] if d in spec["address"])
                route = self.route_for(ship["carrier"], city, district, rng, origin=ship["origin"],
                                       courier=ship.get("courier"), courier_phone=ship.get("courier_phone"))
                steps = _plan(rng, ship["plan"], ship.get("events"))
                gaps = _gaps(rng, steps)
                if order.delivered_at is not None:
                    times = self.times_between(order.shipped_at, order.delivered_at, gaps)
                else:
                    times = self.times_from(order.shipped_at, gaps)
                    assert times[-1] < self.now
                estimated = None
                if "estimated_delivery_in_days" in ship:
                    estimated = self.now.date() + timedelta(days=ship["estimated_delivery_in_days"])
                self.make_shipment(order, ship["carrier"], ship["tracking_no"], ship["status"], steps, times, route,
                                   rng, exception=ship.get("exception"), estimated=estimated)
            for inv in spec["invoices"]:
                invoice = Invoice(request_no=inv["request_no"], invoice_no=inv["invoice_no"], kind=inv["kind"],
                                  title=inv["title"], tax_id=inv["tax_id"], amount=order.total_amount,
                                  status=inv["status"], download_url=inv["download_url"],
                                  requested_at=self.now - inv["requested_ago"],
                                  issued_at=self.now - inv["issued_ago"])
                order.invoices.append(invoice)
            after_sales = {}
            for a in spec["after_sales"]:
                after_sale = AfterSale(rma_no=a["rma_no"], kind=a["kind"], status=a["status"], reason=a["reason"],
                                       detail=a["detail"], created_at=self.now - a["created_ago"],
                                       updated_at=self.now - a["updated_ago"])
                order.after_sales.append(after_sale)
                after_sales[a["rma_no"]] = after_sale
            for r in spec["refunds"]:
                self.pending_refunds.append((order, after_sales.get(r["rma_no"]), dict(
                    refund_no=r["refund_no"], amount=r["amount"] if r["amount"] is not None else order.total_amount,
                    status=r["status"], method=r["method"], reason=r["reason"], failure_reason=r["failure_reason"],
                    created_at=self.now - r["created_ago"],
                    completed_at=self.now - r["completed_ago"] if r["completed_ago"] is not None else None)))
        orders = {o.order_no: o for o in self.orders}
        for spec in SHOWCASE_TICKETS.values():
            created = self.now - spec["created_ago"]
            ticket = Ticket(ticket_no=spec["ticket_no"], customer=customers[spec["customer_no"]],
                            order=orders.get(spec["order_no"]), category=spec["category"], priority=spec["priority"],
                            status=spec["status"], subject=spec["subject"], description=spec["description"],
                            channel=spec["channel"], created_at=created,
                            updated_at=self.now - spec["history"][-1]["ago"],
                            sla_due_at=created + timedelta(hours=SLA_HOURS[spec["priority"]]))
            for h in spec["history"]:
                ticket.history.append(TicketEvent(at=self.now - h["ago"], actor=h["actor"], action=h["action"],
                                                  note=h["note"]))
            self.tickets.append(ticket)

    # ----- random orders
    def build_random_orders(self, count: int = 260) -> None:
        weights = {"completed": 30, "delivered": 14, "shipped": 14, "paid": 10, "pending_payment": 6,
                   "cancelled": 14, "refunded": 12}
        statuses = list(ORDER_STATUSES) + self.rng.choices(list(weights), weights=list(weights.values()),
                                                            k=count - len(ORDER_STATUSES))
        customer_weights = [self.rng.choice((1, 1, 2, 3, 5)) for _ in self.random_customers]
        for status in statuses:
            customer = self.rng.choices(self.random_customers, weights=customer_weights)[0]
            self.random_order(customer, status)

    def random_order(self, customer: Customer, status: str) -> Order:
        rng = self.rng
        lines = self.pick_items()
        payment = rng.choices(PAYMENT_METHODS, weights=(45, 35, 10, 10))[0]
        if rng.random() < 0.8:
            receiver = (customer.name, customer.phone)
        else:
            receiver = (self.person_name(), self.phone())
        city = customer.city if rng.random() < 0.85 else rng.choice(list(CITIES))
        address, district = self.address(city)
        note = rng.choice(DELIVERY_NOTES) if rng.random() < 0.25 else None
        carrier = rng.choices(CARRIERS, weights=(25, 25, 17, 17, 16))[0]

        paid = shipped = delivered = cancelled = None
        steps: List[str] = []
        times: List[datetime] = []
        ship_status = None
        flow = None
        if status == "pending_payment":
            created = self.minutes_ago(5, 23 * 60)
            payment = None
        elif status == "paid":
            paid = self.minutes_ago(10, 60 * 60)
            created = paid - timedelta(minutes=rng.randint(1, 30))
        elif status == "shipped":
            ship_status = rng.choices(("in_transit", "out_for_delivery", "exception"), weights=(55, 25, 20))[0]
            steps = _plan(rng, ship_status)
            gaps = _gaps(rng, steps)
            last = self.minutes_ago(10, 8 * 60)
            times = self.times_from(last - timedelta(minutes=sum(gaps)), gaps)
        elif status in ("delivered", "completed"):
            ship_status = "delivered"
            if status == "delivered":
                delivered = self.minutes_ago(2 * 60, 10 * 24 * 60)
            else:
                delivered = self.minutes_ago(4 * 24 * 60, 85 * 24 * 60)
            steps = _plan(rng, "delivered")
            gaps = _gaps(rng, steps)
            times = self.times_from(delivered - timedelta(minutes=sum(gaps)), gaps)
        elif status == "cancelled":
            created = self.minutes_ago(2 * 24 * 60, 89 * 24 * 60)
            if rng.random() < 0.5:
                payment = None
                reason = rng.choice(CANCEL_UNPAID)
                cancelled = created + (timedelta(minutes=30) if reason.startswith("超时") else
                                       timedelta(minutes=rng.randint(3, 600)))
            else:
                paid = created + timedelta(minutes=rng.randint(1, 20))
                cancelled = paid + timedelta(minutes=rng.randint(10, 20 * 60))
                reason = rng.choice(CANCEL_PAID)
        elif status == "refunded":
            self._refunded_turn += 1
            flow = "rejected" if self._refunded_turn % 7 == 1 else "return"  # rejected on delivery, parcel returned
            if flow == "return":
                ship_status = "delivered"
                delivered = self.minutes_ago(15 * 24 * 60, 85 * 24 * 60)
                steps = _plan(rng, "delivered")
                gaps = _gaps(rng, steps)
                times = self.times_from(delivered - timedelta(minutes=sum(gaps)), gaps)
            else:
                ship_status = "returned"
                steps = _plan(rng, "returned")
                gaps = _gaps(rng, steps)
                last = self.minutes_ago(3 * 24 * 60, 80 * 24 * 60)
                times = self.times_from(last - timedelta(minutes=sum(gaps)), gaps)
        else:  # pragma: no cover
            raise ValueError(status)

        if times:
            shipped = times[0]
            paid = shipped - timedelta(minutes=rng.randint(60, 36 * 60))
            created = paid - timedelta(minutes=rng.randint(1, 30))

        order = self.make_order(customer, None, status, lines, created, payment_method=payment, receiver=receiver,
                                address=address, delivery_note=note)
        order.paid_at, order.shipped_at, order.delivered_at, order.cancelled_at = paid, shipped, delivered, cancelled
        if status == "cancelled":
            order.cancel_reason = reason
            if paid is not None:
                self.pending_refunds.append((order, None, dict(
                    amount=order.total_amount, status="completed", method=f"原路退回（{payment}）",
                    reason="订单取消，全额退款", created_at=cancelled,
                    completed_at=cancelled + timedelta(minutes=rng.randint(5, 24 * 60)))))
        if times:
            route = self.route_for(carrier, city, district, rng)
            exception = None
            self.make_shipment(order, carrier, self.tracking_no(carrier), ship_status, steps, times, route, rng,
                               exception=exception)
        if status == "refunded":
            self.refund_whole_order(order, flow, times[-1])
        return order

    # ----- after-sales, refunds, invoices, tickets
    def refund_whole_order(self, order: Order, flow: str, last_event: datetime) -> None:
        rng = self.rng
        method = f"原路退回（{order.payment_method}）"
        if flow == "rejected":
            created = last_event + timedelta(minutes=rng.randint(30, 600))
            self.pending_refunds.append((order, None, dict(
                amount=order.total_amount, status="completed", method=method, reason="拒收退回，全额退款",
                created_at=created, completed_at=created + timedelta(minutes=rng.randint(30, 48 * 60)))))
            return
        fresh = any(i.product.return_days == 0 for i in order.items)
        reason = ("收到商品腐烂变质" if fresh else
                  rng.choice(("七天无理由退货", "商品质量问题", "与商品描述不符", "收到商品破损", "尺码/型号不合适")))
        created = order.delivered_at + timedelta(minutes=rng.randint(12 * 60, 5 * 24 * 60))
        received = created + timedelta(minutes=rng.randint(2 * 24 * 60, 6 * 24 * 60))
        refund_done = received + timedelta(minutes=rng.randint(60, 48 * 60))
        after_sale = AfterSale(kind="return", status="completed", reason=reason,
                               detail="退货商品已入库验收，全额退款", created_at=created, updated_at=refund_done)
        order.after_sales.append(after_sale)
        self.after_sales.append(after_sale)
        self.pending_refunds.append((order, after_sale, dict(
            amount=order.total_amount, status="completed", method=method, reason=f"退货退款：{reason}",
            created_at=received, completed_at=refund_done)))

    def build_after_sales(self, count: int = 32) -> None:
        rng, now = self.rng, self.now
        candidates = [o for o in self.orders
                      if o.status in ("delivered", "completed") and o.order_no not in SHOWCASE_ORDERS]
        for order in rng.sample(candidates, min(count, len(candidates))):
            delivered = order.delivered_at
            kinds = []
            returnable = all(i.product.return_days > 0 for i in order.items)
            if returnable and now < delivered + timedelta(days=min(i.product.return_days for i in order.items)):
                kinds += ["return", "return"]
            if now < delivered + timedelta(days=15):
                kinds.append("exchange")
            if any(i.product.category in ("手机数码", "家用电器") and i.product.warranty_months for i in order.items):
                kinds += ["repair", "repair"]
            if not kinds:
                continue
            kind = rng.choice(kinds)
            if kind == "return":
                window_end = min(now, delivered + timedelta(days=min(i.product.return_days for i in order.items)))
                statuses, reasons = ("submitted", "approved", "in_progress", "rejected", "cancelled"), (
                    "七天无理由退货", "尺码不合适", "颜色与图片不符", "买多了", "商品质量问题")
            elif kind == "exchange":
                window_end = min(now, delivered + timedelta(days=15))
                statuses, reasons = ("submitted", "approved", "in_progress", "completed", "rejected"), (
                    "尺码偏小，换大一码", "收到商品有划痕，换新", "颜色发错了")
            else:
                window_end = now
                statuses, reasons = ("submitted", "approved", "in_progress", "completed", "rejected"), (
                    "屏幕出现闪烁", "无法开机", "空调不制冷", "洗衣机脱水时噪音很大", "充电口接触不良", "需要上门安装调试")
            created = self.between(delivered + timedelta(hours=1), window_end)
            # cycle through the statuses so that every one of them occurs, whatever the seed
            self._status_turn[kind] = self._status_turn.get(kind, rng.randrange(len(statuses))) + 1
            status = statuses[self._status_turn[kind] % len(statuses)]
            updated = created if status == "submitted" else self.between(created, min(now, created + timedelta(days=4)))
            line = rng.choice(order.items)
            detail = {"return": f"退回 {line.product.name} ×{line.quantity}",
                      "exchange": f"更换 {line.product.name}",
                      "repair": f"{line.product.name} 保修期内维修"}[kind]
            if status == "rejected":
                detail += "；审核未通过：商品已影响二次销售" if kind != "repair" else "；审核未通过：人为损坏不在保修范围"
            after_sale = AfterSale(kind=kind, status=status, reason=rng.choice(reasons), detail=detail,
                                   created_at=created, updated_at=updated)
            order.after_sales.append(after_sale)
            self.after_sales.append(after_sale)
            if kind == "return" and status in ("approved", "in_progress"):
                self._refund_turn += 1
                failed = self._refund_turn % 3 == 2
                self.pending_refunds.append((order, after_sale, dict(
                    amount=(line.unit_price * line.quantity).quantize(CENT),
                    status="failed" if failed else "processing",
                    method=f"原路退回（{order.payment_method}）", reason=f"退货退款：{after_sale.reason}",
                    failure_reason=rng.choice(REFUND_FAILURES) if failed else None, created_at=updated)))
        # refunds without an after-sale request: 仅退款 for flaws and 价格保护 price differences
        delivered_orders = [o for o in candidates if not o.after_sales]
        statuses = ("rejected", "failed", "processing", "completed", "rejected", "failed")
        for status, order in zip(statuses, rng.sample(delivered_orders, min(len(statuses), len(delivered_orders)))):
            created = self.between(order.delivered_at, min(now, order.delivered_at + timedelta(days=7)))
            line = rng.choice(order.items)
            price_protection = status in ("processing", "completed") and rng.random() < 0.5
            amount = ((line.unit_price * Decimal("0.05")).quantize(CENT) if price_protection
                      else (line.unit_price * line.quantity).quantize(CENT))
            values = dict(amount=amount, status=status, method=f"原路退回（{order.payment_method}）",
                          reason="价格保护：降价补差价" if price_protection else "仅退款：商品有瑕疵",
                          created_at=created)
            if status == "rejected":
                values["failure_reason"] = rng.choice(REFUND_REJECTIONS)
            elif status == "failed":
                values["failure_reason"] = rng.choice(REFUND_FAILURES)
            if status == "completed":
                values["completed_at"] = self.between(created, min(now, created + timedelta(days=2)))
            self.pending_refunds.append((order, None, values))

    def build_invoices(self) -> None:
        rng, now = self.rng, self.now
        old_turn = company_turn = 0
        for order in self.orders:
            if order.order_no in SHOWCASE_ORDERS or order.status not in ("paid", "shipped", "delivered", "completed"):
                continue
            if rng.random() > 0.3:
                continue
            requested = self.between(order.delivered_at or order.paid_at, now)
            if requested < now - timedelta(days=2):
                old_turn += 1
                status = "failed" if old_turn % 7 == 3 else "issued"  # ~15 % fail (e.g. wrong tax id)
            else:
                status = rng.choice(("requested", "issued"))
            company = rng.choice(COMPANIES) if rng.random() < 0.4 else None
            if company:
                company_turn += 1
            kind = "vat_special" if company and company_turn % 5 in (1, 3) else "electronic"
            tax_id = None
            if company:
                # 统一社会信用代码: 91 + region + 10 characters
                tax_id = f"91{company[1]}MA" + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
            invoice = Invoice(kind=kind, title=company[0] if company else "个人", tax_id=tax_id,
                              amount=order.total_amount, status=status, requested_at=requested)
            if status == "issued":
                invoice.issued_at = self.between(requested, min(now, requested + timedelta(hours=24)))
                while True:
                    number = invoice.issued_at.strftime("%y") + f"{rng.randint(0, 10**18 - 1):018d}"
                    if number not in self.used_invoice_nos:
                        self.used_invoice_nos.add(number)
                        break
                invoice.invoice_no = number
                invoice.download_url = f"https://fapiao.example.com/{number}.pdf"
            order.invoices.append(invoice)
            self.invoices.append(invoice)

    TICKET_SUBJECTS = {
        "物流": ("订单物流{days}天没有更新，请帮忙催件", "快递显示已签收但本人没有收到", "希望修改派送时间，改为周末送货",
               "快递员未经同意把包裹放在驿站"),
        "售后": ("退货申请提交后一直没人审核", "换货商品迟迟没有发出", "商品需要上门维修，请尽快安排", "退货寄回后退款还没到账"),
        "支付": ("付款成功但订单仍显示待付款", "同一订单被重复扣款，请退还多扣金额", "白条分期手续费与页面显示不一致"),
        "账户": ("手机号换了，无法登录账户", "账户被冻结，申请解冻", "会员等级没有按规则升级"),
        "投诉": ("快递员态度恶劣，要求处理", "客服承诺回电但一直没有回电", "商品与宣传严重不符，要求赔偿"),
        "其他": ("咨询企业采购批量报价", "建议增加夜间配送服务", "发票抬头开错，需要重开"),
    }
    TICKET_COMMENTS = {
        "物流": "已联系承运商催件，承运商反馈预计明天送达", "售后": "已催促售后审核组优先处理",
        "支付": "已提交支付渠道核查，1-3个工作日内反馈", "账户": "已核实身份信息，转账户安全组处理",
        "投诉": "已致电客户致歉并记录投诉内容", "其他": "已记录客户需求并转交相关部门",
    }
    TICKET_RESOLUTIONS = {
        "物流": "包裹已送达，客户确认签收", "售后": "售后申请已处理完成，客户无异议",
        "支付": "多扣款项已原路退回，客户确认到账", "账户": "账户问题已解决，客户可正常登录",
        "投诉": "已对相关人员进行处理并给予客户补偿券", "其他": "已答复客户，问题解决",
    }

    def build_tickets(self, count: int = 36) -> None:
        rng, now = self.rng, self.now
        random_orders = [o for o in self.orders if o.order_no not in SHOWCASE_ORDERS]
        pools = {
            "物流": [o for o in random_orders if o.status in ("shipped", "delivered")],
            "售后": [o for o in random_orders if o.after_sales],
            "支付": [o for o in random_orders if o.status in ("paid", "pending_payment", "cancelled")],
            "投诉": [o for o in random_orders if o.status in ("delivered", "completed", "shipped")],
        }
        for index in range(count):
            category = TICKET_CATEGORIES[index % len(TICKET_CATEGORIES)]
            pool = pools.get(category)
            order = rng.choice(pool) if pool else None
            customer = order.customer if order is not None else rng.choice(self.random_customers)
            status = rng.choices(("open", "in_progress", "resolved", "closed"), weights=(25, 30, 25, 20))[0]
            priority = rng.choices(("low", "normal", "high", "urgent"),
                                   weights=(5, 35, 45, 15) if category == "投诉" else (15, 55, 22, 8))[0]
            agent = rng.choice(AGENTS)
            channel = rng.choice(TICKET_CHANNELS)
            actions = {"open": ["created"] + (["comment"] if rng.random() < 0.3 else []),
                       "in_progress": ["created", "assigned"] + (["comment"] if rng.random() < 0.6 else []),
                       "resolved": ["created", "assigned"] + (["comment"] if rng.random() < 0.6 else []) + ["resolved"],
                       "closed": ["created", "assigned"] + (["comment"] if rng.random() < 0.5 else []) + ["resolved"],
                       }[status]
            gaps = [0] + [rng.randint(5, 180) if a == "assigned" else rng.randint(60, 36 * 60) for a in actions[1:]]
            earliest = now - timedelta(days=60)
            if order is not None:
                earliest = max(earliest, order.created_at)
            if status in ("open", "in_progress"):
                earliest = max(earliest, now - timedelta(days=3))
            available = int((now - earliest).total_seconds() // 60) - 10
            if sum(gaps) > available:  # a very recent order: squeeze the history into the time there is
                gaps = [min(gap, max(available, 0) // len(gaps)) for gap in gaps]
            latest = now - timedelta(minutes=sum(gaps) + rng.randint(1, 10))
            created = self.between(earliest, latest)
            subject = rng.choice(self.TICKET_SUBJECTS[category]).format(days=rng.randint(2, 5))
            description = f"客户反馈：{subject}。" + (f"相关订单 {order.order_no}。" if order is not None else "")
            ticket = Ticket(customer=customer, order=order, category=category, priority=priority, status=status,
                            subject=subject, description=description, channel=channel, created_at=created,
                            sla_due_at=created + timedelta(hours=SLA_HOURS[priority]))
            moment = created
            for action, gap in zip(actions, gaps):
                moment = moment + timedelta(minutes=gap)
                actor = {"created": "system" if channel != "phone" else agent, "assigned": "system"}.get(action, agent)
                note = {"created": f"创建工单：{subject}", "assigned": f"已分配给 {agent}",
                        "comment": self.TICKET_COMMENTS[category],
                        "resolved": self.TICKET_RESOLUTIONS[category] + ("，工单关闭" if status == "closed" else "")}[action]
                ticket.history.append(TicketEvent(at=moment, actor=actor, action=action, note=note))
            ticket.updated_at = moment
            self.tickets.append(ticket)

    def number_records(self) -> None:
        """Give after-sales, invoices and tickets service-style numbers, in time order per day."""
        for after_sale in sorted((a for a in self.after_sales if a.rma_no is None), key=lambda a: a.created_at):
            after_sale.rma_no = self.numbers.next("RMA" + after_sale.created_at.strftime("%Y%m%d"), 4)
        for invoice in sorted((i for i in self.invoices if i.request_no is None), key=lambda i: i.requested_at):
            invoice.request_no = self.numbers.next("FP" + invoice.requested_at.strftime("%Y%m%d"), 4)
        for ticket in sorted((t for t in self.tickets if t.ticket_no is None), key=lambda t: t.created_at):
            ticket.ticket_no = self.numbers.next("GD" + ticket.created_at.strftime("%Y%m%d"), 3)

    def write(self) -> None:
        # nothing is in the session before this point, so building the objects never cascaded them
        # into it along backrefs: the insertion order (and so every id) is the one chosen here
        self.number_records()
        self.session.add_all(self.products.values())
        self.session.add_all(self.customers)
        self.session.flush()
        for order in sorted(self.orders, key=lambda o: o.created_at):
            self.session.add(order)
        self.session.flush()
        refund_counter: Dict[str, int] = {}
        for order, after_sale, values in self.pending_refunds:
            if "refund_no" not in values:
                refund_counter[order.order_no] = refund_counter.get(order.order_no, 0) + 1
                values["refund_no"] = f"TK{order.order_no}{refund_counter[order.order_no]}"
            order.refunds.append(Refund(after_sale_id=after_sale.id if after_sale else None, **values))
        for ticket in sorted(self.tickets, key=lambda t: t.created_at):
            self.session.add(ticket)
        self.session.flush()


_TABLES = (("customers", Customer), ("products", Product), ("orders", Order), ("order_items", OrderItem),
           ("shipments", Shipment), ("tracking_events", TrackingEvent), ("after_sales", AfterSale),
           ("refunds", Refund), ("invoices", Invoice), ("tickets", Ticket), ("ticket_events", TicketEvent))


def table_counts(session: Session) -> Dict[str, int]:
    """Rows per business table."""
    return {name: session.execute(select(func.count()).select_from(model)).scalar_one() for name, model in _TABLES}


def seed(session: Session, *, now: datetime | None = None, rng_seed: int = 7) -> Dict[str, int]:
    """Fill an empty database with the demo data set; returns the row count per table.

    Deterministic: the same ``rng_seed`` and ``now`` give the same rows.  The
    showcase records (``SHOWCASE_*``) are always the same.  Flushes, does not
    commit.  Raises ``ValueError`` when the business tables are not empty.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SQLITE_DECIMAL_WARNING)  # amounts are quantised to cents
        return _seed(session, now, rng_seed)


def _seed(session: Session, now: datetime | None, rng_seed: int) -> Dict[str, int]:
    before = table_counts(session)
    if any(before.values()):
        busy = ", ".join(f"{k}={v}" for k, v in before.items() if v)
        raise ValueError(f"seed() needs an empty database, found rows in: {busy}")
    if now is None:
        now = datetime.utcnow().replace(microsecond=0)
    builder = _Builder(session, now, rng_seed)
    builder.build_products()
    builder.build_customers()
    builder.build_showcase()
    builder.build_random_orders()
    builder.build_after_sales()
    builder.build_invoices()
    builder.build_tickets()
    builder.write()
    return table_counts(session)
