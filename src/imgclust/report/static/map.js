/* imgclust map: every image a point on a canvas, coloured by cluster. Plain JavaScript.
   Points are written straight into an ImageData buffer (no per-point canvas calls), so a
   frame of 100k points costs a few milliseconds; redraws are batched per animation frame.
   Clicks find the nearest point through a uniform grid built once. Zoomed in until at most
   THUMB_VIEW points are in view, points become thumbnails: the thumbnail names come from the
   clusters' members-N.js (loaded once, by gallery.js), at most IN_FLIGHT images load at a
   time (only those still in view), and at most CACHE_MAX are kept. */
(function () {
  "use strict";
  function decode(b64, Type) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    return new Type(bytes.buffer);
  }
  function colour(id) {  // golden-angle hues: neighbouring ids get distinct colours
    var h = (id * 137.508) % 360, s = 0.65, l = 0.6;
    var c = (1 - Math.abs(2 * l - 1)) * s, x = c * (1 - Math.abs((h / 60) % 2 - 1)), m = l - c / 2;
    var rgb = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] :
      h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
    return rgb.map(function (v) { return Math.round((v + m) * 255); });
  }

  var THUMB_VIEW = 400, IN_FLIGHT = 12, CACHE_MAX = 1000;

  window.imgclustMap = function (meta, xyB64, labelB64, rankB64, pageB64) {
    var xy = decode(xyB64, Float32Array), labels = decode(labelB64, Int32Array);
    var ranks = decode(rankB64, Int32Array), pages = decode(pageB64, Int32Array), n = meta.n;
    var canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
    var info = document.getElementById("map-info");
    var minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity, i;
    for (i = 0; i < n; i++) {
      var x = xy[2 * i], y = xy[2 * i + 1];
      if (x < minX) { minX = x; } if (x > maxX) { maxX = x; }
      if (y < minY) { minY = y; } if (y > maxY) { maxY = y; }
    }
    var palette = {};
    Object.keys(meta.clusters).forEach(function (id) { palette[id] = colour(+id); });
    var view = {};
    function reset() {
      var w = canvas.clientWidth, h = canvas.clientHeight;
      var span = Math.max(maxX - minX, maxY - minY) || 1;
      view.scale = view.base = 0.92 * Math.min(w, h) / span;
      view.x = w / 2 - view.scale * (minX + maxX) / 2;
      view.y = h / 2 - view.scale * (minY + maxY) / 2;
      draw();
    }
    var pending = false, selected = -1;
    function draw() {
      if (pending) { return; }
      pending = true;
      requestAnimationFrame(function () {
        pending = false;
        var w = canvas.width = canvas.clientWidth, h = canvas.height = canvas.clientHeight;
        var img = ctx.createImageData(w, h), px = img.data;
        var r = (n <= 2000 ? 5 : n <= 20000 ? 3 : 1) + (view.scale > 6 * view.base ? 2 : 0);
        var inView = [];
        for (var j = 0; j < n; j++) {
          var sx = Math.round(xy[2 * j] * view.scale + view.x - r / 2);
          var sy = Math.round(xy[2 * j + 1] * view.scale + view.y - r / 2);
          if (sx < 0 || sy < 0 || sx >= w - r || sy >= h - r) { continue; }
          if (inView.length <= THUMB_VIEW) { inView.push(j); }
          var c = palette[labels[j]] || [200, 200, 200];
          for (var dy = 0; dy < r; dy++) {
            for (var dx = 0; dx < r; dx++) {
              var o = ((sy + dy) * w + sx + dx) * 4;
              px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
            }
          }
        }
        ctx.putImageData(img, 0, 0);
        stats.inView = inView.length;  // THUMB_VIEW + 1: more than that
        stats.thumbsDrawn = inView.length <= THUMB_VIEW ? drawThumbs(inView, w, h) : 0;
        if (selected >= 0) {
          ctx.strokeStyle = "#fff";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.arc(xy[2 * selected] * view.scale + view.x, xy[2 * selected + 1] * view.scale + view.y,
                  7, 0, 2 * Math.PI);
          ctx.stroke();
        }
        window.imgclustMapDrawn = (window.imgclustMapDrawn || 0) + 1;
      });
    }
    // thumbnails, when few points are in view
    var thumbNames = {};  // cluster id -> thumbnail paths by rank (null: none), or "loading"
    var cache = new Map();  // image -> Image element, oldest first
    var loading = 0, stats = { inView: 0, thumbsDrawn: 0, loading: 0, loaded: 0,
                                 maxLoading: 0 };
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
    function drawThumbs(inView, w, h) {
      var side = Math.max(24, Math.min(meta.thumbSize, 0.9 * Math.sqrt(w * h / inView.length)));
      var drawn = 0, wanted = [];
      inView.sort(function (a, b) { return ranks[b] - ranks[a]; });  // nearest the centre on top
      inView.forEach(function (p) {
        var src = thumbOf(p);
        if (!src) { return; }
        var im = cache.get(p);
        if (!im) { wanted.push([p, src]); return; }
        if (!im.complete || !im.naturalWidth) { return; }
        cache.delete(p); cache.set(p, im);  // most recently used last
        var f = side / Math.max(im.naturalWidth, im.naturalHeight);
        var tw = im.naturalWidth * f, th = im.naturalHeight * f;
        var cx = xy[2 * p] * view.scale + view.x, cy = xy[2 * p + 1] * view.scale + view.y;
        ctx.drawImage(im, cx - tw / 2, cy - th / 2, tw, th);
        ctx.strokeStyle = "rgb(" + (palette[labels[p]] || [200, 200, 200]).join(",") + ")";
        ctx.lineWidth = 2;
        ctx.strokeRect(cx - tw / 2, cy - th / 2, tw, th);
        drawn += 1;
      });
      for (var k = wanted.length - 1; k >= 0 && loading < IN_FLIGHT; k--) {  // nearest first
        request(wanted[k][0], wanted[k][1]);
      }
      return drawn;
    }

    // a uniform grid over data space for nearest-point lookups
    var G = Math.max(1, Math.round(Math.sqrt(n / 4))), cells = new Map();
    var gw = (maxX - minX) / G || 1, gh = (maxY - minY) / G || 1;
    for (i = 0; i < n; i++) {
      var key = Math.min(G - 1, Math.floor((xy[2 * i] - minX) / gw)) * G +
        Math.min(G - 1, Math.floor((xy[2 * i + 1] - minY) / gh));
      var list = cells.get(key);
      if (list) { list.push(i); } else { cells.set(key, [i]); }
    }
    function nearest(dataX, dataY, maxDist) {
      var cx = Math.floor((dataX - minX) / gw), cy = Math.floor((dataY - minY) / gh);
      var reach = Math.ceil(maxDist / Math.min(gw, gh)), best = -1, bestD = maxDist * maxDist;
      for (var a = cx - reach; a <= cx + reach; a++) {
        for (var b = cy - reach; b <= cy + reach; b++) {
          if (a < 0 || b < 0 || a >= G || b >= G) { continue; }
          var members = cells.get(a * G + b) || [];
          for (var k = 0; k < members.length; k++) {
            var p = members[k], ddx = xy[2 * p] - dataX, ddy = xy[2 * p + 1] - dataY;
            var d = ddx * ddx + ddy * ddy;
            if (d < bestD) { bestD = d; best = p; }
          }
        }
      }
      return best;
    }
    function show(p) {
      selected = p;
      draw();
      if (p < 0) { info.hidden = true; return; }
      var id = labels[p], c = meta.clusters[id], rank = ranks[p];
      var page = "cluster-" + id + "-" + pages[p] + ".html";
      info.hidden = false;
      info.textContent = "";
      var title = document.createElement("b");
      title.textContent = c[0];
      var line = document.createElement("div");
      line.className = "meta";
      line.textContent = "#" + id + " · " + c[1].toLocaleString() + " images · rank " + rank;
      var open = document.createElement("a");
      open.href = page + "#row" + id + "-" + rank;
      open.textContent = "open this image in its cluster →";
      info.append(title, line, open);
    }
    var drag = null, moved = false;
    canvas.addEventListener("mousedown", function (e) {
      drag = { x: e.clientX, y: e.clientY }; moved = false;
    });
    window.addEventListener("mousemove", function (e) {
      if (!drag) { return; }
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) { moved = true; }
      view.x += dx; view.y += dy; drag = { x: e.clientX, y: e.clientY };
      draw();
    });
    window.addEventListener("mouseup", function () { drag = null; });
    canvas.addEventListener("click", function (e) {
      if (moved) { return; }
      var rect = canvas.getBoundingClientRect();
      var dataX = (e.clientX - rect.left - view.x) / view.scale;
      var dataY = (e.clientY - rect.top - view.y) / view.scale;
      show(nearest(dataX, dataY, 8 / view.scale));
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = canvas.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
      var f = Math.exp(-e.deltaY * 0.0015);
      view.x = mx - (mx - view.x) * f; view.y = my - (my - view.y) * f; view.scale *= f;
      draw();
    }, { passive: false });
    document.getElementById("map-reset").addEventListener("click", reset);
    window.addEventListener("resize", draw);
    window.imgclustMapApi = { view: view, nearest: nearest, show: show, n: n, stats: stats,
                              draw: draw };
    reset();
  };
}());
