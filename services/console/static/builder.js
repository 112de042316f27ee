// The segment builder: a form per node of the definition language, checked as you type.
"use strict";
(function () {
  var draft = JSON.parse(document.getElementById("draft").textContent);
  var base = location.pathname.replace(/\/segments\/.*$/, "");
  var LIFECYCLE = ["new", "active", "loyal", "dormant", "churned", "reactivated"];
  var RFM = ["champions", "loyal", "potential_loyalists", "new_customers", "promising",
    "need_attention", "about_to_sleep", "at_risk", "cant_lose_them", "hibernating", "lost"];
  var OPS = ["=", "!=", "<", "<=", ">", ">=", "in", "contains", "exists", "starts_with"];
  var CMP = [">=", ">", "=", "!=", "<", "<="];
  var KINDS = {
    all: function () { return { all: [{ lifecycle: ["active"] }] }; },
    any: function () { return { any: [{ lifecycle: ["active"] }] }; },
    none: function () { return { none: [{ lifecycle: ["churned"] }] }; },
    trait: function () { return { trait: { key: "", op: "=", value: "" } }; },
    geo: function () { return { geo: { within_km: 10, of: [52.52, 13.405] } }; },
    lifecycle: function () { return { lifecycle: ["active"] }; },
    rfm: function () { return { rfm: ["champions"] }; },
    events: function () { return { events: { name: "", aggregate: "count", op: ">=", value: 1, window: "30d" } }; },
    recency: function () { return { recency: { name: "", more_than: "7d" } }; },
    first_seen: function () { return { first_seen: { less_than: "30d" } }; },
    inaction: function () { return { inaction: { did: "", not_did: "", within: "24h" } }; },
    segment: function () { return { segment: "" }; },
  };
  var root = { condition: draft.condition };
  var timer = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  function typed(text) {
    if (text === "true") return true;
    if (text === "false") return false;
    if (text.trim() !== "" && !isNaN(Number(text))) return Number(text);
    return text;
  }
  function input(label, value, onInput, cls) {
    var i = el("input", { value: value === undefined || value === null ? "" : String(value), class: cls || "" });
    i.addEventListener("input", function () { onInput(i.value); changed(); });
    return el("label", {}, [document.createTextNode(label + " "), i]);
  }
  function select(label, options, value, onPick) {
    var s = el("select", {});
    options.forEach(function (o) { var opt = el("option", { value: o, text: o }); if (o === value) opt.selected = true; s.appendChild(opt); });
    s.addEventListener("change", function () { onPick(s.value); changed(true); });
    return el("label", {}, [document.createTextNode(label + " "), s]);
  }
  function optional(body, key, text) { if (text.trim() === "") delete body[key]; else body[key] = text.trim(); }
  function operand(body, box) {
    box.appendChild(select("op", OPS, body.op, function (v) {
      body.op = v;
      // Keep only the operand the operator takes: none, a list, or a value or time.
      if (v === "exists") { delete body.value; delete body.values; delete body.time; }
      else if (v === "in") { delete body.value; delete body.time; body.values = body.values || []; }
      else { delete body.values; if (!("value" in body) && !("time" in body)) body.value = ""; }
    }));
    if (body.op === "in") {
      box.appendChild(input("values (comma separated)", (body.values || []).join(", "), function (v) {
        body.values = v.split(",").map(function (x) { return typed(x.trim()); }).filter(function (x) { return x !== ""; });
        delete body.value; delete body.time;
      }));
    } else if (body.op !== "exists") {
      var isTime = "time" in body;
      box.appendChild(input(isTime ? "time (ISO-8601)" : "value", isTime ? body.time : body.value, function (v) {
        if (isTime) body.time = v; else body.value = typed(v);
        delete body.values;
      }));
      var t = el("input", { type: "checkbox" }); t.checked = isTime;
      t.addEventListener("change", function () {
        if (t.checked) { body.time = String(body.value || ""); delete body.value; } else { body.value = body.time || ""; delete body.time; }
        changed(true);
      });
      box.appendChild(el("label", {}, [t, document.createTextNode(" a time")]));
    }
  }
  function filters(body, box) {
    var list = body.where || [];
    var wrap = el("div", { class: "filters" });
    list.forEach(function (f, i) {
      var row = el("div", { class: "filter", "data-path": "" });
      row.appendChild(input("property", f.property, function (v) { f.property = v; }));
      operand(f, row);
      var x = el("button", { type: "button", class: "small", text: "×" });
      x.addEventListener("click", function () { list.splice(i, 1); if (!list.length) delete body.where; changed(true); });
      row.appendChild(x);
      wrap.appendChild(row);
    });
    var add = el("button", { type: "button", class: "small", text: "+ property filter" });
    add.addEventListener("click", function () { body.where = list; list.push({ property: "", op: "=", value: "" }); changed(true); });
    wrap.appendChild(add);
    box.appendChild(wrap);
  }
  function checks(options, chosen, onChange) {
    var box = el("div", { class: "checks" });
    options.forEach(function (o) {
      var c = el("input", { type: "checkbox", value: o }); c.checked = chosen.indexOf(o) >= 0;
      c.addEventListener("change", function () {
        var now = options.filter(function (x) { return box.querySelector('input[value="' + x + '"]').checked; });
        onChange(now); changed();
      });
      box.appendChild(el("label", {}, [c, document.createTextNode(" " + (o === "cant_lose_them" ? "can't lose them" : o.replace(/_/g, " ")))]));
    });
    return box;
  }
  function node(holder, key, path) {
    var data = holder[key];
    var kind = data && typeof data === "object" ? Object.keys(data)[0] : "segment";
    var body = data[kind];
    var here = path + "." + kind;
    var box = el("div", { class: "node kind-" + kind, "data-path": here });
    var head = el("div", { class: "node-head" });
    head.appendChild(select("", Object.keys(KINDS), kind, function (v) { holder[key] = KINDS[v](); }));
    if (holder !== root) {
      var del = el("button", { type: "button", class: "small remove", text: "remove" });
      del.addEventListener("click", function () {
        if (Array.isArray(holder)) holder.splice(key, 1); else delete holder[key];
        changed(true);
      });
      head.appendChild(del);
    }
    box.appendChild(head);
    if (kind === "all" || kind === "any" || kind === "none") {
      body.forEach(function (_, i) { box.appendChild(node(body, i, here + "[" + i + "]")); });
      var add = el("button", { type: "button", class: "small add", text: "+ condition" });
      add.addEventListener("click", function () { body.push(KINDS.lifecycle()); changed(true); });
      box.appendChild(add);
    } else if (kind === "trait") {
      box.appendChild(input("trait", body.key, function (v) { body.key = v; }));
      operand(body, box);
    } else if (kind === "geo") {
      var of = body.of || ["", ""];
      box.appendChild(input("latitude", of[0], function (v) { body.of = [typed(v), (body.of || of)[1]]; if (!("within_km" in body)) body.within_km = 10; }));
      box.appendChild(input("longitude", of[1], function (v) { body.of = [(body.of || of)[0], typed(v)]; }));
      box.appendChild(input("within km", body.within_km, function (v) { if (v.trim() === "") { delete body.within_km; delete body.of; } else body.within_km = typed(v); }));
      box.appendChild(input("countries", (body.countries || []).join(", "), function (v) { var l = v.split(",").map(function (x) { return x.trim(); }).filter(Boolean); if (l.length) body.countries = l; else delete body.countries; }));
      box.appendChild(input("cities", (body.cities || []).join(", "), function (v) { var l = v.split(",").map(function (x) { return x.trim(); }).filter(Boolean); if (l.length) body.cities = l; else delete body.cities; }));
    } else if (kind === "lifecycle") {
      box.appendChild(checks(LIFECYCLE, body, function (l) { data.lifecycle = l; }));
    } else if (kind === "rfm") {
      box.appendChild(checks(RFM, body, function (l) { data.rfm = l; }));
    } else if (kind === "events") {
      box.appendChild(input("event", body.name, function (v) { body.name = v; }, "event-name"));
      box.appendChild(select("aggregate", ["count", "sum", "min", "max", "avg"], body.aggregate || "count", function (v) { body.aggregate = v; if (v === "count") delete body.property; }));
      if (body.aggregate && body.aggregate !== "count") box.appendChild(input("of property", body.property, function (v) { body.property = v; }));
      box.appendChild(select("is", CMP, body.op || ">=", function (v) { body.op = v; }));
      box.appendChild(input("value", body.value, function (v) { body.value = typed(v); }, "event-value"));
      box.appendChild(input("in the last", body.window, function (v) { optional(body, "window", v); }));
      filters(body, box);
    } else if (kind === "recency") {
      box.appendChild(input("event", body.name, function (v) { body.name = v; }));
      box.appendChild(input("last one more than", body.more_than, function (v) { optional(body, "more_than", v); }));
      box.appendChild(input("less than", body.less_than, function (v) { optional(body, "less_than", v); }));
      box.appendChild(document.createTextNode(" ago"));
      filters(body, box);
    } else if (kind === "first_seen") {
      box.appendChild(input("before (time)", body.before, function (v) { optional(body, "before", v); }));
      box.appendChild(input("after (time)", body.after, function (v) { optional(body, "after", v); }));
      box.appendChild(input("more than … ago", body.more_than, function (v) { optional(body, "more_than", v); }));
      box.appendChild(input("less than … ago", body.less_than, function (v) { optional(body, "less_than", v); }));
    } else if (kind === "inaction") {
      box.appendChild(input("did", body.did, function (v) { body.did = v; }));
      box.appendChild(input("and not", body.not_did, function (v) { body.not_did = v; }));
      box.appendChild(input("within", body.within, function (v) { body.within = v; }));
      filters(body, box);
    } else if (kind === "segment") {
      box.appendChild(input("member of segment", typeof data.segment === "string" ? data.segment : "", function (v) { data.segment = v; }));
    }
    return box;
  }
  function payload() {
    return {
      segment_id: document.getElementById("segment_id").value.trim(),
      display_name: document.getElementById("display_name").value,
      description: document.getElementById("description").value,
      condition: root.condition, mode: draft.mode, expected_version: draft.expected_version,
    };
  }
  function render() {
    var b = document.getElementById("builder");
    b.innerHTML = "";
    b.appendChild(node(root, "condition", "segment.condition"));
    document.getElementById("condition-json").value = JSON.stringify(root.condition, null, 2);
  }
  function showProblems(target, data) {
    target.innerHTML = "";
    var list = el("ul", { class: "problems" });
    (data.fields || []).forEach(function (f) { list.appendChild(el("li", { "data-field": f.field, text: f.field + ": " + f.message })); });
    if (!(data.fields || []).length) list.appendChild(el("li", { text: data.error || "refused" }));
    target.appendChild(list);
    document.querySelectorAll(".node.bad").forEach(function (n) { n.classList.remove("bad"); });
    (data.fields || []).forEach(function (f) {
      var best = null;
      document.querySelectorAll(".node[data-path]").forEach(function (n) { if (f.field.indexOf(n.dataset.path) === 0 && (!best || n.dataset.path.length > best.dataset.path.length)) best = n; });
      if (best) best.classList.add("bad");
    });
  }
  function validate() {
    var v = document.getElementById("validation");
    v.dataset.state = "checking";
    window.cohortflow.postJson(base + "/api/segments/validate", payload()).then(function (r) {
      if (r.status === 200) {
        v.innerHTML = ""; v.appendChild(el("span", { class: "ok", text: "✓ valid" }));
        document.getElementById("definition-yaml").textContent = r.data.yaml;
        document.querySelectorAll(".node.bad").forEach(function (n) { n.classList.remove("bad"); });
        v.dataset.state = "valid";
      } else {
        showProblems(v, r.data); v.dataset.state = "invalid";
        document.getElementById("definition-yaml").textContent = "";
      }
    });
  }
  function changed(rerender) {
    if (rerender) render();
    else document.getElementById("condition-json").value = JSON.stringify(root.condition, null, 2);
    document.getElementById("validation").dataset.state = "pending";
    clearTimeout(timer); timer = setTimeout(validate, 250);
  }
  document.getElementById("apply-json").addEventListener("click", function () {
    try { root.condition = JSON.parse(document.getElementById("condition-json").value); changed(true); }
    catch (e) { showProblems(document.getElementById("validation"), { fields: [{ field: "condition", message: "not JSON: " + e.message }] }); }
  });
  ["segment_id", "display_name", "description"].forEach(function (id) {
    document.getElementById(id).addEventListener("input", function () { changed(); });
  });
  document.getElementById("preview").addEventListener("click", function () {
    var out = document.getElementById("preview-result");
    out.textContent = "computing over the full history…"; out.dataset.state = "running";
    window.cohortflow.postJson(base + "/api/segments/preview", payload()).then(function (r) {
      out.innerHTML = "";
      if (r.status !== 200) { showProblems(out, r.data); out.dataset.state = "error"; return; }
      var d = r.data;
      out.appendChild(el("p", {}, [document.createTextNode("Members: "), el("b", { id: "preview-members", text: String(d.members) }),
        document.createTextNode(" · would enter "), el("b", { id: "preview-entering", text: String(d.entering) }),
        document.createTextNode(" · would exit "), el("b", { id: "preview-exiting", text: String(d.exiting) }),
        document.createTextNode(d.live_version ? " (against live version " + d.live_version + ")" : " (a new segment: everyone would enter)")]));
      out.appendChild(el("p", { class: "muted", text: "History to log position " + d.position + " at " + d.as_of + " · " + d.took_ms + " ms" }));
      [["sample", "Sample"], ["entering_sample", "Would enter"], ["exiting_sample", "Would exit"]].forEach(function (p) {
        if (!d[p[0]].length) return;
        var line = el("p", { class: "sample" }, [el("b", { text: p[1] + ": " })]);
        d[p[0]].forEach(function (id, i) {
          if (i) line.appendChild(document.createTextNode(", "));
          line.appendChild(el("a", { href: base + "/users/" + encodeURIComponent(id), text: id }));
        });
        out.appendChild(line);
      });
      out.dataset.state = "done";
    });
  });
  document.getElementById("publish").addEventListener("click", function () {
    var out = document.getElementById("publish-result");
    out.dataset.state = "running";
    window.cohortflow.postJson(base + "/api/segments/publish", payload()).then(function (r) {
      out.innerHTML = "";
      if (r.status !== 200) { showProblems(out, r.data); out.dataset.state = "refused"; return; }
      out.appendChild(el("p", {}, [document.createTextNode("Published version " + r.data.version + " of "),
        el("a", { href: r.data.url, id: "published-link", text: r.data.segment_id })]));
      out.dataset.state = "published";
      draft.mode = "update"; draft.expected_version = r.data.version;
    });
  });
  render();
  validate();
})();
