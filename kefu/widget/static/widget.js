/* 智能客服 web chat widget. Embed on any page with one line:
 *   <script src="https://DESK-HOST/widget.js" data-server="https://RASA-HOST" defer></script>
 * Options (data- attributes on the script tag): data-server (Rasa's URL; default: this page's host, port 5005),
 * data-title, data-open="true" (open on load). Talks to Rasa's socket.io channel over long-polling.
 * The conversation survives reloads: the session id and the last messages live in localStorage. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src, location.href);
  var opts = script.dataset || {};
  var server = opts.server || (location.protocol + "//" + location.hostname + ":5005");
  var title = opts.title || "智能客服";
  var STORE = "kefu_widget:" + server;
  var MAX_HISTORY = 200;
  var TYPING_TIMEOUT_MS = 20000;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  var state = load();
  state.history = Array.isArray(state.history) ? state.history : [];
  function save() {
    state.history = state.history.slice(-MAX_HISTORY);
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* private mode: no persistence */ }
  }

  var css = [
    ":host{all:initial;font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;font-size:14px}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:24px;padding:12px 18px;",
    "background:#1677ff;color:#fff;font-size:15px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.2)}",
    ".panel{position:fixed;right:20px;bottom:80px;z-index:2147483000;width:360px;max-width:calc(100vw - 24px);",
    "height:540px;max-height:calc(100vh - 100px);display:flex;flex-direction:column;background:#fff;border-radius:12px;",
    "box-shadow:0 8px 30px rgba(0,0,0,.25);overflow:hidden}",
    ".panel[hidden]{display:none}",
    "header{background:#1677ff;color:#fff;padding:12px 14px;display:flex;align-items:center;gap:8px}",
    "header strong{flex:1;font-size:15px}header button{background:none;border:0;color:#fff;font-size:18px;cursor:pointer}",
    ".status{font-size:12px;opacity:.85}",
    ".log{flex:1;overflow-y:auto;padding:12px;background:#f5f6f8;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:80%;padding:8px 11px;border-radius:10px;line-height:1.5;white-space:pre-wrap;word-break:break-word}",
    ".bot{align-self:flex-start;background:#fff;color:#222;border:1px solid #e6e8eb}",
    ".agent{align-self:flex-start;background:#fff7e6;color:#222;border:1px solid #ffd591}",
    ".who{display:block;font-size:12px;color:#d46b08;margin-bottom:2px}",
    ".user{align-self:flex-end;background:#1677ff;color:#fff}",
    ".notice{align-self:center;font-size:12px;color:#888}",
    ".replies{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:90%}",
    ".replies button{border:1px solid #1677ff;color:#1677ff;background:#fff;border-radius:14px;padding:4px 10px;",
    "cursor:pointer;font-size:13px}.replies button:disabled{opacity:.45;cursor:default}",
    ".typing{align-self:flex-start;color:#888;font-size:12px}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #eee}",
    "textarea{flex:1;resize:none;border:1px solid #d9d9d9;border-radius:8px;padding:7px;font:inherit;height:38px}",
    "form button{border:0;border-radius:8px;background:#1677ff;color:#fff;padding:0 14px;cursor:pointer}"
  ].join("");

  var host = document.createElement("div");
  host.id = "kefu-widget";
  document.body.appendChild(host);
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML = "<style>" + css + "</style>" +
    '<button class="launcher" part="launcher">💬 在线客服</button>' +
    '<section class="panel" hidden role="dialog" aria-label="' + title + '">' +
    '<header><strong></strong><span class="status"></span><button class="close" title="收起">×</button></header>' +
    '<div class="log" aria-live="polite"></div>' +
    '<form><textarea placeholder="请输入您的问题，回车发送" maxlength="2000"></textarea>' +
    '<button type="submit">发送</button></form></section>';
  var panel = root.querySelector(".panel");
  var log = root.querySelector(".log");
  var input = root.querySelector("textarea");
  var statusEl = root.querySelector(".status");
  root.querySelector("header strong").textContent = title;

  function scroll() { log.scrollTop = log.scrollHeight; }
  function disableOldReplies() {
    root.querySelectorAll(".replies button").forEach(function (b) { b.disabled = true; });
  }

  function render(item, live) {
    if (item.kind === "user") {
      var u = document.createElement("div");
      u.className = "msg user";
      u.textContent = item.text;
      log.appendChild(u);
    } else if (item.kind === "notice") {
      var n = document.createElement("div");
      n.className = "notice";
      n.textContent = item.text;
      log.appendChild(n);
    } else {
      if (item.text) {
        var b = document.createElement("div");
        b.className = "msg " + (item.agent ? "agent" : "bot");
        if (item.agent) {
          var who = document.createElement("span");
          who.className = "who";
          who.textContent = "人工客服 " + (item.agent_name || item.agent);
          b.appendChild(who);
        }
        b.appendChild(document.createTextNode(item.text));
        log.appendChild(b);
      }
      if (item.image) {
        var img = document.createElement("img");
        img.src = item.image;
        img.style.maxWidth = "70%";
        log.appendChild(img);
      }
      if (item.buttons && item.buttons.length) {
        var box = document.createElement("div");
        box.className = "replies";
        item.buttons.forEach(function (btn) {
          var el = document.createElement("button");
          el.type = "button";
          el.textContent = btn.title;
          el.disabled = !live;
          el.addEventListener("click", function () { send(btn.payload, btn.title); });
          box.appendChild(el);
        });
        log.appendChild(box);
      }
    }
    scroll();
  }

  var typingEl = null, typingTimer = null;
  function typing(on) {
    clearTimeout(typingTimer);
    if (on && !typingEl) {
      typingEl = document.createElement("div");
      typingEl.className = "typing";
      typingEl.textContent = "客服正在输入…";
      log.appendChild(typingEl);
      scroll();
    }
    if (!on && typingEl) { typingEl.remove(); typingEl = null; }
    if (on) typingTimer = setTimeout(function () { typing(false); }, TYPING_TIMEOUT_MS);
  }

  function add(item) {
    if (item.kind === "user" || (item.buttons && item.buttons.length)) disableOldReplies();
    state.history.push(item);
    save();
    render(item, true);
  }

  var socket = null, confirmed = false, outbox = [];
  function setStatus(text) { statusEl.textContent = text; }

  function flush() {
    while (confirmed && outbox.length) socket.emit("user_uttered", outbox.shift());
  }

  function send(text, shown) {
    text = (text || "").trim();
    if (!text) return;
    add({ kind: "user", text: shown || text });
    outbox.push({ message: text, session_id: state.session_id });
    typing(true);
    flush();
  }

  function connect() {
    if (socket) return;
    if (typeof window.io !== "function") { setStatus("组件加载失败"); return; }
    socket = window.io(server, { path: "/socket.io", transports: ["polling"], reconnection: true });
    setStatus("连接中…");
    socket.on("connect", function () {
      socket.emit("session_request", { session_id: state.session_id || null });
    });
    socket.on("session_confirm", function (sessionId) {
      var fresh = sessionId !== state.session_id;
      state.session_id = sessionId;
      save();
      confirmed = true;
      setStatus("在线");
      outbox.forEach(function (m) { m.session_id = sessionId; });
      flush();
      if (fresh && !state.history.length) send("/greet", "你好");
    });
    socket.on("session_required", function () {
      confirmed = false;
      socket.emit("session_request", { session_id: state.session_id || null });
    });
    socket.on("bot_uttered", function (msg) {
      typing(false);
      if (!msg || typeof msg !== "object") return;
      add({
        kind: "bot", text: msg.text || "", agent: msg.agent || null, agent_name: msg.agent_name || null,
        image: msg.attachment && msg.attachment.payload && msg.attachment.payload.src || null,
        buttons: (msg.quick_replies || msg.buttons || []).map(function (b) {
          return { title: b.title, payload: b.payload };
        })
      });
    });
    socket.on("disconnect", function () { confirmed = false; setStatus("已断开，正在重连…"); });
    socket.io.on("reconnect_attempt", function () { setStatus("正在重连…"); });
  }

  function withClient(done) {
    if (typeof window.io === "function") return done();
    var s = document.createElement("script");
    s.src = new URL("static/vendor/socket.io.min.js", base).href;
    s.onload = done;
    s.onerror = function () { setStatus("组件加载失败"); };
    document.head.appendChild(s);
  }

  function open() {
    panel.hidden = false;
    withClient(connect);
    input.focus();
  }

  state.history.forEach(function (item) { render(item, false); });
  var lastButtons = log.querySelectorAll(".replies");
  if (lastButtons.length && log.lastElementChild === lastButtons[lastButtons.length - 1]) {
    lastButtons[lastButtons.length - 1].querySelectorAll("button").forEach(function (b) { b.disabled = false; });
  }

  root.querySelector(".launcher").addEventListener("click", function () {
    if (panel.hidden) open(); else panel.hidden = true;
  });
  root.querySelector(".close").addEventListener("click", function () { panel.hidden = true; });
  root.querySelector("form").addEventListener("submit", function (e) {
    e.preventDefault();
    send(input.value);
    input.value = "";
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send(input.value);
      input.value = "";
    }
  });
  if (opts.open === "true") open();
  window.kefuWidget = { open: open, send: send };
})();
