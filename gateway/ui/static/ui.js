// oibus dashboard: the few things a server-rendered page cannot do by itself.
// - lease countdowns tick every second;
// - an intent's event log follows the log live (SSE, resumed by the browser's
//   Last-Event-ID after a drop, so nothing is missed or shown twice);
// - graphs are drawn by cytoscape (vendored) and redrawn as statuses change.
// No inline script and no eval anywhere: the pages' Content-Security-Policy forbids both.
"use strict";

(function () {
  const COLOURS = {
    draft: "#9aa5b1", active: "#2f80ed", blocked: "#f2994a",
    suspended_awaiting_input: "#9b51e0", completed: "#27ae60", abandoned: "#eb5757",
  };
  const EVENTS_SHOWN = 500;

  function span(seconds) {
    const s = Math.abs(seconds);
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function countdowns() {
    const now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      const left = (Date.parse(el.dataset.expires) - now) / 1000;
      el.textContent = left > 0 ? "in " + span(left) : "expired " + span(-left) + " ago";
      el.classList.toggle("bad", left <= 0);
      el.classList.toggle("warn", left > 0 && left < 10);
    });
  }

  function eventItem(id, data) {
    const li = document.createElement("li");
    li.dataset.id = id;
    li.className = "new";
    const parts = [
      ["span", "seq", "#" + data.sequence],
      ["time", "", data.created_at || ""],
      ["b", "etype", data.oibus_event_type || data.event_type],
      ["span", "actor", data.actor],
    ];
    parts.forEach(function (p) {
      const el = document.createElement(p[0]);
      if (p[1]) el.className = p[1];
      el.textContent = p[2];
      li.appendChild(el);
      li.appendChild(document.createTextNode(" "));
    });
    if (data.payload && Object.keys(data.payload).length) {
      const code = document.createElement("code");
      code.textContent = JSON.stringify(data.payload);
      li.appendChild(code);
    }
    return li;
  }

  function liveLog(list) {
    const state = document.getElementById("live-state");
    const source = new EventSource(list.dataset.live);
    const say = function (text, cls) {
      if (!state) return;
      state.textContent = text;
      state.className = cls;
    };
    source.onopen = function () { say("live", "ok"); };
    source.onerror = function () { say("reconnecting…", "warn"); };
    const onFrame = function (msg) {
      if (!msg.lastEventId || list.querySelector('[data-id="' + CSS.escape(msg.lastEventId) + '"]')) return;
      let data;
      try { data = JSON.parse(msg.data); } catch (e) { return; }
      list.appendChild(eventItem(msg.lastEventId, data));
      while (list.children.length > EVENTS_SHOWN) list.removeChild(list.firstElementChild);
      list.scrollTop = list.scrollHeight;
      list.dataset.count = String(list.children.length);
    };
    list.dataset.types.split(" ").forEach(function (t) { source.addEventListener(t, onFrame); });
    source.addEventListener("error", function (msg) {
      if (msg.data) say("the bus failed: reconnecting", "bad");
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function graphElements(data) {
    const nodes = data.nodes.map(function (n) {
      return { group: "nodes", data: { id: n.id, label: n.title, status: n.status, root: n.id === data.root } };
    });
    // a depends_on edge names the waiting intent as its source: drawn the other way, so
    // an arrow runs from what is needed to what needs it (and from a parent to a child)
    const edges = data.edges.map(function (e) {
      const from = e.kind === "depends_on" ? e.target : e.source;
      const to = e.kind === "depends_on" ? e.source : e.target;
      return { group: "edges", data: { id: e.kind + ":" + from + ">" + to, source: from, target: to, kind: e.kind } };
    });
    return nodes.concat(edges);
  }

  function shape(data) {
    return data.nodes.map(function (n) { return n.id; }).sort().join(",") + "|" +
      data.edges.map(function (e) { return e.kind + e.source + e.target; }).sort().join(",");
  }

  function describe(holder, data) {
    const agg = data.aggregate;
    const aggregate = document.getElementById("aggregate");
    if (aggregate) {
      const parts = Object.keys(agg.by_status).filter(function (s) { return agg.by_status[s]; })
        .map(function (s) { return s + " " + agg.by_status[s]; });
      aggregate.textContent = agg.total + " intents, " + agg.completion_percentage + "% completed" +
        (parts.length ? " (" + parts.join(", ") + ")" : "");
    }
    const cut = document.getElementById("graph-cut");
    if (cut) cut.hidden = !data.truncated;
    holder.dataset.nodes = String(data.nodes.length);
    holder.dataset.statuses = JSON.stringify(
      Object.fromEntries(data.nodes.map(function (n) { return [n.id, n.status]; })));
  }

  function graph(holder) {
    let cy = null;
    let seen = "";
    const layout = function (data) {
      const roots = data.nodes.some(function (n) { return n.id === data.root; }) ? [data.root] : undefined;
      return { name: "breadthfirst", directed: true, roots: roots, spacingFactor: 1.1, padding: 24, animate: false };
    };
    const draw = function (data) {
      const now = shape(data);
      if (cy === null) {
        cy = window.cytoscape({
          container: holder,
          elements: graphElements(data),
          style: [
            { selector: "node", style: {
              "background-color": function (n) { return COLOURS[n.data("status")] || "#888"; },
              "label": "data(label)", "font-size": 11, "text-wrap": "ellipsis", "text-max-width": 140,
              "text-valign": "bottom", "text-margin-y": 4, "width": 26, "height": 26,
              "border-width": 2, "border-color": "#fff" } },
            { selector: "node[?root]", style: { "border-color": "#18202c", "border-width": 4 } },
            { selector: "edge", style: {
              "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1.5,
              "line-color": "#9aa5b1", "target-arrow-color": "#9aa5b1" } },
            { selector: "edge[kind = 'parent']", style: { "line-style": "dashed" } },
          ],
          layout: layout(data),
        });
        cy.on("tap", "node", function (evt) {
          window.location.href = "/ui/intents/" + encodeURIComponent(evt.target.id());
        });
      } else if (now !== seen) {
        cy.elements().remove();
        cy.add(graphElements(data));
        cy.layout(layout(data)).run();
      } else {
        data.nodes.forEach(function (n) {
          const node = cy.getElementById(n.id);
          node.data("status", n.status);
          node.data("label", n.title);
        });
        cy.style().update();
      }
      seen = now;
      describe(holder, data);
      holder.oibusGraph = cy;  // the drawn graph, for the console and the browser tests
      holder.dataset.ready = "yes";
    };
    const load = function () {
      fetch(holder.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("status " + r.status);
          return r.json();
        })
        .then(draw)
        .catch(function (e) { holder.dataset.error = String(e); })
        .finally(function () { setTimeout(load, Number(holder.dataset.refresh) || 3000); });
    };
    load();
  }

  // a request htmx made was refused (a chunk of a replay, a refresh): say why in place
  // of the part it would have replaced, instead of leaving it as it was
  document.addEventListener("htmx:responseError", function (evt) {
    const target = evt.detail.target;
    if (!target) return;
    const xhr = evt.detail.xhr;
    const doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    const said = doc.getElementById("error-message");
    const p = document.createElement("p");
    p.className = "error";
    p.id = "request-error";
    p.textContent = "Refused (" + xhr.status + "): " + (said ? said.textContent : xhr.statusText);
    target.replaceChildren(p);
  });

  document.addEventListener("DOMContentLoaded", function () {
    countdowns();
    setInterval(countdowns, 1000);
    const list = document.getElementById("events");
    if (list && list.dataset.live && window.EventSource) liveLog(list);
    const holder = document.getElementById("graph");
    if (holder && window.cytoscape) graph(holder);
  });
})();
