/* 客服工作台 — plain JS, no build step. Talks to kefu/desk/app.py (JSON + Server-Sent Events).
   $ and el come from dom.js. */
"use strict";

const PRIORITY = { urgent: "紧急", high: "高", normal: "普通", low: "低" };
let REASON = {};  // handoff reasons' labels, from /api/me (kefu/labels.py)
const STATUS = { waiting: "排队中", assigned: "接待中", closed: "已结束" };

const state = { me: null, csrf: "", queue: null, currentId: null, conv: null, source: null, poll: null,
  statusSeq: 0, statusPending: false };  // the agent's own online switch: changes made, one in flight

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    options.headers["X-CSRF-Token"] = state.csrf;
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("网络错误，无法连接工作台服务");
  }
  let data = {};
  try { data = await response.json(); } catch (e) { /* empty body */ }
  if (response.status === 401 && path !== "/api/login") { showLogin(); }
  if (!response.ok) {
    const error = new Error(data.error || `请求失败 (${response.status})`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function fmtDuration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return `${seconds}秒`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}分${seconds % 60}秒`;
  return `${Math.floor(m / 60)}小时${m % 60}分`;
}
const since = (iso) => (iso ? (Date.now() - Date.parse(iso)) / 1000 : 0);
function fmtTime(value) {
  if (value === null || value === undefined) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return isNaN(date) ? "" : date.toLocaleString("zh-CN", { hour12: false });
}
const badge = (priority) => el("span", { class: `badge ${priority}` }, PRIORITY[priority] || priority);

/* ---------------------------------------------------------------- login / session */

function showLogin() {
  if (state.source) { state.source.close(); state.source = null; }
  clearInterval(state.poll);
  state.me = null; state.currentId = null;
  $("desk-view").hidden = true;
  $("login-view").hidden = false;
  $("login-id").focus();
}

function showDesk(me) {
  state.me = me; state.csrf = me.csrf;
  REASON = (me.labels && me.labels.reason) || {};
  $("login-view").hidden = true;
  $("desk-view").hidden = false;
  $("me-name").textContent = `${me.name || me.agent}（${me.agent}${me.role === "supervisor" ? " · 主管" : ""}）`;
  $("supervisor-box").hidden = me.role !== "supervisor";
  $("dashboard-link").hidden = me.role !== "supervisor";
  setOnline(!!me.online);
  connectEvents();
  const seq = state.statusSeq;
  api("GET", "/api/queue").then((queue) => renderQueue(queue, seq)).catch(() => {});
  loadOverdue();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const data = await api("POST", "/api/login", { agent_id: $("login-id").value.trim(), password: $("login-pw").value });
    $("login-pw").value = "";
    state.csrf = data.csrf;
    const me = await api("GET", "/api/me");
    // sent here from the dashboard (/?next=/dashboard): a supervisor goes back to it
    if (me.role === "supervisor" && new URLSearchParams(location.search).get("next") === "/dashboard") {
      location.href = "/dashboard";
      return;
    }
    showDesk(me);
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "工号或密码错误" : error.message;
  }
});

$("logout-btn").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (e) { /* already gone */ }
  showLogin();
});

function setOnline(online) {
  $("online-toggle").checked = online;
  $("online-label").textContent = online ? "在线（接收新会话）" : "离线";
  $("online-label").className = online ? "ok" : "muted";
}

$("online-toggle").addEventListener("change", async (event) => {
  const wanted = event.target.checked;
  state.statusSeq += 1;
  state.statusPending = true;
  try {
    await api("POST", "/api/status", { online: wanted });
    setOnline(wanted);
  } catch (error) {
    setOnline(!wanted);
    alert(error.message);
  } finally {
    state.statusPending = false;
  }
});

/* ---------------------------------------------------------------- live queue */

function connectEvents() {
  if (state.source) state.source.close();
  const source = new EventSource("/api/events");
  state.source = source;
  source.addEventListener("queue", (event) => {
    $("conn-state").textContent = "";
    try { renderQueue(JSON.parse(event.data)); } catch (e) { console.error(e); }
  });
  source.addEventListener("logout", () => { source.close(); showLogin(); });
  source.onerror = () => {
    $("conn-state").textContent = "连接中断，正在重连…";
    if (source.readyState === EventSource.CLOSED) {
      api("GET", "/api/me").then(() => setTimeout(connectEvents, 3000)).catch(() => {});
    }
  };
}

function chatItem(chat, opts) {
  const li = el("li", { class: chat.handoff_id === state.currentId ? "active" : "", "data-id": chat.handoff_id,
                        onclick: () => openConversation(chat.handoff_id) },
    el("div", { class: "row" },
      el("span", {}, badge(chat.priority), " ", chat.conversation_id.slice(0, 18)),
      el("span", { class: "muted small", "data-since": opts.sinceField ? chat[opts.sinceField] : chat.created_at },
         fmtDuration(opts.sinceField ? since(chat[opts.sinceField]) : since(chat.created_at)))),
    el("div", { class: "preview" },
      `${chat.skill_group} · ${REASON[chat.reason] || chat.reason}`,
      opts.agent && chat.assigned_agent ? ` · ${chat.assigned_agent}` : "",
      chat.expected_wait_minutes !== undefined && chat.expected_wait_minutes !== null
        ? ` · 预计 ${Math.round(chat.expected_wait_minutes)} 分钟` : ""),
    chat.latest_text ? el("div", { class: "preview" }, chat.latest_text) : null);
  return li;
}

// `seq`: the online-switch change count when the queue was requested; a queue read before the agent's latest
// change (or while it is in flight) does not flip the switch back
function renderQueue(queue, seq = state.statusSeq) {
  state.queue = queue;
  const fill = (id, items, opts) => {
    const list = $(id);
    list.replaceChildren(...items.map((chat) => chatItem(chat, opts)));
    if (!items.length) list.append(el("li", { class: "muted small" }, "暂无"));
  };
  fill("mine-list", queue.mine, { sinceField: "assigned_at" });
  fill("waiting-list", queue.waiting, {});
  $("mine-count").textContent = queue.mine.length;
  $("waiting-count").textContent = queue.waiting.length;
  if (!state.statusPending && seq === state.statusSeq) setOnline(queue.online);
  if (queue.assigned) {
    fill("assigned-list", queue.assigned, { sinceField: "assigned_at", agent: true });
    $("assigned-count").textContent = queue.assigned.length;
  }
  if (state.me && state.me.role === "supervisor" && queue.agents) {
    $("agents-table").tBodies[0].replaceChildren(...queue.agents.map((a) => el("tr", {},
      el("td", {}, `${a.name} (${a.agent_id})`),
      el("td", { class: a.online ? "ok" : "muted" }, a.online ? "在线" : "离线"),
      el("td", {}, `${a.active_chats}/${a.max_concurrent}`))));
  }
  const agentSelect = $("transfer-agent");
  const keep = agentSelect.value;
  agentSelect.replaceChildren(el("option", { value: "" }, "—"),
    ...(queue.agents || []).filter((a) => a.online && a.agent_id !== state.me.agent)
      .map((a) => el("option", { value: a.agent_id }, `${a.name} (${a.agent_id})`)));
  agentSelect.value = keep;
  const groupSelect = $("transfer-group");
  if (groupSelect.options.length <= 1) {
    for (const group of queue.skill_groups || []) groupSelect.append(el("option", { value: group }, group));
  }
}

setInterval(() => {  // waiting times tick locally; the server only pushes real changes
  document.querySelectorAll("[data-since]").forEach((node) => {
    node.textContent = fmtDuration(since(node.getAttribute("data-since")));
  });
}, 1000);

/* ---------------------------------------------------------------- conversation */

async function openConversation(id, keepReply) {
  const switching = state.currentId !== id;
  state.currentId = id;
  document.querySelectorAll(".chat-list li").forEach((li) => li.classList.toggle("active", li.dataset.id == id));
  let data;
  try {
    data = await api("GET", `/api/conversations/${id}`);
  } catch (error) {
    if (switching) { $("conv").hidden = true; $("empty-hint").hidden = false; $("empty-hint").textContent = error.message; }
    return;
  }
  if (state.currentId !== id) return;
  state.conv = data;
  renderConversation(data, switching && !keepReply);
  clearInterval(state.poll);
  // customer messages reach the open conversation within about a second
  state.poll = setInterval(() => { if (state.currentId === id) openConversation(id, true); }, 1000);
}

function renderConversation(data, reset) {
  const h = data.handoff;
  $("empty-hint").hidden = true;
  $("conv").hidden = false;
  $("conv-title").textContent = `会话 #${h.handoff_id} · ${h.conversation_id}`;
  const pri = $("conv-priority");
  pri.className = `badge ${h.priority}`; pri.textContent = PRIORITY[h.priority] || h.priority;
  $("conv-group").textContent = h.skill_group;
  $("conv-status").textContent = STATUS[h.status] || h.status;
  $("conv-meta").textContent = [
    `原因：${REASON[h.reason] || h.reason}`, `渠道：${h.channel || "未知"}`,
    `转人工：${fmtTime(h.created_at)}`, h.assigned_at ? `接入：${fmtTime(h.assigned_at)}（${h.assigned_agent}）` : "",
    data.rasa_live ? "" : "（未连接 Rasa，显示转人工时的记录）",
  ].filter(Boolean).join("　");

  const box = $("transcript");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...data.transcript.map((m) => {
    const who = m.type === "user" ? `顾客${m.channel ? `（${m.channel}）` : ""}` : (m.agent ? `客服 ${m.agent}` : "机器人");
    const node = el("div", { class: `msg ${m.type}${m.agent ? " agent" : ""}` },
      el("div", { class: "bubble" }, m.text, m.buttons && m.buttons.length ? `\n[${m.buttons.join(" | ")}]` : ""),
      el("div", { class: "meta" }, `${who} · ${fmtTime(m.timestamp)}`));
    if (m.type === "user" && m.intent_ranking && m.intent_ranking.length) {
      node.append(el("div", { class: "intents" }, "意图：",
        m.intent_ranking.slice(0, 3).map((r) => el("span", {}, `${r.name} ${(r.confidence * 100).toFixed(0)}%`))));
    }
    return node;
  }));
  if (reset || atBottom) box.scrollTop = box.scrollHeight;

  $("suggestions").replaceChildren(...(data.suggestions || []).map((s) =>
    el("button", { type: "button", title: s.text, onclick: () => { $("reply-text").value = s.text; $("reply-text").focus(); } },
       `💡 ${s.title}`)));

  const c = data.customer;
  $("profile").replaceChildren(c
    ? el("dl", { class: "kv" }, el("dt", {}, "姓名"), el("dd", {}, c.name), el("dt", {}, "客户号"), el("dd", {}, c.customer_no),
        el("dt", {}, "手机"), el("dd", {}, c.phone), el("dt", {}, "等级"), el("dd", {}, c.level),
        el("dt", {}, "城市"), el("dd", {}, c.city || "—"))
    : el("p", { class: "muted" }, "未验证身份的顾客"));
  $("orders").replaceChildren(...(data.orders.length ? data.orders.map((o) => el("div", { class: "item" },
    el("div", { class: "row" }, el("strong", {}, o.order_no), " ", el("span", { class: "tag" }, o.status_label)),
    el("div", { class: "muted small" }, `¥${o.total_amount} · ${fmtTime(o.created_at)}`),
    el("div", { class: "small" }, (o.items || []).join("，")))) : [el("p", { class: "muted" }, "无")]));
  if (reset || !$("tickets").contains(document.activeElement)) {
    const canChange = h.status !== "closed" || state.me.role === "supervisor";
    $("tickets").replaceChildren(...(data.tickets.length ? data.tickets.map((t) => el("div", { class: "item" },
      el("div", {}, el("strong", {}, t.ticket_no), " ", el("span", { class: "tag" }, t.status_label), " ", badge(t.priority)),
      el("div", { class: "small" }, `${t.category} · ${t.subject}`),
      ticketStatusSelect(t, canChange))) : [el("p", { class: "muted" }, "无")]));
  }
  const hist = data.history || { channels: [], handoffs: [] };
  $("history").replaceChildren(
    ...hist.channels.map((b) => el("div", { class: "small" }, `已验证：${b.channel} · ${b.conversation_id} · ${fmtTime(b.verified_at)}`)),
    ...hist.handoffs.map((x) => el("div", { class: "item small" },
      `#${x.handoff_id} ${fmtTime(x.created_at)} · ${x.channel || "未知"} · ${REASON[x.reason] || x.reason} · ${STATUS[x.status] || x.status}`
      + (x.assigned_agent ? ` · ${x.assigned_agent}` : ""))),
    ...(hist.channels.length || hist.handoffs.length ? [] : [el("p", { class: "muted" }, "无")]));
  $("slots").textContent = Object.entries(data.slots || {})
    .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("\n") || "（无）";

  const closed = h.status === "closed";
  for (const form of ["reply-form", "transfer-form", "ticket-form", "close-form"]) {
    $(form).querySelectorAll("button, textarea, input, select").forEach((n) => { n.disabled = closed; });
  }
  if (reset) {
    $("reply-text").value = ""; $("reply-error").textContent = ""; $("action-msg").textContent = "";
    const draft = data.ticket_draft || {};
    $("ticket-subject").value = draft.subject || "";
    $("ticket-desc").value = draft.description || "";
    $("ticket-category").value = draft.category || h.skill_group;
    $("ticket-priority").value = draft.priority || h.priority;
    $("ticket-order").value = draft.order_no || "";
    $("close-note").value = "";
  }
}

