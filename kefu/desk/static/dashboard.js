/* 数据看板 — plain JS, charts drawn as inline SVG (no chart library).
   Data: GET /api/analytics/summary (kefu/desk/dashboard.py); KPI definitions: docs/analytics.md.
   $, el and appendChildren come from dom.js. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const BLUE = "#3370ff", ORANGE = "#ff8800", GREEN = "#00a870", RED = "#f54a45", GREY = "#8f959e";
const state = { seq: 0, data: null, edited: false };  // edited: dates typed since the last query

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  return appendChildren(node, children);
}
const tip = (text) => svg("title", {}, text);

/* ---------------------------------------------------------------- formatting */

const isNum = (v) => typeof v === "number" && isFinite(v);
const fmtCount = (v) => (isNum(v) ? String(v) : "—");
const fmtRate = (v) => (isNum(v) ? `${(v * 100).toFixed(1)}%` : "—");
const fmtScore = (v) => (isNum(v) ? v.toFixed(2) : "—");
function fmtSeconds(v) {
  if (!isNum(v)) return "—";
  const s = Math.round(v);
  if (s < 60) return `${s}秒`;
  if (s < 3600) return `${Math.floor(s / 60)}分${s % 60 ? `${s % 60}秒` : ""}`;
  return `${Math.floor(s / 3600)}小时${Math.floor((s % 3600) / 60)}分`;
}
function fmtAxisSeconds(v) {
  if (v < 60) return `${v}秒`;
  if (v < 3600) return `${+(v / 60).toFixed(1)}分`;
  return `${+(v / 3600).toFixed(1)}小时`;
}
const shortDay = (day) => day.slice(5);  // MM-DD
function addDays(day, n) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + n);
  return date.toISOString().slice(0, 10);
}
function clip(text, max) { return text.length > max ? `${text.slice(0, max - 1)}…` : text; }

// the smallest step (from `steps`) that covers `max` in at most 5 ticks; returns [top, step]
function scale(max, steps) {
  for (const step of steps) {
    if (max / step <= 5) return [Math.max(step, Math.ceil(max / step) * step), step];
  }
  const step = steps[steps.length - 1] * Math.ceil(max / (5 * steps[steps.length - 1]));
  return [Math.ceil(max / step) * step, step];
}
const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000];
const SECOND_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800];

/* ---------------------------------------------------------------- charts */

// charts are drawn at the plot's own width (text stays at its CSS size) and redrawn when the window resizes
const plotWidth = (container) => Math.max(260, Math.floor(container.clientWidth || 380));

function empty(container, text) {
  container.replaceChildren(el("p", { class: "empty" }, text || "暂无数据"));
}

function heatColor(ratio) {
  if (ratio <= 0) return "#f2f3f5";
  const from = [224, 234, 255], to = [30, 80, 220];
  const t = 0.15 + 0.85 * ratio;
  return `rgb(${from.map((c, i) => Math.round(c + (to[i] - c) * t)).join(",")})`;
}

function heatmap(container, data) {
  const total = data.values.flat().reduce((a, b) => a + b, 0);
  if (!total) { empty(container, "所选时段内没有会话"); return; }
  const left = 36, top = 16, width = plotWidth(container);
  const cw = (width - left) / 24, ch = Math.max(18, Math.min(26, cw * 0.85)), height = top + 7 * ch;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "会话量热力图" });
  data.hours.forEach((hour) => chart.append(
    svg("text", { x: left + hour * cw + cw / 2, y: 11, "text-anchor": "middle" }, hour)));
  data.values.forEach((row, d) => {
    chart.append(svg("text", { x: left - 6, y: top + d * ch + ch / 2 + 4, "text-anchor": "end" }, data.weekdays[d]));
    row.forEach((value, hour) => {
      const ratio = data.max ? value / data.max : 0;
      const x = left + hour * cw, y = top + d * ch;
      chart.append(svg("rect", { class: "cell", x: x + 1, y: y + 1, width: cw - 2, height: ch - 2, rx: 3,
                                 fill: heatColor(ratio), "data-weekday": d, "data-hour": hour, "data-value": value },
        tip(`${data.weekdays[d]} ${hour}:00–${hour + 1}:00 · ${value} 个会话`)));
      if (value) {
        chart.append(svg("text", { class: `cell-value${ratio > 0.55 ? " dark" : ""}`, x: x + cw / 2, y: y + ch / 2 + 4,
                                   "text-anchor": "middle", "pointer-events": "none" }, value));
      }
    });
  });
  const legend = el("div", { class: "legend" },
    el("span", {}, `共 ${total} 个会话，颜色越深会话越多（单格最多 ${data.max} 个）`),
    el("span", {}, el("i", { style: `background:${heatColor(0)}` }), "0"),
    el("span", {}, el("i", { style: `background:${heatColor(0.5)}` }), "中"),
    el("span", {}, el("i", { style: `background:${heatColor(1)}` }), "多"));
  container.replaceChildren(chart, legend);
}

