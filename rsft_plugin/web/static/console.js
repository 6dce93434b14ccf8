/* rsft operator console — plain JavaScript, no build step.
 *
 * The server renders a shell per page (<body data-view="inbox" data-arg="...">); this script fills #view from
 * the operator JSON API under /api (same origin, session cookie). State-changing requests carry the session's
 * CSRF token (meta csrf-token) in X-CSRF-Token. Text from the log is only ever inserted with textContent.
 */
(function () {
  "use strict";

  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var view = document.body.getAttribute("data-view");
  var arg = document.body.getAttribute("data-arg") || "";
  var root = document.getElementById("view");
  var notice = document.getElementById("notice");
  var badge = document.getElementById("round-badge");
  var onRoundChange = null; // set by views that show rounds, called when the newest round changes
  var lastRoundKey = null;

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = value;
        else if (key === "class") node.className = value;
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : value);
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function render() {
    clear(root);
    for (var i = 0; i < arguments.length; i++) append(root, arguments[i]);
    root.setAttribute("aria-busy", "false");
  }
  function pct(x, digits) { return typeof x === "number" ? (x * 100).toFixed(digits === undefined ? 1 : digits) + " %" : "–"; }
  function num(x, digits) { return typeof x === "number" ? x.toFixed(digits === undefined ? 2 : digits) : "–"; }
  function when(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function shortId(id) { return id && id.length > 14 ? id.slice(0, 8) + "…" + id.slice(-4) : id; }
  function ratingMark(r) { return r === 1 ? "👍" : r === 0 ? "👎" : "–"; }
  // What a customer told us about a turn besides 👍/👎 (the log's signals).
  function signalNote(s) {
    return { choice: "Picked “" + s.reply_key + "” under “Was it one of these?”", none_of_these: "None of the choices was it",
             reask: "Asked again right after (weak 👎)", asked_human: "Asked for a person right after (weak 👎)",
             thanks: "Said thanks right after (weak 👍)",
             resolved: "Asked again in other words; “" + s.reply_key + "” was it",
             label: "Labelled by an operator: “" + s.reply_key + "” was the right answer" }[s.kind] || s.kind;
  }
  function statusBadge(status) { return h("span", { class: "badge status-" + status, text: status }); }
  function progressBar(fraction, label) {
    var value = Math.max(0, Math.min(1, fraction || 0));
    return h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                      "aria-valuenow": String(Math.round(value * 100)), "aria-label": label || "progress" },
             h("div", { class: "progress-fill", style: "width:" + (value * 100).toFixed(1) + "%" }));
  }
  function table(headers, rows, cls) {
    return h("div", { class: "table-wrap" },
      h("table", { class: cls || "" },
        h("thead", null, h("tr", null, headers.map(function (x) { return h("th", { scope: "col", text: x }); }))),
        h("tbody", null, rows)));
  }
  function section(title, body, extra) {
    return h("section", { class: "card" }, h("h2", { text: title }), extra || null, body);
  }
  function showNotice(text, kind) {
    notice.textContent = text;
    notice.className = "notice " + (kind || "info");
    notice.hidden = false;
  }
  function hideNotice() { notice.hidden = true; }

  function api(method, url, body) {
    var options = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      options.headers["X-CSRF-Token"] = csrf;
      if (body !== undefined) {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
    }
    return fetch(url, options).then(function (res) {
      if (res.status === 401) {
        window.location.href = "/console/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        throw new Error("your session ended; please log in again");
      }
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) {
          var err = new Error(data.error || ("the server answered " + res.status));
          err.status = res.status;
          throw err;
        }
        return data;
      });
    });
  }
  function failed(err) {
    root.setAttribute("aria-busy", "false");
    showNotice(err.message || String(err), "error");
  }

  /** A modal confirmation; resolves true when the operator confirms. */
  function confirmAction(title, text, okLabel) {
    var dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(title + "\n\n" + text));
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = okLabel || "Confirm";
    dialog.returnValue = "cancel";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "ok");
      });
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  }

  // ------------------------------------------------------------------ live round status (header badge)
  function pollStatus() {
    api("GET", "/api/status").then(function (status) {
      var round = status.round;
      var running = round && round.status === "running";
      clear(badge);
      var recent = round && (running || Date.now() - Date.parse(round.finished_at || 0) < 10 * 60 * 1000);
      if (recent) {
        append(badge, h("a", { href: "/console/rounds/" + round.id },
          "Round " + round.id + " · ", running ? round.stage + " " + pct(round.progress, 0) : round.status));
        if (running) append(badge, progressBar(round.progress, "round progress"));
      }
      var servers = serversText(status.servers);
      if (servers) append(badge, h("span", { class: "servers", title: status.servers.failure || "", text: servers }));
      badge.hidden = !recent && !servers;
      var key = round ? round.id + ":" + round.status + ":" + round.stage + ":" + round.progress : "none";
      if (key !== lastRoundKey) {
        var first = lastRoundKey === null;
        lastRoundKey = key;
        if (!first && onRoundChange) onRoundChange(status);
      }
      setTimeout(pollStatus, running ? 1000 : 4000);
    }, function () { setTimeout(pollStatus, 5000); });
  }

  // The servers of `rsft serve`, when something is worth a look: "actions restarted 2×", or its state.
  function serversText(supervision) {
    if (!supervision) return "";
    var parts = Object.keys(supervision.servers || {}).filter(function (name) {
      return supervision.servers[name].restarts > 0;
    }).map(function (name) { return name + " restarted " + supervision.servers[name].restarts + "×"; });
    if (supervision.state !== "running") parts.unshift("servers " + supervision.state);
    return parts.join(" · ");
  }

  function retrainButton() {
    return h("button", { type: "button", class: "primary", id: "retrain", onclick: function () {
      confirmAction("Retrain now?", "Start a rejection-sampling fine-tuning round on the conversations logged so far. " +
        "The live model is replaced only if the new one passes the gate.", "Start round").then(function (ok) {
        if (!ok) return;
        api("POST", "/api/rounds").then(function () {
          showNotice("Round started; its progress shows at the top of the page.", "info");
          lastRoundKey = "started";
          setTimeout(pollStatus, 300);
        }, failed);
      });
    } }, "Retrain now");
  }

  // ------------------------------------------------------------------ inbox
  var INBOX_KEYS = ["rating", "sort", "score_below", "topic", "version", "since", "until", "q", "offset"];

  function viewInbox() {
    var params = new URLSearchParams(window.location.search);
    load();

    function load() {
      var query = new URLSearchParams();
      INBOX_KEYS.forEach(function (k) { if (params.get(k)) query.set(k, params.get(k)); });
      api("GET", "/api/conversations?" + query.toString()).then(draw, failed);
    }
    function go(changes) {
      Object.keys(changes).forEach(function (k) { if (changes[k]) params.set(k, changes[k]); else params.delete(k); });
      var qs = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : ""));
      hideNotice();
      load();
    }
    function select(name, label, options, value) {
      return h("label", { class: "field" }, h("span", { text: label }),
        h("select", { name: name, id: "filter-" + name },
          options.map(function (o) { return h("option", { value: o[0], selected: o[0] === value }, o[1]); })));
    }
    function draw(data) {
      var q = data.query;
      var facets = data.facets;
      var low = data.low_score;
      var form = h("form", { class: "filters", id: "filters", role: "search", onsubmit: function (e) {
        e.preventDefault();
        var f = e.target;
        go({ rating: f.rating.value === "any" ? "" : f.rating.value, sort: f.sort.value === "newest" ? "" : f.sort.value,
             score_below: f.low.checked ? String(low) : "", topic: f.topic.value, version: f.version.value,
             since: f.since.value, until: f.until.value, q: f.q.value.trim(), offset: "" });
      } },
        select("rating", "Rating", [["any", "Any"], ["down", "👎 only"], ["up", "👍 only"], ["rated", "Rated"], ["unrated", "Unrated"], ["to_label", "To label: missed, no right answer yet"]], q.rating),
        select("sort", "Order", [["newest", "Newest first"], ["down_first", "👎 first"], ["lowest_score", "Lowest score first"]], q.sort),
        h("label", { class: "field check" }, h("input", { type: "checkbox", name: "low", id: "filter-low", checked: q.score_below !== null }),
          h("span", { text: "Low score (< " + num(low) + ")" })),
        select("topic", "Answer topic", [["", "All topics"]].concat(facets.topics.map(function (t) { return [t, t]; })), q.topic || ""),
        select("version", "Model version", [["", "All versions"]].concat(facets.versions.map(function (v) { return [v, v]; })), q.version || ""),
        h("label", { class: "field" }, h("span", { text: "From" }), h("input", { type: "date", name: "since", value: q.since || "" })),
        h("label", { class: "field" }, h("span", { text: "To" }), h("input", { type: "date", name: "until", value: q.until || "" })),
        h("label", { class: "field grow" }, h("span", { text: "Search" }),
          h("input", { type: "search", name: "q", id: "filter-q", value: q.q || "", placeholder: "words in a question or answer, or a sender id", maxlength: "200" })),
        h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary", id: "apply-filters" }, "Apply"),
          h("button", { type: "button", class: "secondary", onclick: function () { params = new URLSearchParams(); go({}); } }, "Reset")));
      // Changing a select applies it at once; text and dates wait for Apply / Enter.
      form.rating.addEventListener("change", function () { form.requestSubmit(); });
      form.sort.addEventListener("change", function () { form.requestSubmit(); });
      form.low.addEventListener("change", function () { form.requestSubmit(); });
      form.topic.addEventListener("change", function () { form.requestSubmit(); });
      form.version.addEventListener("change", function () { form.requestSubmit(); });

      var rows = data.conversations.map(function (c) {
        var href = "/console/conversations/" + encodeURIComponent(c.sender_id);
        return h("tr", { class: c.down ? "has-down" : "" },
          h("td", { class: "nowrap", text: when(c.last_at) }),
          h("td", null, h("a", { href: href, class: "conversation-link", "data-sender": c.sender_id, title: c.sender_id }, shortId(c.sender_id))),
          h("td", { class: "question", text: c.question }),
          h("td", { class: "num", text: c.turns }),
          h("td", { class: "num", text: c.up || "" }),
          h("td", { class: "num down", text: c.down ? "👎 " + c.down : "" }),
          h("td", { class: "num" + (c.min_score < low ? " low" : ""), text: num(c.min_score) }),
          h("td", { text: c.versions.join(", ") }));
      });
      var start = q.offset + 1;
      var end = q.offset + data.conversations.length;
      var pager = h("div", { class: "pager" },
        h("span", { class: "muted", text: data.total ? "Conversations " + start + "–" + end + " of " + data.total : "" }),
        h("button", { type: "button", class: "secondary", disabled: q.offset === 0, onclick: function () {
          go({ offset: String(Math.max(0, q.offset - q.limit)) || "" }); } }, "← Newer"),
        h("button", { type: "button", class: "secondary", disabled: end >= data.total, onclick: function () {
          go({ offset: String(q.offset + q.limit) }); } }, "Older →"));
      render(form,
        h("p", { class: "muted" }, facets.conversations + " conversations logged" +
          (facets.first_at ? ", " + when(facets.first_at) + " to " + when(facets.last_at) : "") +
          ". A conversation is listed when one of its turns matches every filter."),
        data.conversations.length
          ? table(["Last turn", "Conversation", "Matching question", "Turns", "👍", "👎", "Lowest score", "Versions"], rows, "inbox")
          : h("p", { class: "empty", id: "no-conversations", text: "No conversation matches these filters." }),
        pager);
    }
  }

  // ------------------------------------------------------------------ conversation
  // Who answered: a bank answer, a reply the generative kind wrote (turn.writing), or nothing understood.
  function botLabel(t) {
    if (t.writing && !t.writing.fallback) return "Written reply · grounded in " + t.writing.grounding_ids.join(", ") + " (" + t.answer_topic + ")";
    if (t.writing && t.answer_id) return "Grounding answer · " + t.answer_id + " (not written: " + t.writing.reason + ")";
    return t.answer_id ? "Answer · " + t.answer_id + (t.answer_topic !== t.answer_id ? " (" + t.answer_topic + ")" : "") : "Not answered · " + (t.reply_key || t.answer_topic);
  }

  function writingNote(w) {
    return "writer: " + w.prompt_tokens + " prompt + " + w.new_tokens + " new tokens in " + Math.round(w.writer_ms) + " ms" +
      (w.fallback ? " · served the grounding answer (" + w.reason + ")" : "") + " · grounding " + w.grounding_ids.join(", ");
  }

  // "Right answer": the operator names the bank answer a turn should have had; the next round learns it (labels.py).
  function labelForm(t, answers) {
    var labels = (t.signals || []).filter(function (s) { return s.kind === "label"; });
    var current = labels.length ? labels[labels.length - 1].reply_key : "";
    var select = h("select", { name: "answer_id", "aria-label": "Right answer for turn " + t.id },
      h("option", { value: "" }, "Choose the right answer…"),
      answers.map(function (a) {
        return h("option", { value: a.id, selected: a.id === current }, a.id + (a.topic !== a.id ? " (" + a.topic + ")" : ""));
      }));
    return h("form", { class: "label-form", onsubmit: function (e) {
      e.preventDefault();
      if (!select.value) return;
      api("POST", "/api/turns/" + encodeURIComponent(t.id) + "/label", { answer_id: select.value }).then(function () {
        viewConversation();
        showNotice("Labelled: the next round learns “" + select.value + "” for this question.", "info");
      }, failed);
    } }, h("label", null, "Right answer ", select), h("button", { type: "submit", class: "secondary" }, "Save label"));
  }

  function viewConversation() {
    Promise.all([api("GET", "/api/conversations/" + encodeURIComponent(arg)), api("GET", "/api/answers")]).then(function (got) {
      var data = got[0], answers = got[1].answers;
      document.getElementById("page-title").textContent = "Conversation " + shortId(data.sender_id);
      var turns = data.turns.map(function (t, i) {
        var alternatives = table(["#", "Answer", "Topic", "Cosine", "Policy p"], (t.top_k || []).map(function (k, j) {
          return h("tr", { class: k.answer_id === t.answer_id ? "chosen" : "" },
            h("td", { class: "num", text: j + 1 }), h("td", { text: k.answer_id }), h("td", { text: k.topic }),
            h("td", { class: "num", text: num(k.cosine) }), h("td", { class: "num", text: pct(k.probability) }));
        }), "compact");
        return h("article", { class: "turn card rating-" + (t.rating === 1 ? "up" : t.rating === 0 ? "down" : "none"), "data-turn-id": t.id },
          h("header", { class: "turn-head" },
            h("span", { class: "turn-no", text: "Turn " + (i + 1) }),
            h("span", { class: "muted", text: when(t.created_at) }),
            h("span", { class: "badge version", text: t.model_version }),
            h("span", { class: "score" + (t.score < 0.4 ? " low" : ""), text: "score " + num(t.score) }),
            h("span", { class: "rating-mark", title: t.rating === null ? "not rated" : "rated", text: ratingMark(t.rating) })),
          h("div", { class: "bubble user" }, h("span", { class: "who", text: "Customer" }), h("p", { class: "turn-question", text: t.user_text })),
          h("div", { class: "bubble bot" }, h("span", { class: "who", text: botLabel(t) }),
            h("p", { class: "turn-answer", text: t.answer_text }),
            t.writing ? h("p", { class: "turn-writing muted", text: writingNote(t.writing) }) : null),
          (t.signals || []).length ? h("p", { class: "turn-signals" }, (t.signals || []).map(signalNote).join(" · ")) : null,
          labelForm(t, answers),
          h("details", { class: "alternatives", open: true }, h("summary", null, "Top-" + (t.top_k || []).length + " alternatives · p " + pct(t.probability) +
            (typeof t.latency_ms === "number" ? " · " + Math.round(t.latency_ms) + " ms" : "")), alternatives));
      });
      var handoffs = (data.handoffs || []).map(function (x) {
        var contact = x.contact_state === "given" ? "reply to " + x.contact : x.contact_state === "declined" ? "declined to give an email" : "no email given (yet)";
        return h("article", { class: "card handoff-note", "data-handoff-id": x.id },
          h("header", { class: "turn-head" },
            h("span", { class: "turn-no", text: "Hand-off #" + x.id }),
            h("span", { class: "muted", text: when(x.created_at) }),
            h("span", { class: "badge status-" + x.status, text: x.status }),
            x.model_version ? h("span", { class: "badge version", text: x.model_version }) : null),
          h("p", { text: "Asked for a person (" + x.reason.replace(/_/g, " ") + ") · " + contact + (x.taken_by ? " · taken by " + x.taken_by : "") }),
          h("p", null, h("a", { href: "/console/handoffs" }, "Hand-off queue →")));
      });
      render(h("p", { class: "summary" },
        h("span", { text: data.turns.length + " turns · " + when(data.first_at) + " – " + when(data.last_at) }),
        h("span", { text: "👍 " + data.up + "  👎 " + data.down }),
        h("span", { text: "versions " + data.versions.join(", ") }),
        h("span", { class: "muted mono", text: data.sender_id })),
        handoffs,
        turns,
        h("p", null, h("a", { href: "/console/inbox" }, "← Back to the inbox")));
    }, failed);
  }

  // ------------------------------------------------------------------ answer bank
  function viewAnswers() {
    var pollTimer = null;
    load();

    function load() { api("GET", "/api/answers").then(draw, failed); }

    function publishPanel(data) {
      var latest = data.publications[0];
      var running = latest && latest.status === "running";
      clearTimeout(pollTimer);
      if (running) pollTimer = setTimeout(load, 1000);
      return h("section", { class: "card publish", id: "publish-panel" },
        h("h2", { text: "Publish" }),
        h("p", null, data.pending
          ? data.pending + " answer(s) edited or added since " + (data.live_version || "the live version") + ". Publishing builds a new live version from " +
            (data.live_version || "the live version") + "'s weights and the edited bank — no retraining; later rounds train on it."
          : "The live model (" + (data.live_version || "none") + ") answers from this bank; nothing to publish."),
        h("button", { type: "button", class: "primary", id: "publish", disabled: running || !data.pending, onclick: function () {
          confirmAction("Publish the answer bank?", "A new model version with the edited answers becomes live for every customer.", "Publish").then(function (ok) {
            if (!ok) return;
            api("POST", "/api/publications").then(load, failed);
          });
        } }, running ? "Publishing…" : "Publish bank"),
        latest ? h("p", { class: "publication", id: "publication-status" }, statusBadge(latest.status), " ", latest.message || "",
          h("span", { class: "muted", text: " · " + when(latest.finished_at || latest.started_at) })) : null);
    }

    function addForm(data) {
      return h("details", { class: "card add-answer" }, h("summary", null, "Add an answer"),
        h("form", { class: "stack", id: "add-answer", onsubmit: function (e) {
          e.preventDefault();
          var f = e.target.elements; // (form.id would be the form's own id attribute)
          var id = f.namedItem("id").value.trim();
          api("POST", "/api/answers", { id: id, topic: f.namedItem("topic").value.trim() || id,
            category: f.namedItem("category").value.trim(), text: f.namedItem("text").value, note: f.namedItem("note").value }).then(function () {
            showNotice("Added " + id + ". Publish the bank to make it live.", "info");
            load();
          }, failed);
        } },
          h("div", { class: "row" },
            h("label", { class: "field" }, h("span", { text: "Id" }), h("input", { name: "id", required: true, pattern: "[a-z][a-z0-9_]{1,63}", placeholder: "gift_wrapping" })),
            h("label", { class: "field" }, h("span", { text: "Topic (default: the id)" }), h("input", { name: "topic", pattern: "[a-z][a-z0-9_]{1,63}" })),
            h("label", { class: "field" }, h("span", { text: "Category" }), h("input", { name: "category", list: "categories", placeholder: "orders" }))),
          h("datalist", { id: "categories" }, data.categories.map(function (c) { return h("option", { value: c }); })),
          h("label", { class: "field" }, h("span", { text: "Text (slots: {order_id}, {email}, {amount})" }), h("textarea", { name: "text", rows: "3", required: true, minlength: "10", maxlength: "2000" })),
          h("label", { class: "field" }, h("span", { text: "Note (why)" }), h("input", { name: "note", maxlength: "300" })),
          h("div", null, h("button", { type: "submit", class: "primary" }, "Add answer"))));
    }

    function editRow(answer, row) {
      var form = h("form", { class: "stack edit-form", onsubmit: function (e) {
        e.preventDefault();
        api("PUT", "/api/answers/" + encodeURIComponent(answer.id), { text: form.text.value, category: form.category.value, note: form.note.value })
          .then(function () { showNotice("Saved a new revision of " + answer.id + ". Publish the bank to make it live.", "info"); load(); }, failed);
      } },
        h("label", { class: "field" }, h("span", { text: "Text" }), h("textarea", { name: "text", rows: "4", required: true, minlength: "10", maxlength: "2000" }, answer.text)),
        h("div", { class: "row" },
          h("label", { class: "field" }, h("span", { text: "Category" }), h("input", { name: "category", value: answer.category })),
          h("label", { class: "field grow" }, h("span", { text: "Note (why)" }), h("input", { name: "note", maxlength: "300" }))),
        h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Save revision"),
          h("button", { type: "button", class: "secondary", onclick: load }, "Cancel")));
      var cell = h("td", { colspan: "5" }, form);
      row.parentNode.replaceChild(h("tr", { class: "editing" }, cell), row);
      form.text.focus();
    }

    function history(answer, button) {
      api("GET", "/api/answers/" + encodeURIComponent(answer.id) + "/revisions").then(function (data) {
        var list = h("ol", { class: "revisions", reversed: true },
          data.revisions.map(function (r) {
            return h("li", null, h("strong", { text: "#" + r.id + " " + r.action }), h("span", { class: "muted", text: " " + when(r.created_at) + (r.note ? " — " + r.note : "") }),
              h("p", { text: r.text }));
          }),
          data.original !== null ? h("li", null, h("strong", { text: "data/answers.yml" }), h("p", { text: data.original })) : null);
        button.parentNode.replaceChild(list, button);
      }, failed);
    }

    function draw(data) {
      var rows = data.answers.map(function (a) {
        var row = h("tr", { "data-answer": a.id });
        append(row, [
          h("td", null, h("strong", { class: "mono", text: a.id }), h("div", { class: "muted", text: a.topic !== a.id ? "topic " + a.topic : "" })),
          h("td", { text: a.category }),
          h("td", null, statusBadge(a.state === "live" ? "live" : a.state === "new" ? "new" : "edited")),
          h("td", { class: "answer-text" }, h("p", { text: a.text }),
            a.live_text ? h("p", { class: "live-text" }, h("span", { class: "muted", text: "Live now: " }), a.live_text) : null),
          h("td", { class: "actions" },
            h("button", { type: "button", class: "secondary small", onclick: function () { editRow(a, row); } }, "Edit"),
            a.revisions ? h("button", { type: "button", class: "link-button small", onclick: function (e) { history(a, e.target); } }, a.revisions + " revision(s)") : null)
        ]);
        return row;
      });
      render(publishPanel(data), addForm(data),
        section("Answers (" + data.answers.length + ")", table(["Id", "Category", "State", "Text", ""], rows, "answers")));
    }
  }

  // ------------------------------------------------------------------ rounds
  function viewRounds() {
    onRoundChange = load;
    load();
    function load() { api("GET", "/api/rounds").then(draw, failed); }
    function draw(data) {
      var rows = data.rounds.map(function (r) {
        return h("tr", { "data-round": r.id },
          h("td", null, h("a", { href: "/console/rounds/" + r.id }, "Round " + r.id)),
          h("td", null, statusBadge(r.status),
            r.status === "running" ? h("div", { class: "stage" }, r.stage + " " + pct(r.progress, 0), progressBar(r.progress, "round " + r.id + " progress")) : null),
          h("td", { class: "nowrap", text: when(r.started_at) }),
          h("td", { text: r.live_version + (r.new_version ? " → " + r.new_version : "") }),
          h("td", { text: r.rule }),
          h("td", { class: "num", text: typeof r.accepted === "number" ? r.accepted + " / " + r.candidates : "–" }),
          h("td", { class: "num", text: pct(r.acceptance_rate) }),
          h("td", { class: "num", text: typeof r.live_accuracy === "number" ? pct(r.live_accuracy) + " → " + pct(r.candidate_accuracy) : "–" }),
          h("td", { class: "reason", text: r.reason || r.message || "" }));
      });
      render(h("div", { class: "toolbar" }, retrainButton(),
        h("span", { class: "muted", text: "A round samples answers for logged questions, keeps the good ones by rejection sampling, fine-tunes a copy of the live model and promotes it only if it passes the gate." })),
        data.rounds.length ? table(["Round", "Status", "Started", "Versions", "Rule", "Accepted", "Acceptance", "Held-out accuracy", "Why"], rows, "rounds")
          : h("p", { class: "empty", text: "No round has run yet." }));
    }
  }

  function viewRound() {
    onRoundChange = load;
    load();
    function load() { api("GET", "/api/rounds/" + encodeURIComponent(arg)).then(draw, failed); }
    function examples(title, part, id) {
      var rows = part.examples.map(function (e) {
        return h("tr", null, h("td", { class: "question", text: e.prompt }), h("td", { text: e.answer_id }),
          h("td", { class: "num", text: num(e.q, 3) }), h("td", { class: "num", text: num(e.similarity) }),
          h("td", { class: "num", text: num(e.rating) + " (" + num(e.rating_up, 0) + "👍 " + num(e.rating_down, 0) + "👎)" }),
          h("td", { class: "num", text: num(e.reward) }), h("td", { class: "num", text: pct(e.accept_probability) }));
      });
      return h("section", { class: "card", id: id }, h("h2", { text: title + " (" + part.total + ")" }),
        part.total > part.examples.length ? h("p", { class: "muted", text: "The " + part.examples.length + " with the highest reward; the full set is in the training-examples export." }) : null,
        rows.length ? table(["Prompt (redacted)", "Answer", "q", "Similarity", "Rating", "Reward", "P(accept)"], rows, "compact") : h("p", { class: "muted", text: "None." }));
    }
    function draw(r) {
      document.getElementById("page-title").textContent = "Round " + r.id;
      var s = r.stats || {};
      var g = r.gate || {};
      var facts = [
        ["Status", statusBadge(r.status)], ["Rule", r.rule], ["Live version", r.live_version], ["New version", r.new_version || "–"],
        ["Started", when(r.started_at)], ["Finished", when(r.finished_at)],
        ["Prompts", s.prompts], ["Candidates", s.named_candidates ? s.candidates + " (" + s.named_candidates + " named by customers, not drawn)" : s.candidates], ["Accepted", s.accepted], ["Acceptance rate", pct(s.acceptance_rate)],
        ["Mean reward", num(s.reward_mean)], ["Rated turns used", s.rated_turns_used],
        ["Estimated wrong ratings", typeof s.rating_noise_rate === "number" ? pct(s.rating_noise_rate) : "–"],
        ["Answers trusted by the noise model", typeof s.posterior_trusted === "number" ? s.posterior_trusted : "–"],
        ["Held-out accuracy", typeof g.live_accuracy === "number" ? pct(g.live_accuracy) + " → " + pct(g.candidate_accuracy) : "–"],
        ["Kept-out ratings agreement", typeof g.rated_live === "number" ? pct(g.rated_live) + " → " + pct(g.rated_candidate) + " (" + g.rated_n + ")" : "–"],
        ["Written replies", g.written ? "topic-correct " + pct(g.written.live.topic_correct) + " → " + pct(g.written.candidate.topic_correct) +
          ", similarity " + num(g.written.live.similarity, 3) + " → " + num(g.written.candidate.similarity, 3) + ", violations " +
          pct(g.written.live.violations) + " → " + pct(g.written.candidate.violations) + " (" + g.written.n + " questions)" : "–"],
        ["Gate tests", g.tests && g.tests.length ? g.tests.join(" · ") : "–"],
        ["Fine-tuning", s.finetune ? s.finetune.epochs + " epochs, " + s.finetune.train_pairs + " pairs, " + s.finetune.examples_per_second + " ex/s" : "–"]
      ];
      var perTopic = r.per_topic.map(function (t) {
        return h("tr", { class: t.change < 0 ? "worse" : t.change > 0 ? "better" : "" }, h("td", { text: t.topic }),
          h("td", { class: "num", text: pct(t.live, 0) }), h("td", { class: "num", text: pct(t.candidate, 0) }),
          h("td", { class: "num", text: (t.change > 0 ? "+" : "") + (t.change * 100).toFixed(0) + " pts" }));
      });
      var seconds = Object.keys(r.stage_seconds || {}).map(function (k) { return k + " " + Number(r.stage_seconds[k]).toFixed(1) + " s"; }).join(" · ");
      render(
        h("section", { class: "card verdict status-" + r.status, id: "verdict" }, h("h2", { text: "Outcome" }), h("p", { text: r.verdict }),
          r.status === "running" ? progressBar(r.progress, "round progress") : null,
          seconds ? h("p", { class: "muted", text: "Seconds per stage: " + seconds }) : null),
        section("Numbers", h("dl", { class: "facts" }, facts.map(function (f) { return [h("dt", { text: f[0] }), h("dd", null, f[1] === undefined ? "–" : f[1])]; }))),
        r.plots.length ? section("Plots", h("div", { class: "plots" }, r.plots.map(function (p) {
          return h("figure", null, h("img", { src: "/api/rounds/" + r.id + "/plots/" + p.name, alt: p.title }), h("figcaption", { text: p.title }));
        }))) : null,
        perTopic.length ? section("Held-out accuracy per topic, before → after", table(["Topic", "Live", "Candidate", "Change"], perTopic, "compact")) : null,
        examples("Accepted examples", r.accepted, "accepted"),
        examples("Rejected examples", r.rejected, "rejected"),
        h("p", null, h("a", { href: "/console/rounds" }, "← All rounds")));
    }
  }

  // ------------------------------------------------------------------ models
  function viewModels() {
    onRoundChange = load;
    load();
    function load() { api("GET", "/api/models").then(draw, failed); }
    function act(title, text, label, url, body) {
      confirmAction(title, text, label).then(function (ok) {
        if (!ok) return;
        api("POST", url, body).then(function (result) { showNotice(result.live + " is live (was " + (result.previous || "none") + ").", "info"); load(); }, failed);
      });
    }
    function draw(data) {
      var rows = data.versions.map(function (v) {
        return h("tr", { class: v.live ? "live" : "", "data-version": v.name },
          h("td", null, h("strong", { text: v.name }), v.live ? h("span", { class: "badge status-live", text: "live" }) : null,
            v.guard_rollback ? h("span", { class: "badge status-failed guard-rollback", title: v.guard_rollback, text: "rolled back by the live guard" }) : null),
          h("td", { class: "nowrap", text: when(v.created_at) }),
          h("td", { text: v.parent || "–" }),
          h("td", null, v.round_id !== null ? h("a", { href: "/console/rounds/" + v.round_id }, "Round " + v.round_id) : "–"),
          h("td", { class: "num", text: pct(v.heldout_accuracy) }),
          h("td", { class: "num", text: v.n_answers }),
          h("td", { class: "num remembered", title: "accepted examples this version remembers beside its weights", text: v.remembered }),
          h("td", { class: "num handoff-rate", title: v.handoffs + " hand-offs / " + v.answered_turns + " answered turns",
                    text: (typeof v.handoffs_per_100 === "number" ? v.handoffs_per_100.toFixed(1) : "–") + " (" + v.handoffs + ")" }),
          h("td", { class: "notes", text: v.notes }),
          h("td", { class: "actions" }, v.live ? null : h("button", { type: "button", class: "secondary small promote", onclick: function () {
            act("Promote " + v.name + "?", v.name + " becomes the live model for every customer (now " + data.live + ").", "Promote", "/api/models/" + encodeURIComponent(v.name) + "/promote");
          } }, "Promote")));
      });
      var history = data.history.map(function (e) {
        return h("tr", null, h("td", { class: "nowrap", text: when(e.at) }), h("td", { text: (e.from || "–") + " → " + e.to }), h("td", { text: e.reason }));
      });
      render(
        h("div", { class: "toolbar" }, retrainButton(),
          h("button", { type: "button", class: "secondary", id: "rollback", disabled: !data.previous, onclick: function () {
            act("Roll back to " + data.previous + "?", data.previous + " becomes live again instead of " + data.live + ".", "Roll back", "/api/models/rollback", {});
          } }, data.previous ? "Rollback to " + data.previous : "Rollback"),
          h("span", { class: "muted", text: "Live: " + (data.live || "none") })),
        section("Versions", table(["Version", "Created", "Parent", "Made by", "Held-out", "Answers", "Remembered", "Hand-offs /100 answers", "Notes", ""], rows, "models")),
        section("Live pointer history", history.length ? table(["When", "Change", "Why"], history, "compact") : h("p", { class: "muted", text: "No changes yet." })));
    }
  }

  // ------------------------------------------------------------------ export
  function viewExport() {
    var items = [
      ["training-examples", "Accepted training examples", "Every accepted (prompt, answer) pair of every round, with its reward parts (similarity, rating, q, acceptance probability) and provenance (turn ids, sampling version, rule)."],
      ["conversations", "Conversation log", "Every logged turn: question, answer, topic, model version, score and rating."],
      ["handoffs", "Hand-offs", "Every request to talk to a person: reason, live model version, status, who took it, and the contact (redacted)."]
    ];
    render(h("p", { class: "muted", text: "Customer text is redacted on the way out (emails, phone numbers, card numbers, IBANs, postal codes)." }),
      items.map(function (item) {
        return section(item[1], h("p", { text: item[2] }), h("p", { class: "downloads" },
          h("a", { class: "button secondary", href: "/api/export/" + item[0] + ".jsonl", download: "rsft-" + item[0] + ".jsonl", id: "export-" + item[0] + "-jsonl" }, "Download JSONL"), " ",
          h("a", { class: "button secondary", href: "/api/export/" + item[0] + ".csv", download: "rsft-" + item[0] + ".csv", id: "export-" + item[0] + "-csv" }, "Download CSV")));
      }));
  }

  var VIEWS = { inbox: viewInbox, conversation: viewConversation, answers: viewAnswers, rounds: viewRounds,
                round: viewRound, models: viewModels, export: viewExport,
                handoffs: function () {} };  // rendered on the server (templates/handoffs.html)
  (VIEWS[view] || function () { render(h("p", { text: "Unknown page." })); })();
  pollStatus();
})();
