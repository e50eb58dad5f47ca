/* Model Heritage catalog: search as you type, filters and sorting over window.HERITAGE_INDEX.
 *
 * The index is loaded by a <script> tag (fetch is refused on file://). Without JavaScript
 * the page lists every model; with it, this script shows the first matches only and
 * renders more on request, so each keystroke costs a scan of the rows plus at most
 * PAGE table rows, whatever the size of the catalog. Sort orders are computed once.
 */
(function () {
  "use strict";

  var data = window.HERITAGE_INDEX;
  var form = document.getElementById("filters");
  var body = document.getElementById("models-body");
  if (!data || !form || !body) {
    return;
  }

  var PAGE = 100;
  var F = {};
  data.fields.forEach(function (name, i) {
    F[name] = i;
  });
  var rows = data.models;
  var n = rows.length;
  var names = new Array(n);
  for (var i = 0; i < n; i++) {
    names[i] = rows[i][F.name].toLowerCase();
  }

  var el = {
    q: document.getElementById("q"),
    family: document.getElementById("f-family"),
    arch: document.getElementById("f-arch"),
    format: document.getElementById("f-format"),
    source: document.getElementById("f-source"),
    pmin: document.getElementById("f-pmin"),
    pmax: document.getElementById("f-pmax"),
    from: document.getElementById("f-from"),
    to: document.getElementById("f-to"),
    sort: document.getElementById("f-sort"),
  };
  var count = document.getElementById("count");
  var moreWrap = document.getElementById("more-wrap");
  var moreButton = document.getElementById("more");

  function addOptions(select, values, label) {
    var order = values.map(function (v, i) {
      return i;
    });
    order.sort(function (a, b) {
      var x = label(values[a]).toLowerCase();
      var y = label(values[b]).toLowerCase();
      return x < y ? -1 : x > y ? 1 : 0;
    });
    order.forEach(function (i) {
      select.appendChild(new Option(label(values[i]), String(i)));
    });
  }
  function same(v) {
    return v;
  }
  addOptions(el.family, data.families, function (f) {
    return f[1] + " (" + f[2] + ")";
  });
  addOptions(el.arch, data.archs, same);
  addOptions(el.format, data.formats, same);
  addOptions(el.source, data.sources, same);

  var familySlugs = {};
  data.families.forEach(function (f, i) {
    familySlugs[f[0]] = i;
  });

  // Every sort order, computed once: filtering then walks one of them.
  function byName(a, b) {
    return names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b;
  }
  function byField(field) {
    return function (a, b) {
      var x = rows[a][field];
      var y = rows[b][field];
      if (x === y) {
        return byName(a, b);
      }
      return x < y ? -1 : 1;
    };
  }
  var base = [];
  for (i = 0; i < n; i++) {
    base.push(i);
  }
  var orders = {};
  orders.name = base.slice().sort(byName);
  orders.params = base.slice().sort(byField(F.params));
  orders.date = base.slice().sort(byField(F.date));
  orders["-name"] = orders.name.slice().reverse();
  orders["-params"] = orders.params.slice().reverse();
  orders["-date"] = orders.date.slice().reverse();

  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return ESC[c];
    });
  }
  var SUFFIXES = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  function human(v) {
    if (v < 0) {
      return "–";
    }
    for (var k = 0; k < SUFFIXES.length; k++) {
      if (v >= SUFFIXES[k][0]) {
        var x = v / SUFFIXES[k][0];
        return x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0) + SUFFIXES[k][1];
      }
    }
    return String(v);
  }
  var RELATIONS = {}; // the relations site.css colours, from heritage.lineage.types.Relation
  (data.relations || []).forEach(function (r) {
    RELATIONS[r] = 1;
  });

  function rowHtml(r) {
    var fam = r[F.family] >= 0 ? data.families[r[F.family]] : null;
    var fmt = data.formats[r[F.format]];
    var src = data.sources[r[F.source]];
    var date = r[F.date] || "–";
    var rel = r[F.relation];
    var h = '<tr><td class="name"><a href="models/' + r[F.slug] + '.html">' + esc(r[F.name]) + "</a>";
    if (r[F.status] === "failed") {
      h += ' <span class="badge bad">failed</span>';
    }
    h += '<span class="sub">' + (fam ? '<span class="sub-fam">' + esc(fam[1]) + " · </span>" : "");
    h += (rel ? esc(rel) + " · " : "") + esc(fmt) + " · " + esc(src) + " · " + date + "</span></td>";
    h += '<td class="num">' + human(r[F.params]) + "</td>";
    h += '<td class="num opt">' + (r[F.layers] >= 0 ? r[F.layers] : "–") + "</td>";
    h += fam
      ? '<td class="opt-s"><a class="badge fam fc' + fam[3] + '" href="families/' + fam[0] +
        '.html" title="Family of ' + fam[2] + ' models">' + esc(fam[1]) + "</a></td>"
      : '<td class="opt-s"><span class="muted">–</span></td>';
    h += rel
      ? '<td class="opt"><span class="rel' + (RELATIONS[rel] ? " rel-" + rel : "") + '">' + esc(rel) + "</span></td>"
      : '<td class="opt"><span class="muted">–</span></td>';
    h += '<td class="opt">' + esc(fmt) + '</td><td class="opt">' + esc(src) + "</td>";
    h += '<td class="opt nowrap">' + date + "</td></tr>";
    return h;
  }

  var limit = PAGE;
  var hits = [];

  function current() {
    return {
      q: el.q.value.trim().toLowerCase(),
      family: el.family.value === "" ? -1 : +el.family.value,
      arch: el.arch.value === "" ? -1 : +el.arch.value,
      format: el.format.value === "" ? -1 : +el.format.value,
      source: el.source.value === "" ? -1 : +el.source.value,
      pmin: el.pmin.value === "" ? -1 : +el.pmin.value,
      pmax: el.pmax.value === "" ? -1 : +el.pmax.value,
      from: el.from.value,
      to: el.to.value,
      sort: orders[el.sort.value] ? el.sort.value : "name",
    };
  }

  function filter(s) {
    var order = orders[s.sort];
    var out = [];
    for (var k = 0; k < n; k++) {
      var idx = order[k];
      var r = rows[idx];
      if (s.q && names[idx].indexOf(s.q) < 0) continue;
      if (s.family >= 0 && r[F.family] !== s.family) continue;
      if (s.arch >= 0 && r[F.arch] !== s.arch) continue;
      if (s.format >= 0 && r[F.format] !== s.format) continue;
      if (s.source >= 0 && r[F.source] !== s.source) continue;
      if (s.pmin >= 0 && r[F.params] < s.pmin) continue;
      if (s.pmax >= 0 && (r[F.params] < 0 || r[F.params] >= s.pmax)) continue;
      if (s.from && (!r[F.date] || r[F.date] < s.from)) continue;
      if (s.to && (!r[F.date] || r[F.date] > s.to)) continue;
      out.push(idx);
    }
    return out;
  }

  function render() {
    var shown = Math.min(limit, hits.length);
    var parts = new Array(shown);
    for (var k = 0; k < shown; k++) {
      parts[k] = rowHtml(rows[hits[k]]);
    }
    if (!hits.length) {
      parts.push('<tr><td class="empty-row" colspan="8">No models match. Try a shorter name or clear the filters.</td></tr>');
    }
    body.innerHTML = parts.join("");
    var total = hits.length.toLocaleString("en-US");
    if (hits.length === n) {
      count.textContent = shown < n ? "Showing " + shown + " of " + total + " models" : total + " models";
    } else {
      count.textContent =
        total + (hits.length === 1 ? " model matches" : " models match") +
        (shown < hits.length ? " (showing " + shown + ")" : "");
    }
    moreWrap.hidden = shown >= hits.length;
  }

  var KEYS = ["q", "family", "arch", "format", "source", "pmin", "pmax", "from", "to", "sort"];

  function saveState() {
    var params = new URLSearchParams();
    KEYS.forEach(function (key) {
      var v = el[key].value;
      if (key === "family" && v !== "") {
        v = data.families[+v][0];
      }
      if (v !== "" && !(key === "sort" && v === "name")) {
        params.set(key, v);
      }
    });
    var hash = params.toString();
    try {
      history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
    } catch (e) {
      /* some file:// setups refuse history changes; the filters still work */
    }
  }

  function loadState() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    KEYS.forEach(function (key) {
      var v = params.get(key);
      if (v === null) return;
      if (key === "family") {
        v = familySlugs.hasOwnProperty(v) ? String(familySlugs[v]) : "";
      }
      el[key].value = v;
    });
  }

  function update() {
    var t0 = performance.now();
    limit = PAGE;
    hits = filter(current());
    render();
    form.setAttribute("data-ms", (performance.now() - t0).toFixed(2));
  }

  form.addEventListener("input", function () {
    update();
    saveState();
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
  });
  form.addEventListener("reset", function () {
    setTimeout(function () {
      update();
      saveState();
    }, 0);
  });
  moreButton.addEventListener("click", function () {
    limit += PAGE;
    render();
  });
  window.addEventListener("hashchange", function () {
    loadState();
    update();
  });

  form.hidden = false;
  loadState();
  update();
})();
