"""Chinese labels for status codes and intents (customer-facing text)."""

ORDER_STATUS = {
    "pending_payment": "待付款",
    "paid": "已付款，待发货",
    "shipped": "已发货",
    "delivered": "已签收",
    "completed": "已完成",
    "cancelled": "已取消",
    "refunded": "已退款",
}
SHIPMENT_STATUS = {
    "created": "已揽收",
    "in_transit": "运输中",
    "out_for_delivery": "派送中",
    "delivered": "已签收",
    "exception": "物流异常",
    "returned": "已退回",
}
AFTER_SALE_KIND = {"return": "退货", "exchange": "换货", "repair": "维修"}
AFTER_SALE_STATUS = {
    "submitted": "已提交，待审核",
    "approved": "审核通过",
    "rejected": "未通过",
    "in_progress": "处理中",
    "completed": "已完成",
    "cancelled": "已取消",
}
REFUND_STATUS = {"processing": "退款中", "completed": "已退款", "failed": "退款失败", "rejected": "退款被拒"}
INVOICE_STATUS = {"requested": "开具中", "issued": "已开具", "failed": "开具失败"}
INVOICE_KIND = {"electronic": "电子普通发票", "vat_special": "增值税专用发票"}
TICKET_STATUS = {"open": "待处理", "in_progress": "处理中", "resolved": "已解决", "closed": "已关闭"}
PRIORITY = {"low": "低", "normal": "普通", "high": "高", "urgent": "紧急"}

# short Chinese descriptions of intents, used for clarification buttons
INTENT = {
    "greet": "打个招呼",
    "goodbye": "结束对话",
    "thank": "表示感谢",
    "affirm": "确认",
    "deny": "否定",
    "query_order": "查询订单",
    "track_logistics": "查物流/催发货",
    "cancel_order": "取消订单",
    "change_order_info": "修改地址或收货信息",
    "request_return": "申请退货",
    "request_exchange": "申请换货",
    "query_refund": "查询退款",
    "invoice": "发票问题",
    "payment_issue": "支付问题",
    "ask_promotion": "优惠活动/价保",
    "request_repair": "安装/维修/保修",
    "account_issue": "账户问题",
    "ask_faq": "常见问题",
    "complaint": "投诉",
    "request_human": "转人工客服",
    "query_ticket": "查询工单进度",
    "inform": "提供信息",
    "rate_service": "评价服务",
    "bot_challenge": "问是不是机器人",
    "chitchat": "闲聊",
    "out_of_scope": "其他问题",
    "leave_message": "给客服留言",
}

# why a conversation went to a human (the `reason` of a handoff; see config/routing.yml priorities)
HANDOFF_REASON = {
    "customer_request": "顾客要求人工",
    "complaint": "投诉",
    "account_security": "账户安全",
    "verification_failed": "验证失败",
    "low_confidence": "机器人没听懂",
    "bot_failure": "机器人无法处理",
    "negative_rating": "顾客差评",
    "repeated_negative": "顾客连续否定",
}
