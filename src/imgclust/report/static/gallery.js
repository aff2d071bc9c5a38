/* imgclust gallery: filter and sort the index, select images or clusters, download the
   selection as CSV or a list of paths, expand collapsed near-duplicates. Plain JavaScript, no
   library, works from file:// (cluster member lists are loaded as <script> files, never with
   fetch; the map loads its thumbnail names the same way, through imgclustLoadMembers). */
(function () {
  "use strict";
  var members = {};  // cluster id -> {paths, thumbs}, from members-N.js
  var waiting = {};
  window.imgclustMembers = function (id, paths, thumbs) {
    members[id] = { paths: paths, thumbs: thumbs || [] };
    (waiting[id] || []).forEach(function (done) { done(members[id]); });
    delete waiting[id];
  };

  // members-N.js of cluster `id`, loaded once by a <script> tag (fetch fails on file://)
  function loadCluster(id) {
    return new Promise(function (resolve, reject) {
      if (members[id]) { resolve(members[id]); return; }
      if (waiting[id]) { waiting[id].push(resolve); return; }
      waiting[id] = [resolve];
      var s = document.createElement("script");
      s.src = "members-" + id + ".js";
      s.onerror = function () { delete waiting[id]; reject(new Error("cannot load " + s.src)); };
      document.head.appendChild(s);
    });
  }
  window.imgclustLoadMembers = loadCluster;
  // this script runs after the map's: a map frame drawn before now found no loader
  if (window.imgclustMapApi) { window.imgclustMapApi.draw(); }
  function loadMembers(id) { return loadCluster(id).then(function (m) { return m.paths; }); }

  // near-duplicates: the badge expands its group; a link to a collapsed tile opens its group
  function openGroup(group, open) {
    group.classList.toggle("open", open);
    var badge = group.querySelector(".dup-badge");
    var n = group.querySelectorAll(".tile.dup").length;
    badge.setAttribute("aria-expanded", String(open));
    badge.textContent = (open ? "\u2212" : "+") + n;
  }
  document.addEventListener("click", function (ev) {
    var badge = ev.target.closest && ev.target.closest("button.dup-badge");
    if (!badge) { return; }
    var group = badge.closest(".dup-group");
    openGroup(group, !group.classList.contains("open"));
  });
  function revealTarget() {
    var el = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    var group = el && el.classList.contains("dup") && el.closest(".dup-group");
    if (group && !group.classList.contains("open")) {
      openGroup(group, true);
      el.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", revealTarget);
  revealTarget();

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], { type: type }));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  function csvField(s) { return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }

  function selectionRows() {
    var rows = [];
    var clusters = document.querySelectorAll(".pick-cluster:checked");
    var jobs = Array.prototype.map.call(clusters, function (box) {
      var id = box.getAttribute("data-cluster");
      return loadMembers(id).then(function (paths) {
        paths.forEach(function (p) { rows.push([p, id]); });
      });
    });
    document.querySelectorAll(".tile .pick:checked").forEach(function (box) {
      var row = box.closest(".row");
      rows.push([box.getAttribute("data-path"), row ? row.id.replace("row", "") : ""]);
    });
    return Promise.all(jobs).then(function () { return rows; });
  }

  function updateCount() {
    var n = 0;
    document.querySelectorAll(".pick-cluster:checked").forEach(function (box) {
      var card = document.getElementById("card" + box.getAttribute("data-cluster"));
      n += card ? parseInt(card.getAttribute("data-size"), 10) : 0;
    });
    n += document.querySelectorAll(".tile .pick:checked").length;
    var label = document.getElementById("n-selected");
    if (label) { label.textContent = n.toLocaleString() + " selected"; }
    ["download-csv", "download-txt"].forEach(function (id) {
      var b = document.getElementById(id);
      if (b) { b.disabled = n === 0; }
    });
  }

  document.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.classList.contains("pick")) { t.closest(".tile").classList.toggle("picked", t.checked); }
    if (t.classList.contains("pick") || t.classList.contains("pick-cluster")) { updateCount(); }
  });

  function on(id, event, fn) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener(event, fn); }
  }
  on("download-csv", "click", function () {
    selectionRows().then(function (rows) {
      var text = "path,cluster\n" + rows.map(function (r) {
        return csvField(r[0]) + "," + r[1];
      }).join("\n") + "\n";
      download("selection.csv", text, "text/csv");
    });
  });
  on("download-txt", "click", function () {
    selectionRows().then(function (rows) {
      download("selection.txt", rows.map(function (r) { return r[0]; }).join("\n") + "\n",
               "text/plain");
    });
  });
  on("clear-selection", "click", function () {
    document.querySelectorAll(".pick:checked, .pick-cluster:checked").forEach(function (b) {
      b.checked = false;
      var tile = b.closest(".tile");
      if (tile) { tile.classList.remove("picked"); }
    });
    updateCount();
  });
  on("select-page", "click", function () {
    document.querySelectorAll(".tile .pick").forEach(function (b) {
      b.checked = true;
      b.closest(".tile").classList.add("picked");
    });
    updateCount();
  });

  var cardsBox = document.getElementById("cards");
  if (!cardsBox) { return; }
  var cards = Array.prototype.slice.call(cardsBox.querySelectorAll(".card"));
  var groups = Array.prototype.slice.call(cardsBox.querySelectorAll(".group"));
  var filter = document.getElementById("filter");
  var sort = document.getElementById("sort");
  var shown = document.getElementById("shown");

  function matches(el, words) {
    var text = el.getAttribute("data-words") || "";
    return words.every(function (w) { return text.indexOf(w) >= 0; });
  }

  // A group that matches shows all its clusters; otherwise the clusters that match, and the
  // group only when one of them does.
  function applyFilter() {
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var n = 0;
    var groupHit = {};
    groups.forEach(function (g) { groupHit[g.id] = words.length > 0 && matches(g, words); });
    cards.forEach(function (card) {
      var group = card.closest(".group");
      var ok = (group && groupHit[group.id]) || matches(card, words);
      card.classList.toggle("hidden", !ok);
      if (ok) { n += 1; }
    });
    groups.forEach(function (g) {
      var any = g.querySelector(".card:not(.hidden)") !== null;
      g.classList.toggle("hidden", !any);
      if (words.length && any) { g.querySelector("details").open = true; }
    });
    shown.textContent = words.length ? n.toLocaleString() + " of " + cards.length.toLocaleString() + " clusters" : "";
  }

  function order(a, b) {
    if (sort.value === "size") {
      return b.getAttribute("data-size") - a.getAttribute("data-size") ||
        (a.getAttribute("data-cluster") || a.getAttribute("data-group")) -
        (b.getAttribute("data-cluster") || b.getAttribute("data-group"));
    }
    return a.getAttribute("data-name").localeCompare(b.getAttribute("data-name"));
  }

  function reorder(box, items) {
    var frag = document.createDocumentFragment();
    items.slice().sort(order).forEach(function (c) { frag.appendChild(c); });
    box.appendChild(frag);
  }

  // Both levels: the groups among themselves, and the clusters inside each group.
  function applySort() {
    if (!groups.length) { reorder(cardsBox, cards); return; }
    reorder(cardsBox, groups);
    groups.forEach(function (g) {
      var box = g.querySelector(".group-cards");
      reorder(box, Array.prototype.slice.call(box.querySelectorAll(".card")));
    });
  }

  function openAll(open) { groups.forEach(function (g) { g.querySelector("details").open = open; }); }
  on("expand-all", "click", function () { openAll(true); });
  on("collapse-all", "click", function () { openAll(false); });

  var timer = null;
  filter.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(applyFilter, cards.length > 5000 ? 150 : 0);
  });
  sort.addEventListener("change", applySort);
}());