function actionMessage(text, ok) {
  $("action-msg").textContent = text;
  $("action-msg").className = `small ${ok ? "ok" : "error"}`;
}

async function sendReply() {
  const text = $("reply-text").value.trim();
  if (!text || !state.currentId) return;
  $("reply-error").textContent = "";
  try {
    await api("POST", `/api/conversations/${state.currentId}/reply`, { text });
    $("reply-text").value = "";
    openConversation(state.currentId, true);
  } catch (error) {
    $("reply-error").textContent = error.message;
  }
}
$("reply-form").addEventListener("submit", (event) => { event.preventDefault(); sendReply(); });
$("reply-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); sendReply(); }
});

$("transfer-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const agent = $("transfer-agent").value, group = $("transfer-group").value;
  if (!agent === !group) { actionMessage("请选择一位客服或一个技能组（二选一）", false); return; }
  try {
    const result = await api("POST", `/api/conversations/${state.currentId}/transfer`,
      agent ? { to_agent: agent } : { to_skill_group: group });
    actionMessage(`已转接：${result.assigned_agent ? "客服 " + result.assigned_agent : result.skill_group + "（排队中）"}`, true);
    $("transfer-agent").value = ""; $("transfer-group").value = "";
    openConversation(state.currentId, true);
  } catch (error) { actionMessage(error.message, false); }
});

