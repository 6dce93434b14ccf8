/* rsft customer web chat — plain JavaScript, no build step.
 *
 * Talks to the Rasa REST channel:
 *   POST {rasa_url}/webhooks/rest/webhook  {"sender": id, "message": text}
 * and renders the answers. Bot text is only ever inserted with textContent.
 */
(function () {
  "use strict";

  var SENDER_KEY = "rsft.sender";
  var TRANSCRIPT_KEY = "rsft.transcript";
  var MAX_MESSAGES = 200;
  var MAX_LEN = 2000;
  var POLL_MS = 3000;
  var SEND_TIMEOUT_MS = 90000;
  var HEALTH_TIMEOUT_MS = 5000;
  var RECONNECTED_SHOW_MS = 1500;
  var DEFAULT_CONFIG = { rasa_url: "http://127.0.0.1:5005", shop_name: "Northwind Goods" };

  var OFFLINE_TEXT = "Can\u2019t reach the assistant right now \u2014 we\u2019ll retry\u2026";
  var RECONNECTED_TEXT = "Connected again";

  // ------------------------------------------------------------------ state
  var config = { rasa_url: DEFAULT_CONFIG.rasa_url, shop_name: DEFAULT_CONFIG.shop_name };
  var sender = null;
  var transcript = [];
  var busy = false;
  var offline = false;
  var pollTimer = null;
  var hideStatusTimer = null;
  var generation = 0;          // bumped by "New conversation"; stale replies are dropped
  var retryQueue = [];         // ids of user messages that failed on a network error
  var elById = Object.create(null);
  var memoryStore = Object.create(null); // fallback when localStorage is unavailable

  // ------------------------------------------------------------------ dom
  var $ = function (id) { return document.getElementById(id); };
  var els = {};

  // ------------------------------------------------------------------ storage
  function storeGet(key) {
    try { return window.localStorage.getItem(key); }
    catch (e) { return Object.prototype.hasOwnProperty.call(memoryStore, key) ? memoryStore[key] : null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); }
    catch (e) { memoryStore[key] = value; }
  }
  function storeRemove(key) {
    try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ }
    delete memoryStore[key];
  }

  function newId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") {
      try { return c.randomUUID(); } catch (e) { /* insecure context: fall through */ }
    }
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = [];
    for (var j = 0; j < 16; j++) hex.push((bytes[j] + 0x100).toString(16).slice(1));
    return hex.slice(0, 4).join("") + "-" + hex.slice(4, 6).join("") + "-" +
      hex.slice(6, 8).join("") + "-" + hex.slice(8, 10).join("") + "-" + hex.slice(10).join("");
  }

  function loadSender() {
    var s = storeGet(SENDER_KEY);
    if (typeof s !== "string" || !/^[A-Za-z0-9_.:-]{8,128}$/.test(s)) {
      s = newId();
      storeSet(SENDER_KEY, s);
    }
    return s;
  }

  function cleanButtons(list) {
    if (!Array.isArray(list)) return undefined;
    var out = [];
    list.forEach(function (b) {
      if (!b || typeof b !== "object") return;
      var title = typeof b.title === "string" ? b.title : "";
      var payload = typeof b.payload === "string" ? b.payload : "";
      var url = typeof b.url === "string" ? b.url : "";
      if (!title && !payload) return;
      var item = { title: title || payload, payload: payload };
      if (url) item.url = url;
      out.push(item);
    });
    return out.length ? out : undefined;
  }

  function loadTranscript() {
    var raw = storeGet(TRANSCRIPT_KEY);
    if (!raw) return [];
    var data;
    try { data = JSON.parse(raw); } catch (e) { return []; }
    if (!Array.isArray(data)) return [];
    var out = [];
    data.forEach(function (m) {
      if (!m || typeof m !== "object") return;
      if (m.role !== "user" && m.role !== "bot") return;
      var msg = {
        id: typeof m.id === "string" ? m.id : newId(),
        role: m.role,
        text: typeof m.text === "string" ? m.text : "",
        ts: typeof m.ts === "number" ? m.ts : Date.now()
      };
      if (m.role === "user") {
        if (typeof m.payload === "string") msg.payload = m.payload;
        if (m.failed) msg.failed = true;
      } else {
        if (typeof m.turnId === "string") msg.turnId = m.turnId;
        if (m.rate && typeof m.rate === "object" &&
            typeof m.rate.up === "string" && typeof m.rate.down === "string") {
          msg.rate = { up: m.rate.up, down: m.rate.down };
        }
        if (m.rated === "up" || m.rated === "down") msg.rated = m.rated;
        var b = cleanButtons(m.buttons);
        if (b) msg.buttons = b;
        if (typeof m.chosen === "number") msg.chosen = m.chosen;
      }
      out.push(msg);
    });
    return out.slice(-MAX_MESSAGES);
  }

  function saveTranscript() {
    if (transcript.length > MAX_MESSAGES) {
      var dropped = transcript.slice(0, transcript.length - MAX_MESSAGES);
      transcript = transcript.slice(-MAX_MESSAGES);
      dropped.forEach(function (m) {
        var el = elById[m.id];
        if (el && el.parentNode) el.parentNode.removeChild(el);
        delete elById[m.id];
      });
    }
    var plain = transcript.map(function (m) {
      var copy = {};
      Object.keys(m).forEach(function (k) {
        if (k !== "pending" && k !== "ratePending") copy[k] = m[k];
      });
      return copy;
    });
    storeSet(TRANSCRIPT_KEY, JSON.stringify(plain));
  }

  // ------------------------------------------------------------------ network
  function webhookUrl() { return config.rasa_url + "/webhooks/rest/webhook"; }

  function fetchWithTimeout(url, options, ms) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = null;
    if (ctrl) {
      options.signal = ctrl.signal;
      timer = setTimeout(function () { ctrl.abort(); }, ms);
    }
    return fetch(url, options).finally(function () { if (timer) clearTimeout(timer); });
  }

  /** POST one message; resolves to a list of bot messages, rejects with err.kind = "network" | "http". */
  function postMessage(text) {
    return fetchWithTimeout(webhookUrl(), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sender: sender, message: text }),
      cache: "no-store"
    }, SEND_TIMEOUT_MS).then(function (res) {
      if (!res.ok) {
        var err = new Error("HTTP " + res.status);
        err.kind = "http";
        throw err;
      }
      return res.text().then(function (body) {
        if (!body) return [];
        var data;
        try { data = JSON.parse(body); } catch (e) { return []; }
        return Array.isArray(data) ? data : [];
      });
    }, function (e) {
      var err = new Error("network: " + (e && e.message));
      err.kind = "network";
      throw err;
    });
  }

  function checkHealth() {
    return fetchWithTimeout(config.rasa_url + "/", { method: "GET", cache: "no-store" }, HEALTH_TIMEOUT_MS)
      .then(function (res) { return res.ok; }, function () { return false; });
  }

  // ------------------------------------------------------------------ status / connectivity
  function showStatus(text, kind) {
    clearTimeout(hideStatusTimer);
    els.status.textContent = text;
    els.status.className = "status-banner " + (kind || "");
    els.status.hidden = false;
  }
  function hideStatus() {
    clearTimeout(hideStatusTimer);
    els.status.hidden = true;
    els.status.textContent = "";
  }

  function goOffline() {
    if (!offline) {
      offline = true;
      document.body.classList.add("is-offline");
    }
    showStatus(OFFLINE_TEXT, "offline");
    scrollToBottom(); // the banner shrinks the message area
    startPolling();
  }

  function startPolling() {
    if (pollTimer) return;
    pollTimer = setInterval(poll, POLL_MS);
  }
  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  var polling = false;
  function poll() {
    if (polling) return;
    polling = true;
    checkHealth().then(function (ok) {
      polling = false;
      if (ok) goOnline();
    });
  }

  function goOnline() {
    stopPolling();
    if (!offline) return;
    offline = false;
    document.body.classList.remove("is-offline");
    showStatus(RECONNECTED_TEXT, "online");
    hideStatusTimer = setTimeout(hideStatus, RECONNECTED_SHOW_MS);
    drainRetryQueue();
  }

  // ------------------------------------------------------------------ busy / typing
  function setBusy(value) {
    busy = value;
    els.send.disabled = value;
    els.send.setAttribute("aria-busy", value ? "true" : "false");
    els.typing.hidden = !value;
    document.body.classList.toggle("is-busy", value);
    if (value) scrollToBottom();
  }

  // ------------------------------------------------------------------ parsing bot messages
  function parseRatePayload(payload) {
    var rest = payload.slice("/rate".length).trim();
    var info = { turnId: "", score: null };
    if (rest.charAt(0) === "{") {
      try {
        var obj = JSON.parse(rest);
        if (obj && typeof obj === "object") {
          if (obj.turn_id !== undefined && obj.turn_id !== null) info.turnId = String(obj.turn_id);
          if (typeof obj.score === "number") info.score = obj.score;
          else if (typeof obj.score === "string" && obj.score !== "" && !isNaN(Number(obj.score))) info.score = Number(obj.score);
        }
      } catch (e) { /* fall through to regex */ }
    }
    if (!info.turnId) {
      var m = /"?turn_id"?\s*[:=]\s*"?([^",}\s]+)/.exec(rest);
      if (m) info.turnId = m[1];
    }
    if (info.score === null) {
      var s = /"?score"?\s*[:=]\s*"?(-?\d+(?:\.\d+)?)/.exec(rest);
      if (s) info.score = Number(s[1]);
    }
    return info;
  }

  var UP_FRONT_CAPTION = "Not what you asked? Maybe one of these:";

  function isRatePayload(p) { return typeof p === "string" && p.slice(0, 5) === "/rate"; }
  function isChoosePayload(p) { return typeof p === "string" && p.slice(0, 7) === "/choose"; }

  /** Turn one Rasa REST message into a transcript entry (or null to ignore it). */
  function toBotEntry(raw) {
    if (!raw || typeof raw !== "object") return null;
    var text = typeof raw.text === "string" ? raw.text : "";
    var buttons = cleanButtons(raw.buttons) || [];
    var rateButtons = buttons.filter(function (b) { return isRatePayload(b.payload); });
    var other = buttons.filter(function (b) { return !isRatePayload(b.payload); });
    if (!text && !buttons.length) return null; // image / custom only: ignore safely

    var entry = { id: newId(), role: "bot", text: text, ts: Date.now() };
    if (rateButtons.length) {
      var up = null, down = null, turnId = "";
      rateButtons.forEach(function (b) {
        var info = parseRatePayload(b.payload);
        if (info.turnId && !turnId) turnId = info.turnId;
        var dir = null;
        if (info.score !== null) dir = info.score > 0 ? "up" : "down";
        else if (/👍|\bup\b|yes|helpful/i.test(b.title) && !/not/i.test(b.title)) dir = "up";
        else if (/👎|\bdown\b|no/i.test(b.title)) dir = "down";
        if (dir === "up" && !up) up = b.payload;
        else if (dir === "down" && !down) down = b.payload;
        else if (!up) up = b.payload;
        else if (!down) down = b.payload;
      });
      if (up && down) {
        entry.rate = { up: up, down: down };
        if (turnId) entry.turnId = turnId;
      } else {
        other = buttons; // not a usable pair: fall back to plain quick replies
      }
    }
    if (other.length) entry.buttons = other;
    return entry;
  }

  // ------------------------------------------------------------------ rendering
  function fmtTime(ts) {
    try { return new Date(ts).toLocaleString(); } catch (e) { return ""; }
  }

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  function renderUser(m) {
    var row = el("div", "msg user" + (m.failed ? " failed" : "") + (m.pending ? " pending" : ""));
    row.setAttribute("data-id", m.id);
    var bubble = el("div", "bubble", m.text);
    bubble.title = fmtTime(m.ts);
    row.appendChild(bubble);
    if (m.failed) {
      var meta = el("div", "msg-meta failed-meta");
      var warn = el("span", "not-delivered", "Not delivered");
      var retry = el("button", "retry", "Retry");
      retry.type = "button";
      retry.setAttribute("aria-label", "Retry sending: " + truncate(m.text, 60));
      retry.addEventListener("click", function () { retryMessage(m.id); });
      meta.appendChild(warn);
      meta.appendChild(retry);
      row.appendChild(meta);
    } else if (m.pending) {
      var sending = el("div", "msg-meta", "Sending\u2026");
      row.appendChild(sending);
    }
    return row;
  }

  function renderBot(m) {
    var row = el("div", "msg bot" + (m.rated ? " rated rated-" + m.rated : ""));
    row.setAttribute("data-id", m.id);
    if (m.rate) row.setAttribute("data-turn-id", m.turnId || "");

    // The initial is drawn by CSS (attr()), so the bubble's textContent is just the answer.
    var avatar = el("span", "avatar");
    avatar.setAttribute("data-initial", shopInitial());
    avatar.setAttribute("aria-hidden", "true");
    row.appendChild(avatar);

    var body = el("div", "msg-body");
    if (m.text) {
      var bubble = el("div", "bubble", m.text);
      bubble.title = fmtTime(m.ts);
      body.appendChild(bubble);
    }

    if (m.buttons && m.buttons.length) {
      // Choices beside a rateable answer came up front (the model was unsure): say what they are.
      if (m.rate && m.buttons.some(function (b) { return isChoosePayload(b.payload); })) {
        body.appendChild(el("div", "quick-replies-caption", UP_FRONT_CAPTION));
      }
      var qr = el("div", "quick-replies");
      qr.setAttribute("role", "group");
      qr.setAttribute("aria-label", "Suggested replies");
      m.buttons.forEach(function (b, idx) {
        if (!b.payload && b.url) {
          if (!/^https?:\/\//i.test(b.url)) return;
          var a = el("a", "quick-reply link", b.title);
          a.href = b.url;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          qr.appendChild(a);
          return;
        }
        var btn = el("button", "quick-reply", b.title);
        btn.type = "button";
        if (typeof m.chosen === "number") {
          btn.disabled = true;
          if (m.chosen === idx) btn.classList.add("chosen");
        }
        btn.addEventListener("click", function () { chooseQuickReply(m.id, idx); });
        qr.appendChild(btn);
      });
      if (qr.childNodes.length) body.appendChild(qr);
    }

    if (m.rate) {
      var rating = el("div", "rating");
      rating.setAttribute("role", "group");
      rating.setAttribute("aria-label", "Rate this answer");
      var up = el("button", "rate-up", "👍");
      var down = el("button", "rate-down", "👎");
      up.type = down.type = "button";
      up.setAttribute("aria-label", "Helpful");
      down.setAttribute("aria-label", "Not helpful");
      up.title = "Helpful";
      down.title = "Not helpful";
      var locked = !!(m.rated || m.ratePending);
      up.disabled = down.disabled = locked;
      var chosen = m.rated || m.ratePending;
      up.setAttribute("aria-pressed", chosen === "up" ? "true" : "false");
      down.setAttribute("aria-pressed", chosen === "down" ? "true" : "false");
      if (chosen === "up") up.classList.add("chosen");
      if (chosen === "down") down.classList.add("chosen");
      up.addEventListener("click", function () { rate(m.id, "up"); });
      down.addEventListener("click", function () { rate(m.id, "down"); });
      rating.appendChild(up);
      rating.appendChild(down);
      if (m.rated) {
        rating.appendChild(el("span", "rated-label", m.rated === "up" ? "Rated 👍" : "Rated 👎"));
      } else if (m.ratePending) {
        rating.appendChild(el("span", "rated-label pending", "Sending\u2026"));
      }
      body.appendChild(rating);
    }

    row.appendChild(body);
    return row;
  }

  function renderMessage(m) {
    return m.role === "user" ? renderUser(m) : renderBot(m);
  }

  function appendMessage(m) {
    var node = renderMessage(m);
    elById[m.id] = node;
    els.messages.appendChild(node);
    updateEmptyState();
  }

  function refreshMessage(m) {
    var old = elById[m.id];
    var node = renderMessage(m);
    elById[m.id] = node;
    if (old && old.parentNode) {
      var hadFocus = old.contains(document.activeElement);
      old.parentNode.replaceChild(node, old);
      if (hadFocus) focusInput();
    } else {
      els.messages.appendChild(node);
    }
  }

  function renderAll() {
    els.messages.textContent = "";
    elById = Object.create(null);
    transcript.forEach(function (m) {
      var node = renderMessage(m);
      elById[m.id] = node;
      els.messages.appendChild(node);
    });
    updateEmptyState();
    scrollToBottom();
  }

  function updateEmptyState() {
    els.empty.hidden = transcript.length > 0;
  }

  function scrollToBottom() {
    var s = els.scroller;
    // after layout
    window.requestAnimationFrame(function () { s.scrollTop = s.scrollHeight; });
  }

  function shopInitial() {
    var c = (config.shop_name || "").trim().charAt(0).toUpperCase();
    return c || "N";
  }

  function truncate(s, n) { return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }

  function findMsg(id) {
    for (var i = 0; i < transcript.length; i++) if (transcript[i].id === id) return transcript[i];
    return null;
  }

  function addBotReplies(list) {
    var added = 0;
    list.forEach(function (raw) {
      var entry = toBotEntry(raw);
      if (!entry) return;
      transcript.push(entry);
      appendMessage(entry);
      added++;
    });
    if (added) scrollToBottom();
  }

  // ------------------------------------------------------------------ actions
  /** Send a user entry's message (text or quick-reply payload). Returns a promise. */
  function deliver(m) {
    var gen = generation;
    m.pending = true;
    delete m.failed;
    refreshMessage(m);
    setBusy(true);
    return postMessage(typeof m.payload === "string" ? m.payload : m.text).then(function (replies) {
      if (gen !== generation) return;
      delete m.pending;
      refreshMessage(m);
      addBotReplies(replies);
      saveTranscript();
    }, function (err) {
      if (gen !== generation) return;
      delete m.pending;
      m.failed = true;
      refreshMessage(m);
      saveTranscript();
      if (err && err.kind === "network" && retryQueue.indexOf(m.id) < 0) retryQueue.push(m.id);
      goOffline();
    }).then(function () {
      if (gen === generation) setBusy(false);
      scrollToBottom();
    });
  }

  function sendText(raw) {
    if (busy) return false;
    var text = (raw || "").slice(0, MAX_LEN).trim();
    if (!text) return false;
    var m = { id: newId(), role: "user", text: text, ts: Date.now() };
    transcript.push(m);
    appendMessage(m);
    saveTranscript();
    scrollToBottom();
    deliver(m);
    return true;
  }

  function retryMessage(id) {
    if (busy) return;
    var m = findMsg(id);
    if (!m || !m.failed) return;
    retryQueue = retryQueue.filter(function (x) { return x !== id; });
    // Move the message to the end so the reply follows it.
    var idx = transcript.indexOf(m);
    if (idx >= 0 && idx !== transcript.length - 1) {
      transcript.splice(idx, 1);
      transcript.push(m);
      var node = elById[m.id];
      if (node && node.parentNode) node.parentNode.appendChild(node);
    }
    deliver(m).then(focusInput);
  }

  function drainRetryQueue() {
    if (busy || offline || !retryQueue.length) return;
    var id = retryQueue.shift();
    var m = findMsg(id);
    if (!m || !m.failed) { drainRetryQueue(); return; }
    retryMessage(id);
    // chain the rest once this one settles
    var wait = setInterval(function () {
      if (!busy) { clearInterval(wait); if (!offline) drainRetryQueue(); }
    }, 200);
  }

  function chooseQuickReply(botId, idx) {
    if (busy) return;
    var bot = findMsg(botId);
    if (!bot || !bot.buttons || !bot.buttons[idx] || typeof bot.chosen === "number") return;
    var b = bot.buttons[idx];
    bot.chosen = idx;
    refreshMessage(bot);
    var m = { id: newId(), role: "user", text: b.title, payload: b.payload || b.title, ts: Date.now() };
    transcript.push(m);
    appendMessage(m);
    saveTranscript();
    deliver(m).then(focusInput);
  }

  function rate(botId, dir) {
    if (busy) return;
    var bot = findMsg(botId);
    if (!bot || !bot.rate || bot.rated || bot.ratePending) return;
    var payload = dir === "up" ? bot.rate.up : bot.rate.down;
    var gen = generation;
    bot.ratePending = dir;
    refreshMessage(bot);
    setBusy(true);
    postMessage(payload).then(function (replies) {
      if (gen !== generation) return;
      delete bot.ratePending;
      bot.rated = dir;
      refreshMessage(bot);
      addBotReplies(replies);
      saveTranscript();
    }, function () {
      if (gen !== generation) return;
      delete bot.ratePending;
      refreshMessage(bot);
      goOffline();
    }).then(function () {
      if (gen === generation) setBusy(false);
      focusInput();
    });
  }

  function newConversation() {
    if (!window.confirm("Start a new conversation? This clears the current chat on this device.")) return;
    generation++;
    retryQueue = [];
    transcript = [];
    storeRemove(TRANSCRIPT_KEY);
    sender = newId();
    storeSet(SENDER_KEY, sender);
    setBusy(false);
    renderAll();
    els.text.value = "";
    autoGrow();
    updateCount();
    focusInput();
  }

  // ------------------------------------------------------------------ composer
  function focusInput() {
    try { els.text.focus({ preventScroll: true }); } catch (e) { els.text.focus(); }
  }

  function autoGrow() {
    var t = els.text;
    t.style.height = "auto";
    t.style.height = Math.min(t.scrollHeight, 160) + "px";
  }

  function updateCount() {
    var n = els.text.value.length;
    if (n >= MAX_LEN - 200) {
      els.count.textContent = n + " / " + MAX_LEN;
      els.count.classList.toggle("at-limit", n >= MAX_LEN);
    } else {
      els.count.textContent = "";
      els.count.classList.remove("at-limit");
    }
  }

  function submitComposer() {
    if (busy) return;
    var value = els.text.value;
    if (sendText(value)) {
      els.text.value = "";
      autoGrow();
      updateCount();
    }
    focusInput();
  }

  // ------------------------------------------------------------------ config
  function applyConfig(data) {
    if (data && typeof data === "object") {
      if (typeof data.rasa_url === "string" && data.rasa_url.trim()) config.rasa_url = data.rasa_url.trim();
      if (typeof data.shop_name === "string" && data.shop_name.trim()) config.shop_name = data.shop_name.trim();
    }
    config.rasa_url = config.rasa_url.replace(/\/+$/, "");
    els.shopName.textContent = config.shop_name;
    els.brandMark.textContent = shopInitial();
    document.title = config.shop_name + " \u2014 Customer help";
    var typingAvatar = els.typing.querySelector(".avatar");
    if (typingAvatar) typingAvatar.setAttribute("data-initial", shopInitial());
  }

  function loadConfig() {
    return fetchWithTimeout("/config.json", { cache: "no-store" }, HEALTH_TIMEOUT_MS)
      .then(function (res) { return res.ok ? res.json() : null; })
      .catch(function () { return null; })
      .then(applyConfig);
  }

  // ------------------------------------------------------------------ init
  function init() {
    els.messages = $("messages");
    els.scroller = $("scroller");
    els.typing = $("typing");
    els.status = $("status");
    els.text = $("text");
    els.send = $("send");
    els.form = $("composer");
    els.count = $("count");
    els.empty = $("empty-state");
    els.shopName = $("shop-name");
    els.brandMark = $("brand-mark");
    els.newChat = $("new-chat");

    els.text.setAttribute("maxlength", String(MAX_LEN));
    sender = loadSender();
    transcript = loadTranscript();
    renderAll();

    els.form.addEventListener("submit", function (e) { e.preventDefault(); submitComposer(); });
    els.text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submitComposer();
      }
    });
    els.text.addEventListener("input", function () { autoGrow(); updateCount(); });
    els.newChat.addEventListener("click", newConversation);
    window.addEventListener("online", function () { if (offline) poll(); });

    focusInput();
    // Messages typed before the config arrives wait for it.
    setBusy(true);
    els.typing.hidden = true;
    loadConfig().then(function () {
      // re-render so avatars use the configured shop initial
      renderAll();
      setBusy(false);
      checkHealth().then(function (ok) { if (!ok) goOffline(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
