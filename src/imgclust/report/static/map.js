/* imgclust map. Every photo sits on its own cell of one square lattice (a cell is one unit of
   map space), a cluster is a filled disc of cells, the photos nearest its centre in the middle.
   Plain JavaScript and a 2D canvas, no library and no WebGL: the lattice is drawn from one
   off-screen bitmap that holds a pixel a cell (the region's colour, lighter towards its
   middle), scaled by a single drawImage, so a frame costs the same at a million photos as at
   a thousand. A grid of cells (cell -> photo) answers "which photo is here" at once, for
   clicks, hover and the cells in view.
   Zoomed in to THUMB_MIN pixels a cell, the photos in view become thumbnails, one per cell
   (so they never overlap), drawn no larger than they were made (the zoom stops there:
   always sharp); at most IN_FLIGHT load at a time, nearest the middle of the view first, and
   at most CACHE_MAX are kept. Region names are HTML labels placed greedily each frame, large
   regions first, never on top of each other and always on screen while their region is.
   Zoom: the wheel in smooth steps, keys, buttons, and pinching (two fingers as pointer events,
   a trackpad's ctrlKey wheel, Safari's gesture events), all within the same bounds.
   Works from file://: every data file is a <script>. */
(function () {
  "use strict";
  var THUMB_MIN = 28, TILE_MIN = 6, IN_FLIGHT = 12, CACHE_MAX = 1500;
  var WHEEL_RATE = 0.0022, PINCH_RATE = 0.01, KEY_ZOOM = 1.6, ANIMATE_MS = 160, LABEL_PAD = 3;

  function decode(b64, Type) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return new Type(bytes.buffer);
  }
  function rgb(hex) {
    var v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }
  function element(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // map-N.js: hover text and original of each member of cluster N, by rank (loaded once)
  var info = {}, infoWaiting = {};
  window.imgclustMapInfo = function (id, hover, originals) {
    info[id] = { hover: hover, originals: originals };
    (infoWaiting[id] || []).forEach(function (done) { done(info[id]); });
    delete infoWaiting[id];
  };
  function loadInfo(id) {
    return new Promise(function (resolve, reject) {
      if (info[id]) { resolve(info[id]); return; }
      if (infoWaiting[id]) { infoWaiting[id].push(resolve); return; }
      infoWaiting[id] = [resolve];
      var s = document.createElement("script");
      s.src = "map-" + id + ".js";
      s.onerror = function () { delete infoWaiting[id]; reject(new Error("cannot load " + s.src)); };
      document.head.appendChild(s);
    });
  }

  window.imgclustMap = function (meta, cellB64, labelB64, rankB64, pageB64) {
    var cells = decode(cellB64, Int32Array), labels = decode(labelB64, Int32Array);
    var ranks = decode(rankB64, Int32Array), pages = decode(pageB64, Int32Array), n = meta.n;
    var box = document.getElementById("map-box"), canvas = document.getElementById("map");
    var ctx = canvas.getContext("2d"), panel = document.getElementById("map-info");
    var tip = document.getElementById("map-tip"), labelLayer = document.getElementById("map-labels");
    var i, x, y;

    // -- the lattice: bounds, the cell -> photo grid, each region's disc --------------------
    var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (i = 0; i < n; i++) {
      x = cells[2 * i]; y = cells[2 * i + 1];
      if (x < minX) { minX = x; } if (x > maxX) { maxX = x; }
      if (y < minY) { minY = y; } if (y > maxY) { maxY = y; }
    }
    var W = maxX - minX + 1, H = maxY - minY + 1, grid = new Int32Array(W * H);  // photo + 1
    var ids = Object.keys(meta.clusters).map(Number).sort(function (a, b) { return a - b; });
    var regions = {};  // cluster id -> {id, name, size, group, colour, cx, cy, r}
    ids.forEach(function (id) {
      var c = meta.clusters[id], hex = c[3] || meta.groups[c[2]][1];  // its shade of the group's hue
      regions[id] = { id: id, name: c[0], size: c[1], group: c[2], colour: rgb(hex),
                      hex: hex, cx: 0, cy: 0, r: 0, count: 0 };
    });
    for (i = 0; i < n; i++) {
      grid[(cells[2 * i + 1] - minY) * W + cells[2 * i] - minX] = i + 1;
      var reg = regions[labels[i]];
      reg.cx += cells[2 * i]; reg.cy += cells[2 * i + 1]; reg.count += 1;
    }
    ids.forEach(function (id) {
      var r = regions[id];
      r.cx /= Math.max(r.count, 1); r.cy /= Math.max(r.count, 1);
    });
    for (i = 0; i < n; i++) {
      var rr = regions[labels[i]], ddx = cells[2 * i] - rr.cx, ddy = cells[2 * i + 1] - rr.cy;
      var d = Math.sqrt(ddx * ddx + ddy * ddy) + 0.75;
      if (d > rr.r) { rr.r = d; }
    }
    var groups = meta.groups.map(function (g, gi) {
      return { index: gi, name: g[0], hex: g[1], size: 0, clusters: [] };
    });
    ids.forEach(function (id) {
      var r = regions[id];
      groups[r.group].size += r.count; groups[r.group].clusters.push(id);
    });
    groups.forEach(function (g) {  // a group's label goes round all its regions
      var sx = 0, sy = 0, w = 0;
      g.clusters.forEach(function (id) { var r = regions[id]; sx += r.cx * r.count; sy += r.cy * r.count; w += r.count; });
      g.cx = sx / Math.max(w, 1); g.cy = sy / Math.max(w, 1); g.r = 0;
      g.clusters.forEach(function (id) {
        var r = regions[id];
        g.r = Math.max(g.r, Math.hypot(r.cx - g.cx, r.cy - g.cy) + r.r);
      });
    });

    // the bitmap: a pixel a cell, lighter towards the middle of its region
    var base = document.createElement("canvas");
    base.width = W; base.height = H;
    var bctx = base.getContext("2d"), image = bctx.createImageData(W, H), px = image.data;
    for (i = 0; i < n; i++) {
      var region = regions[labels[i]], c = region.colour;
      var shade = 1.12 - 0.4 * ranks[i] / Math.max(region.count - 1, 1);
      var o = ((cells[2 * i + 1] - minY) * W + cells[2 * i] - minX) * 4;
      px[o] = Math.min(255, c[0] * shade); px[o + 1] = Math.min(255, c[1] * shade);
      px[o + 2] = Math.min(255, c[2] * shade); px[o + 3] = 255;
    }
    bctx.putImageData(image, 0, 0);

    function photoAt(cx, cy) {  // the photo on lattice cell (cx, cy), or -1
      var gx = cx - minX, gy = cy - minY;
      if (gx < 0 || gy < 0 || gx >= W || gy >= H) { return -1; }
      return grid[gy * W + gx] - 1;
    }
    function nearest(dataX, dataY, maxDist) {  // the photo nearest a point within maxDist
      var reach = Math.ceil(maxDist), best = -1, bestD = maxDist * maxDist;
      var x0 = Math.round(dataX), y0 = Math.round(dataY);
      for (var a = x0 - reach; a <= x0 + reach; a++) {
        for (var b = y0 - reach; b <= y0 + reach; b++) {
          var p = photoAt(a, b);
          if (p < 0) { continue; }
          var dd = (a - dataX) * (a - dataX) + (b - dataY) * (b - dataY);
          if (dd <= bestD) { bestD = dd; best = p; }
        }
      }
      return best;
    }

    // -- the view: screen = map * scale + (x, y), in CSS pixels --------------------------------
    var view = { x: 0, y: 0, scale: 1, base: 1 }, bounds = { minScale: 1, maxScale: 1 };
    var dpr = window.devicePixelRatio || 1, cw = 0, ch = 0;
    function sizeCanvas() {
      dpr = window.devicePixelRatio || 1;
      cw = canvas.clientWidth; ch = canvas.clientHeight;
      canvas.width = Math.round(cw * dpr); canvas.height = Math.round(ch * dpr);
    }
    function fitView(x0, y0, x1, y1) {  // the view that shows map box [x0,x1]x[y0,y1]
      var scale = 0.94 * Math.min(cw / (x1 - x0 + 1), ch / (y1 - y0 + 1));
      scale = Math.min(Math.max(scale, bounds.minScale), bounds.maxScale);
      return { scale: scale, x: cw / 2 - scale * (x0 + x1) / 2, y: ch / 2 - scale * (y0 + y1) / 2 };
    }
    function setBounds() {
      var fit = 0.94 * Math.min(cw / W, ch / H);
      view.base = fit;
      bounds.minScale = fit / 2;
      // a thumbnail is drawn at most as large as it was made: sharp at every zoom
      bounds.maxScale = Math.max(fit * 2, meta.thumbSize / dpr + 2 * pad(meta.thumbSize));
    }
    function pad(scale) { return Math.max(1, Math.min(4, scale * 0.05)); }
    function clampView(v) {  // zoom within bounds; the middle of the screen stays on the map
      v.scale = Math.min(Math.max(v.scale, bounds.minScale), bounds.maxScale);
      var mx = (cw / 2 - v.x) / v.scale, my = (ch / 2 - v.y) / v.scale;
      var cx = Math.min(Math.max(mx, minX - 0.5), maxX + 0.5);
      var cy = Math.min(Math.max(my, minY - 0.5), maxY + 0.5);
      v.x = cw / 2 - cx * v.scale; v.y = ch / 2 - cy * v.scale;
      return v;
    }
    var motion = null;  // {from, to, start}
    function animateTo(target, ms) {
      clampView(target);
      tip.hidden = true;  // the photo under the pointer changes with the view
      if (!ms) { motion = null; view.x = target.x; view.y = target.y; view.scale = target.scale; draw(); return; }
      motion = { from: { x: view.x, y: view.y, scale: view.scale }, to: target,
                 start: performance.now(), ms: ms };
      draw();
    }
    function step(now) {  // one frame of the motion under way; true while it lasts
      if (!motion) { return false; }
      var t = Math.min(1, (now - motion.start) / motion.ms), e = 1 - Math.pow(1 - t, 3);
      var f = motion.from, to = motion.to;
      // zoom geometrically, and move so that the point zoomed at keeps its place
      var scale = f.scale * Math.pow(to.scale / f.scale, e);
      var k = Math.abs(to.scale - f.scale) > 1e-9 * f.scale ? (scale - f.scale) / (to.scale - f.scale) : e;
      view.scale = scale; view.x = f.x + (to.x - f.x) * k; view.y = f.y + (to.y - f.y) * k;
      if (t >= 1) { motion = null; }
      return motion !== null;
    }
    function target() { return motion ? motion.to : { x: view.x, y: view.y, scale: view.scale }; }
    function zoomAt(sx, sy, factor, ms) {  // zoom by factor keeping screen point (sx, sy)
      var t = target(), scale = Math.min(Math.max(t.scale * factor, bounds.minScale), bounds.maxScale);
      if (factor > 1) {  // zooming in over empty ground: towards the nearest region instead
        var at = anchorNear(sx, sy, t);
        sx = at[0]; sy = at[1];
      }
      var f = scale / t.scale;
      animateTo({ scale: scale, x: sx - (sx - t.x) * f, y: sy - (sy - t.y) * f }, ms);
    }
    function anchorNear(sx, sy, v) {  // (sx, sy), or the nearest point of the nearest region
      var mx = (sx - v.x) / v.scale, my = (sy - v.y) / v.scale, best = null, bestD = Infinity;
      ids.forEach(function (id) {
        var r = regions[id], d = Math.hypot(mx - r.cx, my - r.cy) - r.r;
        if (d < bestD) { bestD = d; best = r; }
      });
      if (!best || bestD <= 0) { return [sx, sy]; }
      var dist = Math.hypot(mx - best.cx, my - best.cy) || 1, k = (best.r - 1) / dist;
      var px = best.cx + (mx - best.cx) * k, py = best.cy + (my - best.cy) * k;
      return [px * v.scale + v.x, py * v.scale + v.y];
    }
    function fit() { animateTo(fitView(minX, minY, maxX, maxY), ANIMATE_MS); }
    function showRegion(id) {
      var r = regions[id] || groups[id];
      animateTo(fitView(r.cx - r.r, r.cy - r.r, r.cx + r.r, r.cy + r.r), ANIMATE_MS * 2);
    }
    function showGroup(g) {
      var gr = groups[g];
      if (gr.clusters.length === 1) { showRegion(gr.clusters[0]); return; }
      animateTo(fitView(gr.cx - gr.r, gr.cy - gr.r, gr.cx + gr.r, gr.cy + gr.r), ANIMATE_MS * 2);
    }

    // -- drawing ---------------------------------------------------------------------------
    var pending = false, selected = -1, hovered = -1;
    var stats = { inView: 0, thumbsDrawn: 0, loading: 0, loaded: 0, maxLoading: 0,
                  labelsShown: 0, labelsHidden: 0, frameMs: 0, frames: 0, pinches: 0 };
    var wellColour = getComputedStyle(document.documentElement).getPropertyValue("--well").trim() || "#0f1011";
    function draw() {
      if (pending) { return; }
      pending = true;
      requestAnimationFrame(frame);
    }
    function frame(now) {
      pending = false;
      var t0 = performance.now(), moving = step(now);
      if (canvas.clientWidth !== cw || canvas.clientHeight !== ch) { sizeCanvas(); setBounds(); }
      clampView(view);
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = wellColour;
      ctx.fillRect(0, 0, cw, ch);
      var s = view.scale;
      // the part of the bitmap in view
      var gx0 = Math.max(0, Math.floor((-view.x) / s - (minX - 0.5)));
      var gy0 = Math.max(0, Math.floor((-view.y) / s - (minY - 0.5)));
      var gx1 = Math.min(W, Math.ceil((cw - view.x) / s - (minX - 0.5)));
      var gy1 = Math.min(H, Math.ceil((ch - view.y) / s - (minY - 0.5)));
      if (gx1 > gx0 && gy1 > gy0) {
        ctx.imageSmoothingEnabled = s < 1;
        ctx.drawImage(base, gx0, gy0, gx1 - gx0, gy1 - gy0,
                      (minX - 0.5 + gx0) * s + view.x, (minY - 0.5 + gy0) * s + view.y,
                      (gx1 - gx0) * s, (gy1 - gy0) * s);
      }
      var area = Math.max(0, gx1 - gx0) * Math.max(0, gy1 - gy0);
      stats.inView = area <= 250000 ? countIn(gx0, gy0, gx1, gy1) : area;
      stats.thumbsDrawn = 0;
      if (s >= TILE_MIN) { drawGaps(gx0, gy0, gx1, gy1, s); }
      if (s >= THUMB_MIN) { stats.thumbsDrawn = drawThumbs(gx0, gy0, gx1, gy1, s); }
      if (hovered >= 0 && hovered !== selected) { outline(hovered, "rgba(255,255,255,0.55)", 1.5); }
      if (selected >= 0) {
        var r = regions[labels[selected]];
        ctx.strokeStyle = "rgba(255,255,255,0.6)"; ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.arc(r.cx * s + view.x, r.cy * s + view.y, r.r * s + 2, 0, 2 * Math.PI);
        ctx.stroke();
        outline(selected, "#fff", 2.5);
      }
      placeLabels();
      stats.frameMs = performance.now() - t0;
      stats.frames += 1;
      window.imgclustMapDrawn = (window.imgclustMapDrawn || 0) + 1;
      // nothing whole in view (panned into a void between regions, say): back to the map
      if (moving) { draw(); } else if (!drag && !pinch && n && area <= 250000 && !countIn(gx0 + 1, gy0 + 1, gx1 - 1, gy1 - 1)) { toNearestRegion(); }
    }
    function toNearestRegion() {  // nothing in view (panned into a void): glide back to the map
      var v = target(), at = anchorNear(cw / 2, ch / 2, v);
      animateTo({ scale: v.scale, x: v.x + cw / 2 - at[0], y: v.y + ch / 2 - at[1] }, ANIMATE_MS * 2);
    }
    function countIn(gx0, gy0, gx1, gy1) {
      var count = 0;
      for (var gy = gy0; gy < gy1; gy++) {
        for (var gx = gx0, row = gy * W; gx < gx1; gx++) { if (grid[row + gx]) { count++; } }
      }
      return count;
    }
    function drawGaps(gx0, gy0, gx1, gy1, s) {  // dark lines between cells: photos as tiles
      ctx.strokeStyle = wellColour;
      ctx.lineWidth = pad(s) * 2;
      ctx.beginPath();
      for (var gx = gx0; gx <= gx1; gx++) {
        var sx = (minX - 0.5 + gx) * s + view.x;
        ctx.moveTo(sx, 0); ctx.lineTo(sx, ch);
      }
      for (var gy = gy0; gy <= gy1; gy++) {
        var sy = (minY - 0.5 + gy) * s + view.y;
        ctx.moveTo(0, sy); ctx.lineTo(cw, sy);
      }
      ctx.stroke();
    }
    function outline(p, colour, width) {
      var s = view.scale, half = Math.max(s / 2, 3);
      var sx = cells[2 * p] * s + view.x, sy = cells[2 * p + 1] * s + view.y;
      ctx.strokeStyle = colour; ctx.lineWidth = width;
      ctx.strokeRect(sx - half, sy - half, 2 * half, 2 * half);
    }

    // -- thumbnails ------------------------------------------------------------------------
    var thumbNames = {};  // cluster id -> thumbnail paths by rank (null: none), or "loading"
    var cache = new Map();  // photo -> Image, least recently drawn first
    var loading = 0;
    function thumbOf(p) {
      var id = labels[p], names = thumbNames[id];
      if (names === undefined && window.imgclustLoadMembers) {
        thumbNames[id] = "loading";
        window.imgclustLoadMembers(id).then(function (m) { thumbNames[id] = m.thumbs; draw(); },
                                            function () { thumbNames[id] = []; });
      }
      return names && names !== "loading" ? names[ranks[p]] : null;
    }
    function request(p, src) {
      var im = new Image();
      im.decoding = "async";
      loading += 1;
      stats.loading = loading;
      stats.maxLoading = Math.max(stats.maxLoading, loading);
      im.onload = im.onerror = function () {
        loading -= 1; stats.loading = loading; stats.loaded += 1; draw();
      };
      im.src = src;
      cache.set(p, im);
      if (cache.size > CACHE_MAX) {
        for (var key of cache.keys()) {
          if (cache.get(key).complete) { cache.delete(key); break; }
        }
      }
    }
    function drawThumbs(gx0, gy0, gx1, gy1, s) {
      var drawn = 0, wanted = [], inset = pad(s), side = s - 2 * inset;
      var midX = (cw / 2 - view.x) / s, midY = (ch / 2 - view.y) / s;
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      for (var gy = gy0; gy < gy1; gy++) {
        for (var gx = gx0; gx < gx1; gx++) {
          var p = grid[gy * W + gx] - 1;
          if (p < 0) { continue; }
          var src = thumbOf(p);
          if (!src) { continue; }
          var im = cache.get(p);
          if (!im) {
            var dx = cells[2 * p] - midX, dy = cells[2 * p + 1] - midY;
            wanted.push([dx * dx + dy * dy, p, src]);
            continue;
          }
          if (!im.complete || !im.naturalWidth) { continue; }
          cache.delete(p); cache.set(p, im);  // most recently drawn last
          var f = side / Math.max(im.naturalWidth, im.naturalHeight);
          var tw = im.naturalWidth * f, th = im.naturalHeight * f;
          var cx = cells[2 * p] * s + view.x, cy = cells[2 * p + 1] * s + view.y;
          ctx.drawImage(im, cx - tw / 2, cy - th / 2, tw, th);
          drawn += 1;
        }
      }
      wanted.sort(function (a, b) { return a[0] - b[0]; });  // the middle of the view first
      for (var k = 0; k < wanted.length && loading < IN_FLIGHT; k++) { request(wanted[k][1], wanted[k][2]); }
      return drawn;
    }

    // -- region names ----------------------------------------------------------------------
    var labelEls = {}, labelWidth = {}, placedLabels = [], lastPlace = {};
    function labelFor(key, text, hex, big) {
      var el = labelEls[key];
      if (!el) {
        el = element("div", "map-label" + (big ? " map-group-label" : ""));
        el.dataset.region = key;
        el.title = text;
        var sw = element("span", "swatch");
        sw.style.background = hex;
        el.append(sw, document.createTextNode(text));
        labelLayer.append(el);
        labelEls[key] = el;
        labelWidth[key] = Math.ceil(el.getBoundingClientRect().width) + 1;  // as rendered
      }
      return el;
    }
    function obstacles() {  // screen rectangles of what floats over the map
      var out = [], rect = box.getBoundingClientRect();
      [document.querySelector(".map-controls"), document.getElementById("map-legend"), panel].forEach(function (el) {
        if (!el || el.hidden) { return; }
        var r = el.getBoundingClientRect();
        if (r.width && r.height) { out.push([r.left - rect.left, r.top - rect.top, r.right - rect.left, r.bottom - rect.top]); }
      });
      return out;
    }
    function placeLabels() {
      var s = view.scale, todo = [];
      placedLabels = [];
      groups.forEach(function (g) {  // a group of several clusters is named too, first,
        // while it is about screen-sized or smaller (closer in, its clusters' names say it)
        if (g.clusters.length > 1 && g.r * s <= Math.max(cw, ch)) { todo.push({ key: "g" + g.index, text: g.name, hex: g.hex, big: true,
                                                 cx: g.cx, cy: g.cy, r: g.r, prio: 1e12 + g.size }); }
      });
      ids.forEach(function (id) {
        var r = regions[id];
        todo.push({ key: "c" + id, text: r.name, hex: r.hex, big: false, cx: r.cx, cy: r.cy,
                    r: r.r, prio: r.r * s, id: id });
      });
      todo.sort(function (a, b) { return b.prio - a.prio; });
      var shown = 0, hidden = 0;
      var buckets = new Map(), B = 64;
      function collides(x0, y0, x1, y1, owner) {
        for (var bx = Math.floor(x0 / B); bx <= Math.floor(x1 / B); bx++) {
          for (var by = Math.floor(y0 / B); by <= Math.floor(y1 / B); by++) {
            var list = buckets.get(bx * 100003 + by);
            if (!list) { continue; }
            for (var q = 0; q < list.length; q++) {
              var o = list[q];
              if (o[4] !== owner && x0 < o[2] && x1 > o[0] && y0 < o[3] && y1 > o[1]) { return true; }
            }
          }
        }
        return false;
      }
      function keep(rect) {
        for (var bx = Math.floor(rect[0] / B); bx <= Math.floor(rect[2] / B); bx++) {
          for (var by = Math.floor(rect[1] / B); by <= Math.floor(rect[3] / B); by++) {
            var k = bx * 100003 + by;
            if (!buckets.has(k)) { buckets.set(k, []); }
            buckets.get(k).push(rect);
          }
        }
      }
      obstacles().forEach(function (o) { keep([o[0], o[1], o[2], o[3], null]); });
      todo.forEach(function (t) {  // a name never hides a small region (but its own)
        var sx = t.cx * s + view.x, sy = t.cy * s + view.y, sr = t.r * s;
        if (!t.big && sr < 40 && sx > 0 && sx < cw && sy > 0 && sy < ch) {
          var e = Math.max(3, Math.min(sr * 0.6, 10));
          keep([sx - e, sy - e, sx + e, sy + e, t.key]);
        }
      });
      function free(cx, cy, w, h, owner) {  // the label's box centred near (cx, cy), if free
        var x0 = Math.min(Math.max(cx - w / 2, 2), cw - w - 2);
        var y0 = Math.min(Math.max(cy - h / 2, 2), ch - h - 2);
        return collides(x0 - LABEL_PAD, y0 - LABEL_PAD, x0 + w + LABEL_PAD, y0 + h + LABEL_PAD, owner)
          ? null : [x0, y0, x0 + w, y0 + h, owner];
      }
      var lines = [], placedNow = {};
      todo.forEach(function (t) {
        var sx = t.cx * s + view.x, sy = t.cy * s + view.y, sr = t.r * s;
        var onScreen = sx + sr > 0 && sx - sr < cw && sy + sr > 0 && sy - sr < ch;
        var el = labelEls[t.key];
        if (!onScreen) { if (el) { el.hidden = true; } return; }
        el = labelFor(t.key, t.text, t.hex, t.big);
        var w = Math.min(labelWidth[t.key], t.big ? 240 : 170, cw - 8), h = t.big ? 22 : 18;
        // the visible part of the region's box: its name stays on screen with it
        var vx0 = Math.max(sx - sr, 0), vx1 = Math.min(sx + sr, cw);
        var vy0 = Math.max(sy - sr, 0), vy1 = Math.min(sy + sr, ch);
        var ax = sx > 0 && sx < cw ? sx : (vx0 + vx1) / 2, ay = sy > 0 && sy < ch ? sy : (vy0 + vy1) / 2;
        if (s >= THUMB_MIN && sr > 3 * h) {  // photos shown: keep the middle ones clear
          ay = Math.max(vy0 + h / 2 + 4, sy - sr + h / 2 + 4);
        }
        var spots = [], last = lastPlace[t.key];
        if (last) {  // where it was, as the view moved: names stay put while panning and zooming
          var k = s / last[2], hx = last[0] * k, hy = last[1] * k;
          var near = s < THUMB_MIN && Math.hypot(hx, hy) <= sr + 3 * h;  // (photos shown: see below)
          if (Math.abs(k - 1) < 0.02 || near) { spots.push([sx + hx, sy + hy]); }
        }
        spots.push([ax, ay], [ax, sy - sr - h / 2 - LABEL_PAD], [ax, sy + sr + h / 2 + LABEL_PAD],
                   [sx - sr - w / 2 - LABEL_PAD, ay], [sx + sr + w / 2 + LABEL_PAD, ay]);
        for (var ring = 1; ring <= 8; ring++) {  // round the region, further and further
          var around = 8 + 4 * ring;
          for (var a = 0; a < around; a++) {
            var ang = (a + 0.5 * (ring % 2)) / around * 2 * Math.PI;
            spots.push([ax + Math.cos(ang) * (sr + ring * h * 1.2), ay + Math.sin(ang) * (sr + ring * h * 0.8)]);
          }
        }
        var placed = null;
        for (var q = 0; q < spots.length && !placed; q++) { placed = free(spots[q][0], spots[q][1], w, h, t.key); }
        // crowded: the free place on screen nearest the region, on a grid, ring by ring
        var stepX = Math.max(w / 4, 12), stepY = h / 2;
        var reach = Math.ceil(Math.max(cw / stepX, ch / stepY));
        for (var ring2 = 1; ring2 <= reach && !placed; ring2++) {
          for (var i2 = -ring2; i2 <= ring2 && !placed; i2++) {
            for (var j2 = -ring2; j2 <= ring2 && !placed; j2 += (Math.abs(i2) === ring2 ? 1 : 2 * ring2)) {
              var gx = ax + i2 * stepX, gy = ay + j2 * stepY;
              if (gx < w / 2 || gx > cw - w / 2 || gy < h / 2 || gy > ch - h / 2) { continue; }
              placed = free(gx, gy, w, h, t.key);
            }
          }
        }
        if (!placed) { el.hidden = true; hidden += 1; return; }
        keep(placed);
        placedNow[t.key] = true;
        lastPlace[t.key] = [(placed[0] + placed[2]) / 2 - sx, (placed[1] + placed[3]) / 2 - sy, s];
        el.hidden = false;
        el.style.transform = "translate(" + Math.round(placed[0]) + "px," + Math.round(placed[1]) + "px)";
        el.style.width = w + "px";
        shown += 1;
        placedLabels.push({ key: t.key, rect: placed.slice(0, 4), cx: sx, cy: sy, r: sr });
        // away from its region: a line leads there
        var lx = Math.min(Math.max(sx, placed[0]), placed[2]), ly = Math.min(Math.max(sy, placed[1]), placed[3]);
        var dist = Math.hypot(lx - sx, ly - sy);
        if (dist > sr + 4 && !t.big) { lines.push([lx, ly, sx + (lx - sx) / dist * sr, sy + (ly - sy) / dist * sr, t.hex]); }
      });
      Object.keys(labelEls).forEach(function (key) {  // names no longer wanted (off screen, say)
        if (!placedNow[key]) { labelEls[key].hidden = true; }
      });
      ctx.lineWidth = 1;
      ctx.globalAlpha = 0.7;
      lines.forEach(function (l) {
        ctx.strokeStyle = l[4];
        ctx.beginPath(); ctx.moveTo(l[0], l[1]); ctx.lineTo(l[2], l[3]); ctx.stroke();
      });
      ctx.globalAlpha = 1;
      stats.labelsShown = shown; stats.labelsHidden = hidden;
    }

    // -- the panel a click opens, the hover tip, the legend --------------------------------
    function baseName(path) { return path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1); }
    function show(p) {
      selected = p;
      draw();
      if (p < 0) { panel.hidden = true; return; }
      var id = labels[p], r = regions[id], rank = ranks[p], group = groups[r.group];
      panel.hidden = false;
      panel.textContent = "";
      var close = element("button", "map-close", "\u00d7");
      close.type = "button"; close.title = "close (Esc)";
      close.addEventListener("click", function () { show(-1); });
      var picture = element("div", "map-photo");
      var title = element("b", "map-name", "rank " + rank + " of " + r.name);
      var where = element("div", "meta");
      where.append(element("span", "swatch-inline"), document.createTextNode(
        r.name + " \u00b7 #" + id + " \u00b7 " + r.count.toLocaleString() + " photos" +
        (group.clusters.length > 1 ? " \u00b7 group " + group.name : "")));
      where.firstChild.style.background = r.hex;
      var lines = element("pre", "map-lines", "\u2026");
      var open = element("a", "map-open", "open the photo");
      open.target = "_blank"; open.rel = "noopener";
      var inCluster = element("a", "map-in-cluster", "see it in its cluster \u2192");
      inCluster.href = "cluster-" + id + "-" + pages[p] + ".html#row" + id + "-" + rank;
      var zoom = element("button", "map-zoom-cluster", "show the whole cluster");
      zoom.type = "button";
      zoom.addEventListener("click", function () { showRegion(id); });
      var links = element("div", "map-links");
      links.append(open, inCluster, zoom);
      panel.append(close, picture, title, where, lines, links);
      var src = thumbOf(p);
      if (src) { var im = element("img"); im.src = src; im.alt = ""; picture.append(im); }
      loadInfo(id).then(function (m) {
        if (selected !== p) { return; }
        var text = m.hover[rank] || "", first = text.indexOf("\n");
        title.textContent = baseName(first < 0 ? text : text.slice(0, first));
        lines.textContent = first < 0 ? "" : text.slice(first + 1);
        open.href = m.originals[rank];
        if (!src && thumbOf(p)) { var im2 = element("img"); im2.src = thumbOf(p); im2.alt = ""; picture.append(im2); }
      }, function () { lines.textContent = ""; });
    }
    function hover(p, clientX, clientY) {
      if (p !== hovered) { hovered = p; draw(); }
      if (p < 0) { tip.hidden = true; return; }
      var id = labels[p], r = regions[id], rank = ranks[p];
      var rect = box.getBoundingClientRect();
      tip.hidden = false;
      tip.style.left = Math.min(clientX - rect.left + 14, rect.width - 260) + "px";
      tip.style.top = Math.min(clientY - rect.top + 14, rect.height - 140) + "px";
      var m = info[id];
      if (!m) {
        tip.textContent = r.name + "\nrank " + rank + "\n\u2026";
        loadInfo(id).then(function () { if (hovered === p) { hover(p, clientX, clientY); } }, function () {});
        return;
      }
      var text = m.hover[rank] || "", first = text.indexOf("\n");
      tip.textContent = baseName(first < 0 ? text : text.slice(0, first)) + "\n" + r.name + "\n" +
        (first < 0 ? "" : text.slice(first + 1));
    }
    var legend = document.getElementById("map-legend-list");
    groups.slice().sort(function (a, b) { return b.size - a.size; }).forEach(function (g) {
      var item = element("button", "map-legend-item");
      item.type = "button";
      var sw = element("span", "swatch"), shades = [];
      g.clusters.forEach(function (id) { if (shades.indexOf(regions[id].hex) < 0) { shades.push(regions[id].hex); } });
      // the group's hue, and the shades its clusters have
      sw.style.background = shades.length > 1 ? "linear-gradient(90deg, " + shades.join(", ") + ")" : g.hex;
      item.append(sw, element("span", "legend-name", g.name),
                  element("span", "legend-size", g.size.toLocaleString()));
      item.title = g.clusters.length > 1 ? g.clusters.length + " clusters" : "cluster #" + g.clusters[0];
      item.dataset.group = g.index;
      item.addEventListener("click", function () { showGroup(g.index); });
      legend.append(item);
    });

    // -- input: drag, click, wheel, keys, buttons ------------------------------------------
    function photoUnder(clientX, clientY) {  // the photo whose cell is under the pointer
      var rect = canvas.getBoundingClientRect();
      var mx = (clientX - rect.left - view.x) / view.scale, my = (clientY - rect.top - view.y) / view.scale;
      var p = photoAt(Math.round(mx), Math.round(my));
      if (p < 0 && view.scale < 4) { p = nearest(mx, my, 4 / view.scale); }  // a pixel is many cells
      return p;
    }
    // One pointer drags (a click when it barely moved); two pinch: the map zooms by how much
    // their distance changed, about their midpoint, and moves with it, within the zoom's bounds.
    var drag = null, pointers = {}, pinch = null;
    canvas.style.touchAction = "none";  // the page must not take the pinch for its own zoom
    function pinchState() {  // distance and midpoint (canvas pixels) of the first two pointers
      var ids2 = Object.keys(pointers).slice(0, 2), a = pointers[ids2[0]], b = pointers[ids2[1]];
      var rect = canvas.getBoundingClientRect();
      return { d: Math.max(Math.hypot(a.x - b.x, a.y - b.y), 1),
               x: (a.x + b.x) / 2 - rect.left, y: (a.y + b.y) / 2 - rect.top };
    }
    function zoomNow(sx, sy, factor, dx, dy) {  // at once (a gesture's own steps are smooth)
      var scale = Math.min(Math.max(view.scale * factor, bounds.minScale), bounds.maxScale);
      var f = scale / view.scale;
      motion = null; tip.hidden = true;
      view.x = sx - (sx - view.x) * f + dx; view.y = sy - (sy - view.y) * f + dy; view.scale = scale;
      draw();
    }
    canvas.addEventListener("pointerdown", function (e) {
      if (e.button !== 0) { return; }
      pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
      motion = null;
      try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a pointer already gone */ }
      if (Object.keys(pointers).length >= 2) {  // a second finger: pinch, no click
        drag = null; pinch = pinchState(); tip.hidden = true;
        return;
      }
      drag = { x: e.clientX, y: e.clientY, moved: false, id: e.pointerId };
    });
    canvas.addEventListener("pointermove", function (e) {
      if (pointers[e.pointerId]) { pointers[e.pointerId] = { x: e.clientX, y: e.clientY }; }
      if (pinch) {
        if (Object.keys(pointers).length < 2) { return; }
        var now = pinchState();
        zoomNow(now.x, now.y, now.d / pinch.d, now.x - pinch.x, now.y - pinch.y);
        stats.pinches += 1;
        pinch = now;
        return;
      }
      if (drag) {
        var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (!drag.moved && Math.abs(dx) + Math.abs(dy) <= 3) { return; }
        drag.moved = true;
        view.x += dx; view.y += dy; drag.x = e.clientX; drag.y = e.clientY;
        tip.hidden = true;
        draw();
        return;
      }
      hover(photoUnder(e.clientX, e.clientY), e.clientX, e.clientY);
    });
    function pointerGone(e) {
      var was = drag, pinched = pinch !== null;
      delete pointers[e.pointerId];
      drag = null;
      if (pinched) {  // the finger left drags on, and never clicks
        pinch = null;
        var rest = Object.keys(pointers);
        if (rest.length === 1) { var q = pointers[rest[0]]; drag = { x: q.x, y: q.y, moved: true, id: +rest[0] }; }
        draw();
        return;
      }
      if (e.type === "pointerup" && was && !was.moved) { show(photoUnder(e.clientX, e.clientY)); } else { draw(); }
    }
    canvas.addEventListener("pointerup", pointerGone);
    canvas.addEventListener("pointercancel", pointerGone);
    canvas.addEventListener("pointerleave", function () { if (!drag) { hover(-1); } });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = canvas.getBoundingClientRect();
      var delta = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
      if (e.ctrlKey) {  // a trackpad's pinch (browsers send it as a wheel with ctrlKey): follow it
        zoomNow(e.clientX - rect.left, e.clientY - rect.top, Math.exp(-delta * PINCH_RATE), 0, 0);
        stats.pinches += 1;
        return;
      }
      zoomAt(e.clientX - rect.left, e.clientY - rect.top, Math.exp(-delta * WHEEL_RATE), ANIMATE_MS);
    }, { passive: false });
    var gestureScale = 1;  // Safari's trackpad pinch: gesture events with a running scale
    canvas.addEventListener("gesturestart", function (e) { e.preventDefault(); gestureScale = 1; });
    canvas.addEventListener("gesturechange", function (e) {
      e.preventDefault();
      var rect = canvas.getBoundingClientRect();
      zoomNow(e.clientX - rect.left, e.clientY - rect.top, e.scale / gestureScale, 0, 0);
      gestureScale = e.scale;
    });
    document.addEventListener("keydown", function (e) {
      var t = e.target;
      if (e.altKey || e.ctrlKey || e.metaKey || (t && /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) { return; }
      var v = target(), step = 0.2, handled = true;
      if (e.key === "ArrowLeft") { animateTo({ scale: v.scale, x: v.x + cw * step, y: v.y }, ANIMATE_MS); }
      else if (e.key === "ArrowRight") { animateTo({ scale: v.scale, x: v.x - cw * step, y: v.y }, ANIMATE_MS); }
      else if (e.key === "ArrowUp") { animateTo({ scale: v.scale, x: v.x, y: v.y + ch * step }, ANIMATE_MS); }
      else if (e.key === "ArrowDown") { animateTo({ scale: v.scale, x: v.x, y: v.y - ch * step }, ANIMATE_MS); }
      else if (e.key === "+" || e.key === "=") { zoomAt(cw / 2, ch / 2, KEY_ZOOM, ANIMATE_MS); }
      else if (e.key === "-" || e.key === "_") { zoomAt(cw / 2, ch / 2, 1 / KEY_ZOOM, ANIMATE_MS); }
      else if (e.key === "0" || e.key === "f" || e.key === "Home") { fit(); }
      else if (e.key === "Escape") { show(-1); }
      else { handled = false; }
      if (handled) { e.preventDefault(); }
    });
    document.getElementById("map-reset").addEventListener("click", fit);
    document.getElementById("map-zoom-in").addEventListener("click", function () { zoomAt(cw / 2, ch / 2, KEY_ZOOM, ANIMATE_MS); });
    document.getElementById("map-zoom-out").addEventListener("click", function () { zoomAt(cw / 2, ch / 2, 1 / KEY_ZOOM, ANIMATE_MS); });
    window.addEventListener("resize", draw);

    // for tests and benchmarks: where photos are on screen, and what is drawn
    function screenOf(p) {  // client coordinates of the middle of photo p's cell
      var rect = canvas.getBoundingClientRect();
      return [cells[2 * p] * view.scale + view.x + rect.left, cells[2 * p + 1] * view.scale + view.y + rect.top];
    }
    function visiblePhotos() {  // photos whose whole cell is on screen
      var s = view.scale, out = [];
      var gx0 = Math.max(0, Math.ceil((-view.x) / s - (minX - 0.5) + 0.5 - 1e-9));
      var gy0 = Math.max(0, Math.ceil((-view.y) / s - (minY - 0.5) + 0.5 - 1e-9));
      for (var gy = gy0; gy < H; gy++) {
        if ((minY + gy + 0.5) * s + view.y > ch) { break; }
        for (var gx = gx0; gx < W; gx++) {
          if ((minX + gx + 0.5) * s + view.x > cw) { break; }
          var p = grid[gy * W + gx] - 1;
          if (p >= 0) { out.push(p); }
        }
      }
      return out;
    }
    function drawnThumbs() {  // [photo, left, top, width, height] in client pixels, as drawn
      var s = view.scale, rect = canvas.getBoundingClientRect(), out = [], side = s - 2 * pad(s);
      if (s < THUMB_MIN) { return out; }
      visiblePhotos().forEach(function (p) {
        var im = cache.get(p);
        if (!im || !im.complete || !im.naturalWidth) { return; }
        var f = side / Math.max(im.naturalWidth, im.naturalHeight);
        var tw = im.naturalWidth * f, th = im.naturalHeight * f;
        var cx = cells[2 * p] * s + view.x + rect.left, cy = cells[2 * p + 1] * s + view.y + rect.top;
        out.push([p, cx - tw / 2, cy - th / 2, tw, th]);
      });
      return out;
    }
    window.imgclustMapApi = {
      view: view, bounds: bounds, n: n, stats: stats, draw: draw, nearest: nearest, show: show,
      fit: fit, zoomAt: zoomAt, screenOf: screenOf, photoUnder: photoUnder,
      visiblePhotos: visiblePhotos, drawnThumbs: drawnThumbs, showRegion: showRegion,
      regions: function () { return ids.map(function (id) { var r = regions[id]; return [id, r.cx, r.cy, r.r]; }); },
      labels: function () { return placedLabels; },
      settled: function () { return !motion && !pending; },
      thumbMin: THUMB_MIN
    };
    sizeCanvas();
    setBounds();
    var start = fitView(minX, minY, maxX, maxY);
    view.x = start.x; view.y = start.y; view.scale = start.scale;
    draw();
  };
}());