$("ticket-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const ticket = await api("POST", `/api/conversations/${state.currentId}/ticket`, {
      subject: $("ticket-subject").value, description: $("ticket-desc").value,
      category: $("ticket-category").value, priority: $("ticket-priority").value,
      order_no: $("ticket-order").value.trim() || null });
    actionMessage(`工单已创建：${ticket.ticket_no}`, true);
    openConversation(state.currentId, true);
  } catch (error) { actionMessage(error.message, false); }
});

/* ticket status (the customer is told in their channel; see kefu/desk/followups.py) */
const TICKET_STATUS = { open: "待处理", in_progress: "处理中", resolved: "已解决", closed: "已关闭" };

function ticketStatusSelect(ticket, enabled) {
  const select = el("select", { "aria-label": `工单 ${ticket.ticket_no} 状态`, onchange: (event) => changeTicketStatus(ticket, event.target) },
    ...Object.entries(TICKET_STATUS).map(([value, label]) => el("option", { value }, label)));
  select.value = ticket.status;
  select.disabled = !enabled;
  return el("label", { class: "small" }, "状态 ", select);
}

async function changeTicketStatus(ticket, select) {
  const status = select.value;
  const note = prompt(`将工单 ${ticket.ticket_no} 改为“${TICKET_STATUS[status]}”。备注（会发送给顾客，可留空）：`, "");
  if (note === null) { select.value = ticket.status; select.blur(); return; }
  try {
    const result = await api("POST", `/api/tickets/${encodeURIComponent(ticket.ticket_no)}/status`, { status, note });
    const told = result.customer_notified === true ? "，已通知顾客" : result.customer_notified === false ? "（未能通知顾客）" : "";
    actionMessage(`工单 ${ticket.ticket_no} 已改为“${TICKET_STATUS[status]}”${told}${result.rating === "requested" ? "，已邀请评价" : ""}`, true);
  } catch (error) {
    select.value = ticket.status;
    actionMessage(error.message, false);
  }
  select.blur();
  if (state.currentId) openConversation(state.currentId, true);
  loadOverdue();
}

