/* minescape report: the map (Leaflet), its layers, the legend and the site panel. Data: window.MINESCAPE_REPORT. */
(function () {
  "use strict";
  var D = window.MINESCAPE_REPORT;
  var MAX_SITE_MAPS = 300; // per-site class maps drawn at once (those in view)
  var map = L.map("map", { preferCanvas: true, zoomSnap: 0.25 });
  map.createPane("rasters").style.zIndex = 350;
  map.getPane("rasters").style.pointerEvents = "none";
  var control = L.control.layers(null, null, { collapsed: false }).addTo(map);
  L.control.scale({ imperial: false }).addTo(map);
  var bounds = L.latLngBounds([]);
  var featureLayers = [];
  var hasSites = D.layers.some(function (l) { return l.kind === "sites"; });

  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function fmt(v, d) {
    return Number(v).toLocaleString("en", { maximumFractionDigits: d });
  }
  function row(k, v) {
    return v === null || v === undefined || v === "" ? "" : "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>";
  }
  function siteHtml(p) {
    var h = '<h3 class="site-id">Site ' + esc(p.id) + "</h3><table class=\"attrs\">";
    h += row("status", p.status) + row("reason", p.reason) + row("year", p.year) + row("year rule", p.rule);
    h += row("scene", p.scene) + row("scene date", p.scene_date);
    h += row("cloud share", p.cloud_share === null || p.cloud_share === undefined ? null : fmt(p.cloud_share, 4));
    [["composite", "composite"], ["n_scenes", "scenes in composite"], ["scenes", "scenes used"],
     ["clear_observations", "clear observations"], ["imagery_notes", "imagery notes"]].forEach(function (k) {
      var v = p[k[0]];
      var sep = k[0] === "imagery_notes" ? "; " : ", ";  // notes hold commas of their own
      if (v !== undefined && v !== null) h += row(k[1], Array.isArray(v) ? v.join(sep) : v);
    });
    h += row("largest class", p.dominant) + "</table>";
    var names = Object.keys(p.areas || {});
    if (names.length) {
      h += '<table class="areas"><thead><tr><th>class</th><th>area (m²)</th><th>area (ha)</th></tr></thead><tbody>';
      names.forEach(function (n) {
        h += "<tr><td>" + esc(n) + '</td><td class="num">' + fmt(p.areas[n], 1) + '</td><td class="num">' +
          fmt(p.areas[n] / 1e4, 2) + "</td></tr>";
      });
      h += "</tbody></table>";
    }
    if (p.quicklook) h += '<img class="quicklook" alt="quicklook of ' + esc(p.id) + '" src="' + esc(p.quicklook) + '">';
    return h;
  }
  function classHtml(p) {
    return '<h3 class="site-id">Polygon ' + esc(p.id) + '</h3><table class="attrs">' + row("class", p.class_name) +
      row("area (m²)", fmt(p.area_m2, 1)) + row("area (ha)", fmt(p.area_m2 / 1e4, 2)) + row("year", p.year) +
      row("region", p.region) + "</table>";
  }
  var selected = null;
  function show(kind, p, l, g) {
    document.getElementById("site-info").innerHTML = kind === "sites" ? siteHtml(p) : classHtml(p);
    if (selected) selected.g.resetStyle(selected.l);
    l.setStyle({ weight: 4, color: "#111" });
    selected = { l: l, g: g };
  }

  D.images.forEach(function (im, i) {
    var b = L.latLngBounds([im.bounds[0], im.bounds[1]], [im.bounds[2], im.bounds[3]]);
    var lyr = L.imageOverlay(im.src, b, { pane: "rasters" });
    // the change mask and a map product's class map on by default; ramps one click away
    if (im.style === "change" || im.style === "classes") lyr.addTo(map);
    control.addOverlay(lyr, esc(im.name));
    bounds.extend(b);
  });

  D.layers.forEach(function (layer) {
    var g = L.geoJSON(layer.features, {
      style: function (f) {
        var p = f.properties;
        return { color: p.color, weight: 2, opacity: 0.95, fillColor: p.color,
                 fillOpacity: layer.kind === "sites" ? 0.12 : 0.6, dashArray: p.status && p.status !== "ok" ? "4 3" : null };
      },
      onEachFeature: function (f, l) {
        l.on("click", function () { show(layer.kind, f.properties, l, g); });
      }
    });
    g.minescapeKind = layer.kind;
    // class polygons of a release cover the site layers: on by default only when there are no sites
    if (layer.kind === "sites" || !hasSites) g.addTo(map);
    control.addOverlay(g, esc(layer.name) + " (" + layer.features.features.length + ")");
    featureLayers.push(g);
    if (g.getLayers().length) bounds.extend(g.getBounds());
    var ids = Object.keys(layer.overlays || {});
    if (ids.length) {
      var group = L.layerGroup().addTo(map);
      control.addOverlay(group, esc(layer.name) + ": class maps");
      var shown = {};
      var boxes = ids.map(function (id) {
        var o = layer.overlays[id];
        return { id: id, src: o.src, b: L.latLngBounds([o.bounds[0], o.bounds[1]], [o.bounds[2], o.bounds[3]]) };
      });
      var update = function () {
        if (!map.hasLayer(group)) return;
        var view = map.getBounds();
        var inView = boxes.filter(function (x) { return view.intersects(x.b); });
        var keep = {};
        if (inView.length <= MAX_SITE_MAPS) inView.forEach(function (x) { keep[x.id] = x; });
        Object.keys(shown).forEach(function (id) {
          if (!keep[id]) { group.removeLayer(shown[id]); delete shown[id]; }
        });
        Object.keys(keep).forEach(function (id) {
          if (!shown[id]) {
            shown[id] = L.imageOverlay(keep[id].src, keep[id].b, { pane: "rasters" });
            group.addLayer(shown[id]);
          }
        });
        document.getElementById("map-hint").textContent = inView.length > MAX_SITE_MAPS ?
          inView.length + " sites in view: zoom in to see their class maps" : "";
      };
      map.on("moveend overlayadd", update);
      map.whenReady(update);
    }
  });

  var hint = L.control({ position: "bottomleft" });
  hint.onAdd = function () { var d = L.DomUtil.create("div", "map-hint"); d.id = "map-hint"; return d; };
  hint.addTo(map);

  var lg = document.getElementById("legend");
  lg.innerHTML = D.legends.map(function (l) {
    return "<h4>" + esc(l.title) + "</h4><ul>" + l.items.map(function (it) {
      return '<li><span class="swatch" style="background:' + esc(it[1]) + '"></span>' + esc(it[0]) + "</li>";
    }).join("") + "</ul>";
  }).join("");

  if (bounds.isValid()) map.fitBounds(bounds, { padding: [10, 10] });
  else map.setView([0, 0], 2);

  window.minescapeReport = {
    map: map,
    layers: featureLayers,
    featureCount: function (kind) {
      return featureLayers.reduce(function (n, g) {
        return n + (kind === undefined || g.minescapeKind === kind ? g.getLayers().length : 0);
      }, 0);
    },
    ready: true
  };
})();
