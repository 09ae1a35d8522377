/* Search-tree viewer (astro viz tree): an outline of an MCTS tree with lazy rendering.
   Written by us, no libraries: the page must work offline from a single file. Text from the tree (model
   output) is only ever inserted with textContent, never as HTML. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tree-data").textContent);
  var nodes = data.nodes;
  var CHUNK = 100;            // children rendered per "show more" click: wide nodes stay fast
  var kids = nodes.map(function () { return []; });
  nodes.forEach(function (n) { if (n.p >= 0 && kids[n.p]) kids[n.p].push(n.i); });
  kids.forEach(function (list) { list.sort(function (a, b) { return (nodes[b].n - nodes[a].n) || (a - b); }); });
  var rootVisits = Math.max(1, nodes.length ? nodes[0].n : 1);
  var items = {};             // node id -> rendered <li>
  var shown = {};             // node id -> number of children rendered so far
  var selected = -1, matches = [], matchPos = -1;
  var treeEl = document.getElementById("tree"), detailsEl = document.getElementById("details");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function kind(n) { return n.i === 0 ? "root" : (n.t ? (n.v || "unparseable") : ""); }
  function q(n) { return n.n ? n.w / n.n : 0; }
  function fmt(x, d) { return (x === null || x === undefined) ? "–" : Number(x).toFixed(d); }
  function label(n) {
    var s = n.i === 0 ? data.problem : n.s;
    s = (s || "").replace(/\s+/g, " ").trim();
    return s.length > 120 ? s.slice(0, 117) + "…" : (s || "(empty step)");
  }
  function ancestors(id) { var out = []; while (id > 0) { id = nodes[id].p; out.push(id); } return out; }

  function makeItem(id) {
    var n = nodes[id], li = el("li"), row = el("div", "row");
    row.dataset.id = id; row.id = "node-" + id; row.tabIndex = -1;
    row.appendChild(el("span", "tog", kids[id].length ? "▸" : ""));
    row.appendChild(el("span", "dot " + kind(n)));
    row.appendChild(el("span", "nid", "#" + id));
    row.appendChild(el("span", "text", label(n)));
    row.appendChild(el("span", "badge", "N " + n.n));
    if (id !== 0) { row.appendChild(el("span", "badge", "Q " + fmt(q(n), 2))); row.appendChild(el("span", "badge", "P " + fmt(n.pr, 2))); }
    if (n.t) row.appendChild(el("span", "badge ans " + kind(n), "= " + (n.a === null ? "?" : n.a)));
    var bar = el("span", "vbar"); bar.style.width = Math.max(1, Math.round(60 * n.n / rootVisits)) + "px";
    row.appendChild(bar);
    row.title = kids[id].length + " children";
    li.appendChild(row);
    items[id] = li;
    return li;
  }

  function renderMore(id) {
    var li = items[id], ul = li.querySelector(":scope > ul.children");
    if (!ul) { ul = el("ul", "children"); li.appendChild(ul); }
    var more = ul.querySelector(":scope > li.more-li"); if (more) more.remove();
    var start = shown[id] || 0, end = Math.min(kids[id].length, start + CHUNK);
    for (var j = start; j < end; j++) ul.appendChild(makeItem(kids[id][j]));
    shown[id] = end;
    if (end < kids[id].length) {
      var m = el("li", "more-li"), a = el("div", "more", "show " + Math.min(CHUNK, kids[id].length - end) +
        " more of " + (kids[id].length - end) + " remaining children");
      a.addEventListener("click", function (ev) { ev.stopPropagation(); renderMore(id); });
      m.appendChild(a); ul.appendChild(m);
    }
  }

  function setOpen(id, open) {
    var li = items[id]; if (!li || !kids[id].length) return;
    if (open && !shown[id]) renderMore(id);
    var ul = li.querySelector(":scope > ul.children");
    if (ul) ul.style.display = open ? "" : "none";
    li.firstChild.firstChild.textContent = open ? "▾" : "▸";
    li.dataset.open = open ? "1" : "";
  }
  function isOpen(id) { return !!(items[id] && items[id].dataset.open); }

  function reveal(id) {            // render the node's row and open every ancestor, root first
    var chain = ancestors(id).reverse();
    chain.forEach(function (a, k) {
      var next = k + 1 < chain.length ? chain[k + 1] : id;
      setOpen(a, true);
      while (!items[next] && shown[a] < kids[a].length) renderMore(a);
    });
  }

  function select(id) {
    if (id < 0 || id >= nodes.length) return;
    reveal(id);
    document.querySelectorAll(".row.selected, .row.onpath").forEach(function (r) { r.classList.remove("selected", "onpath"); });
    var row = items[id].firstChild; row.classList.add("selected");
    ancestors(id).forEach(function (a) { if (items[a]) items[a].firstChild.classList.add("onpath"); });
    row.scrollIntoView({ block: "nearest", inline: "nearest" }); row.focus({ preventScroll: true });
    selected = id; showDetails(id);
    try { history.replaceState(null, "", "#node-" + id); } catch (e) { /* srcdoc iframes: no URL to update */ }
  }

  function showDetails(id) {
    var n = nodes[id];
    detailsEl.textContent = "";
    detailsEl.appendChild(el("h2", null, id === 0 ? "Root: the problem" : "Node #" + id + " (depth " + n.d + ")"));
    var tbl = el("table"), rows = [
      ["visits N", n.n], ["Q = value / visits", fmt(q(n), 3)], ["value sum", fmt(n.w, 3)],
      ["prior P", id === 0 ? "–" : fmt(n.pr, 3)], ["log-prob of step", fmt(n.lp, 2)], ["step tokens", n.tk],
      ["own evaluations", n.ev], ["children", kids[id].length], ["source", n.src || "–"],
      ["finish reason", n.fr || "–"]];
    if (n.t) { rows.push(["terminal answer", n.a === null ? "(none)" : n.a]); rows.push(["verdict", n.v || "–"]); }
    rows.forEach(function (r) { var tr = el("tr"); tr.appendChild(el("td", null, r[0])); tr.appendChild(el("td", null, r[1])); tbl.appendChild(tr); });
    detailsEl.appendChild(tbl);
    detailsEl.appendChild(el("h2", null, id === 0 ? "Problem" : "Step text"));
    var pre = el("pre", "step step-text", id === 0 ? data.problem : n.s); pre.id = "step-text";
    detailsEl.appendChild(pre);
    detailsEl.appendChild(el("h2", null, "Path from the problem (" + n.d + " steps)"));
    var ol = el("ol", "path"), path = ancestors(id).reverse().concat([id]).filter(function (x) { return x > 0; });
    var li0 = el("li"); li0.value = 0; li0.appendChild(link(0)); li0.appendChild(document.createTextNode(" " + data.problem)); ol.appendChild(li0);
    path.forEach(function (pid) {
      var li = el("li", pid === id ? "cur" : null); li.appendChild(link(pid));
      li.appendChild(document.createTextNode(" " + nodes[pid].s)); ol.appendChild(li);
    });
    detailsEl.appendChild(ol);
  }
  function link(id) {
    var a = el("a", null, "#" + id);
    a.addEventListener("click", function () { select(id); });
    return a;
  }

  function collapseAll() { Object.keys(items).forEach(function (k) { setOpen(+k, false); }); setOpen(0, true); }
  function expandTo(depth) {
    collapseAll();
    nodes.forEach(function (n) { if (n.d < depth && kids[n.i].length) { reveal(n.i); setOpen(n.i, true); } });
  }
  function markMatches(ids) {
    document.querySelectorAll(".row.match").forEach(function (r) { r.classList.remove("match"); });
    ids.forEach(function (id) { reveal(id); items[id].firstChild.classList.add("match"); });
  }

  treeEl.addEventListener("click", function (ev) {
    var row = ev.target.closest(".row"); if (!row) return;
    var id = +row.dataset.id;
    if (ev.target.classList.contains("tog")) { setOpen(id, !isOpen(id)); return; }
    if (selected === id && kids[id].length) setOpen(id, !isOpen(id));
    select(id);
  });
  treeEl.addEventListener("keydown", function (ev) {
    if (selected < 0) return;
    var rows = Array.prototype.filter.call(treeEl.querySelectorAll(".row"), function (r) { return r.offsetParent !== null; });
    var pos = rows.indexOf(items[selected].firstChild);
    if (ev.key === "ArrowDown" && pos + 1 < rows.length) select(+rows[pos + 1].dataset.id);
    else if (ev.key === "ArrowUp" && pos > 0) select(+rows[pos - 1].dataset.id);
    else if (ev.key === "ArrowRight") setOpen(selected, true);
    else if (ev.key === "ArrowLeft") { if (isOpen(selected)) setOpen(selected, false); else if (selected > 0) select(nodes[selected].p); }
    else return;
    ev.preventDefault();
  });
  document.getElementById("btn-collapse").addEventListener("click", collapseAll);
  document.getElementById("btn-depth").addEventListener("click", function () {
    expandTo(parseInt(document.getElementById("depth").value, 10) || 1);
  });
  document.getElementById("btn-correct").addEventListener("click", function () {
    var ids = nodes.filter(function (n) { return n.t && n.v === "correct"; }).map(function (n) { return n.i; });
    markMatches(ids); if (ids.length) select(ids[0]);
  });
  document.getElementById("search").addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter") return;
    var qs = ev.target.value.toLowerCase().trim();
    if (!qs) { markMatches([]); return; }
    if (matches.qs !== qs) {
      matches = nodes.filter(function (n) { return n.i > 0 && (n.s || "").toLowerCase().indexOf(qs) >= 0; }).map(function (n) { return n.i; }).slice(0, 200);
      matches.qs = qs; matchPos = -1; markMatches(matches);
    }
    document.getElementById("search-count").textContent = matches.length ? (((matchPos + 1) % matches.length) + 1) + "/" + matches.length : "no match";
    if (matches.length) { matchPos = (matchPos + 1) % matches.length; select(matches[matchPos]); }
  });

  var rootUl = el("ul", "children");
  rootUl.appendChild(makeItem(0));
  treeEl.appendChild(rootUl);
  var start = parseInt(treeEl.dataset.depth || "2", 10);
  nodes.forEach(function (n) { if (n.d < start && kids[n.i].length && (n.i === 0 || isOpen(n.p))) setOpen(n.i, true); });
  var m = /^#node-(\d+)$/.exec(location.hash);
  select(m && +m[1] < nodes.length ? +m[1] : 0);
})();