/* overdue tickets (SLA reminders written by the desk's SLA loop) */
async function loadOverdue() {
  clearTimeout(state.overdueTimer);
  if (!state.me) return;
  try {
    const data = await api("GET", "/api/tickets/overdue");
    $("overdue-count").textContent = data.total || "";
    $("overdue-list").replaceChildren(...(data.tickets.length ? data.tickets.map((t) => el("li", { title: t.subject },
      el("div", { class: "row" }, el("span", {}, badge(t.priority), " ", t.ticket_no),
        el("span", { class: "muted small" }, `超时 ${fmtDuration(t.overdue_seconds)}`)),
      el("div", { class: "preview" }, `${t.category} · ${t.status_label}${t.customer_update === "delivered" ? " · 已告知顾客" : ""}`),
      el("div", { class: "preview" }, t.subject))) : [el("li", { class: "muted small" }, "暂无")]));
  } catch (error) { /* shown again on the next round */ }
  state.overdueTimer = setTimeout(loadOverdue, 30000);
}

$("close-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!confirm("确定结束该会话？机器人将恢复接待并邀请顾客评价。")) return;
  try {
    const result = await api("POST", `/api/conversations/${state.currentId}/close`, { note: $("close-note").value });
    actionMessage(result.rasa_notified ? "会话已结束，已邀请顾客评价" : "会话已结束（Rasa 未连接，未能邀请评价）", result.rasa_notified);
    openConversation(state.currentId, true);
  } catch (error) { actionMessage(error.message, false); }
});

/* ---------------------------------------------------------------- start */

api("GET", "/api/me").then(showDesk).catch(showLogin);