/* line chart over days; series: [{name, color, values}] (null = no data that day) */
function lineChart(container, days, series, { format, steps, fixedMax, label }) {
  const values = series.flatMap((s) => s.values).filter(isNum);
  if (!values.length) { empty(container); return; }
  const W = plotWidth(container), H = 210, L = 46, R = 12, T = 10, B = 26;
  const [top, step] = fixedMax ? [fixedMax, fixedMax / 4] : scale(Math.max(...values, 0), steps);
  const n = days.length;
  const x = (i) => (n === 1 ? L + (W - L - R) / 2 : L + (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  for (let v = 0; v <= top + 1e-9; v += step) {
    chart.append(svg("line", { class: v ? "grid" : "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
                 svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const every = Math.max(1, Math.ceil(n / 8));
  days.forEach((day, i) => {
    if (i % every === 0 || (i === n - 1 && (n - 1) % every >= every / 2)) {
      chart.append(svg("text", { x: x(i), y: H - 8, "text-anchor": "middle" }, shortDay(day)));
    }
  });
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (!isNum(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) chart.append(svg("path", { class: "line", d, fill: "none", stroke: s.color, "stroke-width": 2,
                                      "stroke-linejoin": "round", "data-series": s.name }));
    s.values.forEach((v, i) => {
      if (isNum(v)) {
        chart.append(svg("circle", { class: "point", cx: x(i), cy: y(v), r: 3.5, fill: "#fff", stroke: s.color,
                                     "stroke-width": 2 }, tip(`${days[i]} ${s.name}：${format(v, true)}`)));
      }
    });
  }
  const parts = [chart];
  if (series.length > 1) {
    parts.push(el("div", { class: "legend" },
      series.map((s) => el("span", {}, el("i", { style: `background:${s.color}` }), s.name))));
  }
  container.replaceChildren(...parts);
}

/* vertical bars; items: [{label, value, color, title}] */
function columnChart(container, items, label) {
  if (!items.some((item) => item.value)) { empty(container, "所选时段内没有评价"); return; }
  const W = plotWidth(container), H = 210, L = 34, R = 8, T = 16, B = 24;
  const [top, step] = scale(Math.max(...items.map((i) => i.value)), COUNT_STEPS);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const band = (W - L - R) / items.length;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  for (let v = 0; v <= top; v += step) {
    chart.append(svg("line", { class: v ? "grid" : "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
                 svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v));
  }
  items.forEach((item, i) => {
    const cx = L + band * i + band / 2, w = Math.min(48, band * 0.6);
    chart.append(
      svg("rect", { class: "bar", x: cx - w / 2, y: y(item.value), width: w, height: y(0) - y(item.value), rx: 3,
                    fill: item.color, "data-value": item.value }, tip(item.title)),
      svg("text", { class: "bar-value", x: cx, y: y(item.value) - 4, "text-anchor": "middle" }, item.value),
      svg("text", { x: cx, y: H - 6, "text-anchor": "middle" }, item.label));
  });
  container.replaceChildren(chart);
}

/* horizontal bars; items: [{label, value, title}] */
function barChart(container, items, color, label, emptyText) {
  if (!items.length) { empty(container, emptyText); return; }
  const W = plotWidth(container), L = 118, R = 40, row = 28, T = 2;
  const H = T + row * items.length + 2;
  const max = Math.max(...items.map((i) => i.value), 1);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  items.forEach((item, i) => {
    const yTop = T + i * row, w = ((W - L - R) * item.value) / max;
    chart.append(
      svg("text", { x: L - 8, y: yTop + row / 2 + 4, "text-anchor": "end" }, clip(item.label, 10), tip(item.title)),
      svg("rect", { class: "bar", x: L, y: yTop + 4, width: Math.max(w, 2), height: row - 8, rx: 3, fill: color,
                    "data-value": item.value }, tip(item.title)),
      svg("text", { class: "bar-value", x: L + Math.max(w, 2) + 6, y: yTop + row / 2 + 4 }, item.value));
  });
  chart.append(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - 2 }));
  container.replaceChildren(chart);
}

/* ---------------------------------------------------------------- page */

function renderKpis(k) {
  const cards = [
    ["conversations", "会话数", fmtCount(k.conversations), "含顾客消息的会话"],
    ["messages", "消息数", fmtCount(k.messages),
     `顾客 ${k.user_messages} · 机器人 ${k.bot_messages} · 人工 ${k.agent_messages}`],
    ["containment_rate", "自主解决率", fmtRate(k.containment_rate), `转人工率 ${fmtRate(k.handoff_rate)}`],
    ["fallback_rate", "兜底率", fmtRate(k.fallback_rate), `含兜底的会话 ${fmtRate(k.fallback_conversation_rate)}`],
    ["handoffs", "转人工次数", fmtCount(k.handoffs), `未接入 ${k.unassigned_handoffs}`],
    ["queue_wait_mean", "平均排队时长", fmtSeconds(k.queue_wait_mean), `P90 ${fmtSeconds(k.queue_wait_p90)}`],
    ["first_response_mean", "平均首次响应", fmtSeconds(k.first_response_mean), `P90 ${fmtSeconds(k.first_response_p90)}`],
    ["handle_time_mean", "平均处理时长", fmtSeconds(k.handle_time_mean), `P90 ${fmtSeconds(k.handle_time_p90)}`],
    ["csat_mean", "平均满意度（5分制）", fmtScore(k.csat_mean),
     `${k.ratings} 条评价 · 4–5分 ${fmtRate(k.csat_satisfied_rate)}`],
    ["rating_response_rate", "评价回复率", fmtRate(k.rating_response_rate), `邀评会话 ${k.rating_requests}`],
    ["ticket_completion_rate", "工单完结率", fmtRate(k.ticket_completion_rate),
     `新建 ${k.tickets} · 重开率 ${fmtRate(k.ticket_reopen_rate)}`],
    ["followup_reach_rate", "回访触达率", fmtRate(k.followup_reach_rate), `应回访 ${k.followups_due}`],
  ];
  $("kpis").replaceChildren(...cards.map(([key, label, value, sub]) => el("div", { class: "kpi", "data-kpi": key },
    el("div", { class: "kpi-label" }, label), el("div", { class: "kpi-value" }, value),
    el("div", { class: "kpi-sub" }, sub))));
}

function renderCharts(c) {
  heatmap(document.querySelector("#chart-heatmap .plot"), c.volume_heatmap);
  const days = c.containment_by_day.map((d) => d.day);
  lineChart(document.querySelector("#chart-containment .plot"), days,
    [{ name: "自主解决率", color: GREEN, values: c.containment_by_day.map((d) => d.containment_rate) }],
    { format: (v, exact) => (exact ? fmtRate(v) : `${Math.round(v * 100)}%`), fixedMax: 1, label: "自主解决率趋势" });
  lineChart(document.querySelector("#chart-wait .plot"), c.wait_by_day.map((d) => d.day),
    [{ name: "均值", color: BLUE, values: c.wait_by_day.map((d) => d.queue_wait_mean) },
     { name: "P90", color: ORANGE, values: c.wait_by_day.map((d) => d.queue_wait_p90) }],
    { format: (v, exact) => (exact ? fmtSeconds(v) : fmtAxisSeconds(v)), steps: SECOND_STEPS, label: "排队时长趋势" });
  const scoreColor = { 1: RED, 2: "#ff7d6b", 3: GREY, 4: "#5ccf9f", 5: GREEN };
  columnChart(document.querySelector("#chart-csat .plot"), c.csat_distribution.map((d) => ({
    label: `${d.score}分`, value: d.count, color: scoreColor[d.score] || BLUE, title: `${d.score}分：${d.count} 条评价` })),
    "满意度分布");
  barChart(document.querySelector("#chart-intents .plot"), c.top_intents.map((d) => ({
    label: d.label, value: d.conversations,
    title: `${d.label}（${d.intent}）：${d.conversations} 个会话，转人工率 ${fmtRate(d.handoff_rate)}` })),
    BLUE, "热门意图", "所选时段内没有会话");
  barChart(document.querySelector("#chart-reasons .plot"), c.top_handoff_reasons.map((d) => ({
    label: d.label, value: d.count, title: `${d.label}（${d.reason}）：${d.count} 次` })),
    ORANGE, "转人工原因", "所选时段内没有转人工");
}

function render(data) {
  state.data = data;
  const p = data.period;
  if (!state.edited) {  // a slow answer must not overwrite dates the user is typing
    $("f-since").value = p.since;
    $("f-until").value = p.until;
  }
  const select = $("f-channel");
  select.replaceChildren(el("option", { value: "" }, "全部渠道"),
    ...data.channels.map((c) => el("option", { value: c.value }, c.label === c.value ? c.value : `${c.label}（${c.value}）`)));
  select.value = data.channel || "";
  const tz = `UTC${p.tz_offset >= 0 ? "+" : "-"}${Math.abs(p.tz_offset)}`;
  const channel = data.channel ? (data.channels.find((c) => c.value === data.channel) || { label: data.channel }).label : "全部渠道";
  $("period").textContent = `统计周期：${p.since} 至 ${p.until}（含当天，${tz}）· 渠道：${channel}`;
  const ingest = data.ingest || {};
  const at = new Date(data.generated_at).toLocaleTimeString("zh-CN", { hour12: false });
  $("status").textContent = ingest.ok === false ? `事件同步失败，显示已入库的数据 · ${at}` : `数据更新于 ${at}`;
  $("status").className = ingest.ok === false ? "error small" : "muted small";
  renderKpis(data.kpis);
  renderCharts(data.charts);
}

async function getJSON(path) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin" });
  } catch (error) {
    throw new Error("网络错误，无法连接工作台服务");
  }
  let data = {};
  try { data = await response.json(); } catch (e) { /* empty body */ }
  if (response.status === 401) {
    location.href = "/?next=/dashboard";
    throw new Error("登录已过期，请重新登录");
  }
  if (!response.ok) {
    throw new Error(response.status === 403 ? "数据看板仅对主管开放"
      : `查询失败（${response.status}）：${data.error || "未知错误"}`);
  }
  return data;
}

function queryFromForm() {
  const params = new URLSearchParams();
  if ($("f-since").value) params.set("since", $("f-since").value);
  if ($("f-until").value) params.set("until", $("f-until").value);
  if ($("f-channel").value) params.set("channel", $("f-channel").value);
  return params;
}

async function load(params) {
  const seq = ++state.seq;
  state.edited = false;
  const main = document.querySelector(".dash-main");
  main.classList.add("loading");
  $("f-error").textContent = "";
  try {
    const data = await getJSON(`/api/analytics/summary?${params}`);
    if (seq !== state.seq) return;
    render(data);
    const shown = new URLSearchParams({ since: data.period.since, until: data.period.until });
    if (data.channel) shown.set("channel", data.channel);
    history.replaceState(null, "", `/dashboard?${shown}`);
  } catch (error) {
    if (seq === state.seq) $("f-error").textContent = error.message;
  } finally {
    if (seq === state.seq) main.classList.remove("loading");
  }
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (state.data) renderCharts(state.data.charts); }, 150);
});

$("filters").addEventListener("submit", (event) => { event.preventDefault(); load(queryFromForm()); });
$("f-channel").addEventListener("change", () => load(queryFromForm()));
for (const id of ["f-since", "f-until"]) $(id).addEventListener("input", () => { state.edited = true; });
document.querySelectorAll(".quick button").forEach((button) => button.addEventListener("click", () => {
  const today = (state.data && state.data.period.today) || new Date().toISOString().slice(0, 10);
  $("f-until").value = today;
  $("f-since").value = addDays(today, 1 - Number(button.dataset.days));
  load(queryFromForm());
}));

getJSON("/api/me").then((me) => {
  $("me-name").textContent = `${me.name || me.agent}（${me.agent}${me.role === "supervisor" ? " · 主管" : ""}）`;
}).catch(() => {});
{
  // the first load takes its filters from the address (?since=&until=&channel=), else the server's default (7 days)
  const initial = new URLSearchParams();
  const given = new URLSearchParams(location.search);
  for (const key of ["since", "until", "channel"]) if (given.get(key)) initial.set(key, given.get(key));
  load(initial);
}
