// imgclust review: the page's whole script (no framework, no CDN). State comes from
// api/state, a cluster's photos from api/cluster/N, every edit goes to api/edit with the
// journal length this page saw (409: another tab edited; the page reloads the state).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let state = null; // api/state
  let current = null; // id of the cluster shown, or null for search results
  let photos = []; // photos shown
  const selected = new Set(); // their paths
  const checked = new Set(); // cluster ids checked for a merge
  let anchor = -1; // last clicked tile (shift-click selects a range)
  let cursor = -1; // keyboard cursor over the tiles
  let hits = null; // search: set of cluster ids, or null

  async function api(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const r = await fetch(path, opts);
    const data = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) { const e = new Error(data.error || r.statusText); e.status = r.status; throw e; }
    return data;
  }

  function say(text, ok) { $("message").textContent = text || ""; $("message").className = ok ? "ok" : ""; }

  function clusterById(id) { return state.clusters.find((c) => c.id === id); }

  async function edit(body, nextCluster) {
    try {
      const last = (h) => h[h.length - 1];
      const undone = body.op === "undo" ? last(state.history) : null; // (the history drops it)
      state = await api("api/edit", { ...body, seen: state.version });
      if (body.op === "undo") say("undone: " + (undone || "the last edit"), true);
      else say((body.op === "redo" ? "redone: " : "done: ") + (last(state.history) || body.op), true);
    } catch (e) {
      say(e.message);
      if (e.status !== 409) return;
      state = await api("api/state");
    }
    selected.clear();
    checked.clear();
    const keep = nextCluster !== undefined ? nextCluster : current;
    renderList();
    if (current === null && hits !== null) return search();
    await show(clusterById(keep) ? keep : state.clusters.length ? state.clusters[0].id : null);
  }

  function renderList() {
    const list = $("clusters");
    list.textContent = "";
    for (const c of state.clusters) {
      const li = document.createElement("li");
      li.dataset.id = c.id;
      li.className = (c.id === current ? "current" : "") + (hits && !hits.has(c.id) ? " hidden" : "");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "check";
      box.checked = checked.has(c.id);
      box.disabled = c.id < 0;
      box.addEventListener("click", (ev) => { ev.stopPropagation(); toggleCheck(c.id); });
      const label = document.createElement("span");
      label.textContent = `#${c.id} ${c.name}`;
      const cls = document.createElement("span");
      cls.className = "cls";
      cls.textContent = c.classes.join(" · ") + (c.group ? ` — ${c.group}` : "");
      label.appendChild(cls);
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = c.size.toLocaleString();
      li.append(box, label, n);
      li.addEventListener("click", () => show(c.id));
      list.appendChild(li);
    }
    $("n-checked").textContent = checked.size ? `${checked.size} checked` : "";
    $("undo").disabled = !state.can_undo;
    $("redo").disabled = !state.can_redo;
    status();
    const hist = $("history");
    hist.textContent = "";
    for (const h of state.history) { const li = document.createElement("li"); li.textContent = h; hist.appendChild(li); }
    const target = $("target");
    target.textContent = "";
    for (const c of state.clusters) {
      if (c.id < 0 || c.id === current) continue;
      target.add(new Option(`#${c.id} ${c.name}`, String(c.id)));
    }
    target.add(new Option("a new cluster", "new"));
  }

  function status() {
    const busy = state.published !== state.version;
    $("status").textContent = `${state.n_photos.toLocaleString()} photos · ${state.clusters.length} clusters · edit ${state.version}` +
      (state.error ? ` · writing failed: ${state.error}` : busy ? " · writing the report…" : " · report written");
  }

  function toggleCheck(id) {
    if (id < 0) return;
    if (checked.has(id)) checked.delete(id); else checked.add(id);
    renderList();
  }

  async function show(id) {
    shown++;
    current = id;
    selected.clear();
    photos = [];
    cursor = anchor = -1;
    $("photos").textContent = "";
    renderList();
    if (id === null) return;
    const c = clusterById(id);
    $("name").value = c.name;
    $("name").disabled = id < 0;
    $("size").textContent = `${c.size.toLocaleString()} photos`;
    await more();
  }

  let shown = 0; // bumped by every show(): a late answer for an earlier cluster is dropped
  async function more() {
    const ticket = shown;
    const data = await api(`api/cluster/${current}?offset=${photos.length}&limit=200`);
    if (ticket !== shown) return;
    addTiles(data.photos);
    $("more").hidden = photos.length >= data.size;
  }

  function addTiles(list) {
    const box = $("photos");
    for (const p of list) {
      const i = photos.length;
      photos.push(p);
      const tile = document.createElement("div");
      tile.className = "tile" + (p.outlier ? " outlier" : "");
      tile.dataset.path = p.path;
      tile.title = `${p.path}\n#${p.cluster} rank ${p.rank} · distance ${p.distance}`;
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = p.name;
      img.src = p.thumb;
      img.addEventListener("error", () => { img.src = "photo?path=" + encodeURIComponent(p.path); }, { once: true });
      const name = document.createElement("span");
      name.textContent = p.name;
      tile.append(img, name);
      tile.addEventListener("click", (ev) => pick(i, ev.shiftKey));
      tile.addEventListener("dblclick", () => window.open("photo?path=" + encodeURIComponent(p.path)));
      box.appendChild(tile);
    }
    paint();
  }

  function pick(i, range) {
    if (range && anchor >= 0) {
      const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
      for (let j = a; j <= b; j++) selected.add(photos[j].path);
    } else if (selected.has(photos[i].path)) selected.delete(photos[i].path);
    else selected.add(photos[i].path);
    anchor = cursor = i;
    paint();
  }

  function paint() {
    const tiles = $("photos").children;
    for (let i = 0; i < tiles.length; i++) {
      tiles[i].classList.toggle("selected", selected.has(photos[i].path));
      tiles[i].classList.toggle("cursor", i === cursor);
    }
    $("n-selected").textContent = `${selected.size} selected`;
  }

  function need() {
    if (selected.size) return [...selected];
    say("select photos first (click, shift-click, or a to select all shown)");
    return null;
  }

  const actions = {
    rename() {
      const name = $("name").value.trim();
      if (current !== null && current >= 0 && name) edit({ op: "rename", cluster: current, name });
    },
    merge() {
      const ids = [...checked];
      if (current !== null && current >= 0 && ids.length === 1 && !checked.has(current)) ids.push(current);
      if (ids.length < 2) return say("check two clusters or more (c, or the boxes) to merge them");
      edit({ op: "merge", clusters: ids }, Math.min(...ids));
    },
    split() {
      if (current === null || current < 0) return;
      const k = parseInt($("split-k").value, 10);
      edit({ op: "split", cluster: current, k: Number.isFinite(k) ? k : null });
    },
    move(toNew) {
      const paths = need();
      if (!paths) return;
      const to = toNew ? "new" : $("target").value;
      edit({ op: "move", paths, to: to === "new" ? "new" : parseInt(to, 10) });
    },
    unsort() { const paths = need(); if (paths) edit({ op: "unsort", paths }); },
    exclude() { const paths = need(); if (paths) edit({ op: "exclude", paths }); },
    undo() { if (state.can_undo) edit({ op: "undo" }); },
    redo() { if (state.can_redo) edit({ op: "redo" }); },
  };

  let timer = 0;
  async function search() {
    const q = $("search").value.trim();
    if (!q) { hits = null; renderList(); if (current === null) show(state.clusters[0] ? state.clusters[0].id : null); return; }
    const ticket = ++shown;
    const data = await api("api/search?q=" + encodeURIComponent(q));
    if (ticket !== shown) return;
    hits = new Set(data.clusters);
    current = null;
    selected.clear();
    photos = [];
    $("photos").textContent = "";
    $("name").value = `search: ${q}`;
    $("name").disabled = true;
    $("size").textContent = `${data.photos.length} photos, ${data.clusters.length} clusters match`;
    $("more").hidden = true;
    renderList();
    addTiles(data.photos);
  }

  function step(delta) {
    const ids = state.clusters.filter((c) => !hits || hits.has(c.id)).map((c) => c.id);
    if (!ids.length) return;
    const at = ids.indexOf(current);
    show(ids[Math.max(0, Math.min(ids.length - 1, at < 0 ? 0 : at + delta))]);
  }

  function moveCursor(delta) {
    if (!photos.length) return;
    cursor = Math.max(0, Math.min(photos.length - 1, cursor + delta));
    paint();
    $("photos").children[cursor].scrollIntoView({ block: "nearest" });
  }

  function perRow() {
    const tiles = $("photos").children;
    if (tiles.length < 2) return 1;
    const top = tiles[0].offsetTop;
    let n = 0;
    while (n < tiles.length && tiles[n].offsetTop === top) n++;
    return Math.max(1, n);
  }

  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    const ctrl = ev.ctrlKey || ev.metaKey;
    if (ev.key === "Escape") { ev.target.blur && ev.target.blur(); selected.clear(); paint(); return; }
    if (typing) {
      if (ev.key === "Enter" && ev.target === $("name")) { ev.preventDefault(); actions.rename(); ev.target.blur(); }
      if (ev.key === "Enter" && ev.target === $("split-k")) { ev.preventDefault(); actions.split(); }
      return;
    }
    if (ctrl && ev.key.toLowerCase() === "z") { ev.preventDefault(); return ev.shiftKey ? actions.redo() : actions.undo(); }
    if (ctrl && ev.key.toLowerCase() === "y") { ev.preventDefault(); return actions.redo(); }
    if (ctrl || ev.altKey) return;
    const keys = {
      j: () => step(1), k: () => step(-1),
      r: () => { $("name").focus(); $("name").select(); },
      c: () => current !== null && toggleCheck(current),
      g: actions.merge, s: actions.split, m: () => actions.move(false), n: () => actions.move(true),
      u: actions.unsort, x: actions.exclude, "/": () => $("search").focus(),
      a: () => { photos.forEach((p) => selected.add(p.path)); paint(); },
      "?": () => { $("help").hidden = !$("help").hidden; },
      ArrowRight: () => moveCursor(1), ArrowLeft: () => moveCursor(-1),
      ArrowDown: () => moveCursor(perRow()), ArrowUp: () => moveCursor(-perRow()),
      " ": () => cursor >= 0 && pick(cursor, ev.shiftKey),
    };
    const fn = keys[ev.key];
    if (fn) { ev.preventDefault(); fn(); }
  });

  $("undo").addEventListener("click", actions.undo);
  $("redo").addEventListener("click", actions.redo);
  $("merge").addEventListener("click", actions.merge);
  $("split").addEventListener("click", actions.split);
  $("move").addEventListener("click", () => actions.move(false));
  $("unsort").addEventListener("click", actions.unsort);
  $("exclude").addEventListener("click", actions.exclude);
  $("more").addEventListener("click", more);
  $("help-btn").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  $("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });

  // While the report is being written, say so; stop asking once it is.
  setInterval(async () => {
    if (!state || state.published === state.version) return;
    const now = await api("api/state").catch(() => null);
    if (now && now.version === state.version) { state.published = now.published; state.error = now.error; status(); }
  }, 1500);

  (async () => {
    state = await api("api/state");
    for (const note of state.notes) say(note, true);
    renderList();
    await show(state.clusters.length ? state.clusters[0].id : null);
    document.body.dataset.ready = "1";
  })();
})();
