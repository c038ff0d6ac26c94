// Map preview of one layer: vector tiles from this service on a MapLibre GL JS map.
// Works offline: the base style is a plain background unless a basemap style URL is configured, and
// an unreachable basemap falls back to the plain style. After each render settles ("idle") the page
// exposes what it shows in window.hdxPreview and in data-* attributes of #map (read by the tests).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("preview-config").textContent);
  var mapElement = document.getElementById("map");
  var statusElement = document.getElementById("status");
  var SOURCE = "layer";
  var COLOURS = { fill: "#1f77b4", line: "#0b3d66", point: "#d62728" };
  var PLAIN_STYLE = {
    version: 8,
    sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#eef2f5" } }],
  };

  var resolveReady;
  var state = {
    ready: false,
    renderedFeatureCount: 0,
    errors: [],
    whenReady: new Promise(function (resolve) { resolveReady = resolve; }),
  };
  window.hdxPreview = state;

  function serviceUrl() {
    // A page embedding the map elsewhere (CKAN's map view) names the service; this service's own page is
    // <prefix>/preview/<layer> and its tiles are <prefix>/gis/<layer>/... (works behind a path proxy).
    if (config.serviceUrl) return config.serviceUrl.replace(/\/+$/, "");
    var path = window.location.pathname;
    return window.location.origin + path.slice(0, path.lastIndexOf("/preview/"));
  }

  function tileUrl() {
    var fields = ["ogc_fid"].concat(config.fields.filter(function (name) { return name !== "ogc_fid"; }));
    var quoted = fields.map(function (name) { return '"' + name.replace(/"/g, '""') + '"'; }).join(",");
    return serviceUrl() + "/gis/" + encodeURIComponent(config.layerId) +
      "/{z}/{x}/{y}.pbf?geom=" + encodeURIComponent(config.geom) + "&fields=" + encodeURIComponent(quoted);
  }

  function kinds() {
    var type = (config.geometryType || "").toLowerCase();
    if (type.indexOf("polygon") >= 0) return ["fill", "line"];
    if (type.indexOf("line") >= 0) return ["line"];
    if (type.indexOf("point") >= 0) return ["point"];
    return ["fill", "line", "point"]; // mixed or unknown: draw whatever each feature is
  }

  function styleLayers() {
    var common = { source: SOURCE, "source-layer": config.layerId };
    var byKind = {
      fill: { id: "layer-fill", type: "fill", filter: ["==", "$type", "Polygon"],
        paint: { "fill-color": COLOURS.fill, "fill-opacity": 0.45 } },
      line: { id: "layer-line", type: "line", filter: ["!=", "$type", "Point"],
        paint: { "line-color": COLOURS.line, "line-width": ["interpolate", ["linear"], ["zoom"], 2, 0.5, 12, 2] } },
      point: { id: "layer-point", type: "circle", filter: ["==", "$type", "Point"],
        paint: { "circle-color": COLOURS.point, "circle-radius": 5, "circle-stroke-color": "#fff",
          "circle-stroke-width": 1 } },
    };
    return kinds().map(function (kind) { return Object.assign({}, common, byKind[kind]); });
  }

  function layerIds() {
    return styleLayers().map(function (layer) { return layer.id; });
  }

  function addLayer(map) {
    if (map.getSource(SOURCE)) return;
    map.addSource(SOURCE, {
      type: "vector",
      tiles: [tileUrl()],
      minzoom: 0,
      maxzoom: Math.min(16, config.maxZoom),
      bounds: config.bounds || undefined,
    });
    styleLayers().forEach(function (layer) { map.addLayer(layer); });
  }

  function popupContent(feature) {
    var table = document.createElement("table");
    table.className = "popup-table";
    var rows = [["id", feature.id]].concat(Object.entries(feature.properties));
    rows.forEach(function (pair) {
      var row = table.insertRow();
      var head = document.createElement("th");
      head.textContent = pair[0];
      row.appendChild(head);
      row.insertCell().textContent = pair[1] === undefined || pair[1] === null ? "" : String(pair[1]);
    });
    return table;
  }

  function updateState(map) {
    var ids = layerIds().filter(function (id) { return map.getLayer(id); });
    var seen = new Set();
    map.queryRenderedFeatures({ layers: ids }).forEach(function (feature) {
      seen.add(feature.id !== undefined ? feature.id : JSON.stringify(feature.properties));
    });
    state.renderedFeatureCount = seen.size;
    state.ready = true;
    mapElement.dataset.state = "ready";
    mapElement.dataset.renderedFeatures = String(seen.size);
    statusElement.textContent = seen.size + " features in view";
    resolveReady(state);
  }

  var options = {
    container: mapElement,
    style: config.basemapStyleUrl || PLAIN_STYLE,
    attributionControl: false,
    maxZoom: config.maxZoom,
  };
  if (config.bounds) {
    options.bounds = config.bounds;
    options.fitBoundsOptions = { padding: 30, maxZoom: 15 };
  }
  var map = new maplibregl.Map(options);
  state.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.addControl(new maplibregl.ScaleControl());

  var styleLoaded = false;
  map.on("style.load", function () {
    styleLoaded = true;
    addLayer(map);
  });
  map.on("error", function (event) {
    var message = event && event.error ? event.error.message : String(event);
    state.errors.push(message);
    if (!styleLoaded && config.basemapStyleUrl) {
      config.basemapStyleUrl = null; // basemap unreachable (offline?): show the layer on the plain style
      map.setStyle(PLAIN_STYLE);
    }
  });
  map.on("idle", function () { if (map.getSource(SOURCE)) updateState(map); });

  map.on("click", function (event) {
    var ids = layerIds().filter(function (id) { return map.getLayer(id); });
    var features = map.queryRenderedFeatures(event.point, { layers: ids });
    if (!features.length) return;
    new maplibregl.Popup({ maxWidth: "360px" })
      .setLngLat(event.lngLat)
      .setDOMContent(popupContent(features[0]))
      .addTo(map);
  });
  map.on("mousemove", function (event) {
    var ids = layerIds().filter(function (id) { return map.getLayer(id); });
    var hit = map.queryRenderedFeatures(event.point, { layers: ids }).length > 0;
    map.getCanvas().style.cursor = hit ? "pointer" : "";
  });
})();
