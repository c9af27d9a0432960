// flatsat console: renders the frames the server pushes; every chart is drawn by plotly.js.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PLOT_CONFIG = { displaylogo: false, responsive: true, topojsonURL: "/vendor/topojson/" };
const STORE_KEY = "flatsat-console-plots";

const ui = { meta: null, view: null, ws: null, nextId: 1, plots: [], fieldsKnown: [], faultSchemas: [],
  sliderHeld: false, mapDrawn: false, outbox: [], member: null, plotsMade: false, stale: false,
  steerEdited: false };

// -- formatting -------------------------------------------------------------------------------------------
function esc(v) {
  return String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function num(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v !== "number") return esc(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : v.toFixed(digits);
}
function dur(s) {
  if (s === null || s === undefined) return "–";
  const sign = s < 0 ? "-" : "";
  s = Math.abs(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${sign}${h}h${String(m).padStart(2, "0")}m` : `${sign}${m}m${String(sec).padStart(2, "0")}s`;
}
function setHTML(el, html) { if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; } }
function kv(el, rows) {
  setHTML(el, rows.map(([k, v, cls]) => `<dt>${esc(k)}</dt><dd class="${cls || ""}">${v}</dd>`).join(""));
}
// keyed rows: a row (and its buttons) is made once and then only its cells change, so a click is never lost
function keyedRows(tbody, items, key, make, update) {
  const seen = new Set();
  for (const item of items) {
    const id = key(item);
    seen.add(id);
    let row = tbody.querySelector(`[data-key="${CSS.escape(id)}"]`);
    if (!row) { row = make(item); row.dataset.key = id; tbody.appendChild(row); }
    update(row, item);
  }
  for (const row of [...tbody.children]) if (row.dataset.key && !seen.has(row.dataset.key)) row.remove();
}
function cell(row, i, html, cls) {
  const td = row.children[i];
  if (td.dataset.html !== html) { td.innerHTML = html; td.dataset.html = html; }
  if (cls !== undefined) td.className = cls;
}
function stamp(utc) { return utc ? esc(utc.replace("T", " ").replace("Z", "")) : "–"; }

// -- the feed ---------------------------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  ui.ws = ws;
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    const fn = { meta: onMeta, view: onView, series: onSeries, map: onMap, reply: onReply, error: onError }[msg.type];
    if (fn) fn(msg);
  };
  ws.onopen = () => {
    setBadge("#link-state", "page linked", "ok");
    if (ui.member != null) send({ op: "member", member: ui.member });
    sendPlots();
    for (const obj of ui.outbox.splice(0)) ws.send(JSON.stringify(obj));
  };
  ws.onclose = () => {
    setBadge("#link-state", "page link lost: reconnecting", "bad");
    setTimeout(connect, 1000);
  };
}
// what the page sends while its link is down goes out when it is back (a command is never dropped silently)
function send(obj) {
  if (ui.ws && ui.ws.readyState === WebSocket.OPEN) ui.ws.send(JSON.stringify(obj));
  else if (obj.op === "command") ui.outbox.push(obj);
}
function setBadge(sel, text, cls) { const el = $(sel); el.textContent = text; el.className = `badge ${cls || ""}`; }

function onMeta(m) {
  ui.meta = m;
  const live = m.mode === "live";
  $("#steer").hidden = !live;
  $("#playback").hidden = live;
  $("#fault-form").hidden = !live;
  renderStatus();
  if (JSON.stringify(m.fault_schemas) !== JSON.stringify(ui.faultSchemas)) {
    ui.faultSchemas = m.fault_schemas || [];
    buildFaultSelect();
  }
  if (m.fields && m.fields.length !== ui.fieldsKnown.length) {
    ui.fieldsKnown = m.fields;
    $("#field-list").innerHTML = m.fields.map((f) => `<option value="${esc(f)}">`).join("");
  }
}

// the source badge and the banner, from the link (meta) and the requests' answers (view)
function renderStatus() {
  const m = ui.meta, v = ui.view;
  if (!m) return;
  const problems = [];
  if (m.error) problems.push(m.error);
  if (m.mode === "live") {
    const unanswered = v && v.requests ? v.requests.unanswered_s : null;
    let state = "", cls = "ok";
    if (!m.connected) { state = " · unreachable"; cls = "bad"; }
    else if (unanswered != null) {
      state = ` · not answering for ${Math.round(unanswered)} s`; cls = "bad";
      problems.push(`the emulator has not answered the console's requests for ${Math.round(unanswered)} s: ` +
        "the values shown may be stale and commands may not be carried out");
    }
    ui.stale = cls === "bad";
    setBadge("#source", `live ${m.source}${state}`, cls);
  } else {
    ui.stale = false;
    setBadge("#source", `recording ${m.source}`, "warn");
  }
  if (m.predict_error) problems.push(`orbit predictions unavailable: ${m.predict_error}`);
  $("#banner").hidden = problems.length === 0;
  $("#banner").textContent = problems.join(" · ");
  const notes = m.notes || [];
  $("#note").hidden = notes.length === 0;
  $("#note").textContent = notes.join(" · ");
}

// -- a cluster: one member at a time ----------------------------------------------------------------------
function renderMemberPick(cl) {
  $("#member-pick").hidden = !cl;
  if (!cl) return;
  const sel = $("#member");
  if (sel.options.length !== cl.n) {
    sel.innerHTML = cl.names.map((n, k) => `<option value="${k}">${k} ${esc(n)}${cl.bound.includes(k) ? " (board)" : ""}</option>`).join("");
  }
  if (document.activeElement !== sel) sel.value = String(cl.member);
  if (ui.member == null) ui.member = cl.member;
}
// a plot of a member's field follows the member shown: satellite.<path>.<k>, satellite.members.<k>.<path>
function memberField(f, from, to) {
  if (f.startsWith(`satellite.members.${from}.`)) return `satellite.members.${to}.${f.slice(`satellite.members.${from}.`.length)}`;
  if (f.startsWith("satellite.") && !f.startsWith("satellite.isl.") && f.endsWith(`.${from}`)) return `${f.slice(0, -String(from).length)}${to}`;
  return f;
}
function pickMember(k) {
  const from = ui.member;
  ui.member = k;
  if (from != null && from !== k) for (const p of ui.plots) p.fields = p.fields.map((f) => memberField(f, from, k));
  send({ op: "member", member: k });
  changed();
}

// -- panels -----------------------------------------------------------------------------------------------
function onView(v) {
  ui.view = v;
  renderStatus();
  renderMemberPick(v.cluster);
  if (!ui.plotsMade && ui.fieldsKnown.length) { ui.plotsMade = true; defaultPlots(); }
  const c = v.clock || {};
  $("#sim-utc").textContent = v.utc ? v.utc.replace("T", " ") : "–";
  // a clock the console no longer hears from is not shown as running
  setBadge("#clock-mode", c.paused ? `${c.mode} · paused` : (c.mode || "–"),
    !c.mode ? "" : ui.stale ? "off" : c.paused ? "warn" : "ok");
  $("#clock-speed").textContent = !c.mode ? "–" : ui.stale ? `×${num(c.speed, 2)} (last known)`
    : `×${num(c.speed, 2)} (achieved ×${num(c.realtime_factor, 1)})`;
  // the steering bar starts at, and follows, the run's mode and speed, unless the user is changing them
  if (c.mode && !ui.steerEdited && ![$("#mode"), $("#speed")].includes(document.activeElement)) {
    $("#mode").value = c.mode;
    if (typeof c.speed === "number") $("#speed").value = String(c.speed);
  }
  $("#clock-lag").textContent = c.mode ? `lag ${num((c.lag_s || 0) * 1e3, 2)} ms · overruns ${num(c.overruns)}` : "–";
  const b = v.battery, bus = v.bus;
  kv($("#power"), [
    ["state of charge", b.soc == null ? "–" : `${num(100 * b.soc, 1)} %`],
    ["gauge estimate", b.soc_est == null ? "–" : `${num(100 * b.soc_est, 1)} %`],
    ["battery", `${num(b.voltage_v, 2)} V · ${num(b.current_a, 2)} A ${b.current_a > 0 ? "(charging)" : b.current_a < 0 ? "(discharging)" : ""}`],
    ["open-circuit", `${num(b.ocv_v, 2)} V`],
    ["bus", `${num(bus.bus_v, 2)} V`],
    ["shed mode", esc(bus.mode ?? "–"), bus.mode === "normal" || bus.mode === "full" ? "on" : "bad"],
    // each array by name (the name a fault form's "array" field takes), then the total
    ...(bus.arrays || []).map((a) => [`array ${a.name}`, `${num(a.power_w, 1)} W` +
      (a.alive == null ? "" : ` · strings alive ${num(100 * a.alive, 0)} %`), a.alive != null && a.alive < 1 ? "bad" : ""]),
    [(bus.arrays || []).length ? "arrays total" : "arrays", `${num(bus.array_w, 1)} W`], ["shunt", `${num(bus.shunt_w, 1)} W`],
    ["cells alive", b.cells_alive ? esc(b.cells_alive.join(" ")) : "–"],
  ]);
  renderRails(v.rails);
  renderThermal(v.thermal);
  const a = v.accel;
  kv($("#accel"), [
    ["state", esc(a.state ?? "–"), a.state === "busy" || a.state === "idle" ? "on" : a.state === "off" ? "off" : "bad"],
    ["level / clock", `${esc(a.level ?? "–")} · ${num(a.clock_mhz, 0)} MHz`],
    ["utilisation", a.utilisation == null ? "–" : `${num(100 * a.utilisation, 1)} %`],
    ["die", `${num(a.die_temp_degc, 1)} °C · throttle ${esc(a.throttle ?? "–")}`],
    ["power", `${num(a.load_w, 1)} W`], ["queue", num(a.queue_len)],
    ["jobs done / failed / corrupted", `${num(a.jobs_done)} / ${num(a.jobs_failed)} / ${num(a.jobs_corrupted)}`],
  ]);
  const r = v.radiation;
  kv($("#radiation"), [
    ["dose", `${num(r.dose_krad, 4)} krad`], ["dose rate", `${num(r.dose_rate_rad_s)} rad/s`],
    ["region", r.in_saa == null ? "–" : r.in_saa ? "SAA" : r.in_polar_horn ? "polar horn" : "quiet", r.in_saa ? "bad" : ""],
    ["events", Object.entries(r.counts || {}).map(([k, n]) => `${esc(k)} ${n}`).join(" · ") || "–"],
    ["unhandled", num(r.unhandled)], ["rate scale", `×${num(r.scale, 2)}`],
  ]);
  setHTML($("#rad-events"), (r.events || []).slice().reverse().map((e) =>
    `<li><span class="t">${stamp(e.utc)}</span>${esc(e.kind)} chip ${esc(e.chip)} ${esc(e.region)} → ${esc(e.effect)}</li>`).join(""));
  renderOrbit(v.orbit);
  kv($("#clock"), [
    ["mode", esc(c.mode ?? "–")], ["paused", num(c.paused)], ["speed", `×${num(c.speed, 3)}`],
    ["achieved", `×${num(c.realtime_factor, 2)}`], ["sim time", c.t_ns == null ? "–" : `${num(c.t_ns / 1e9, 1)} s`],
    ["lag / max", c.lag_s == null ? "–" : `${num(c.lag_s * 1e3, 3)} / ${num(c.max_lag_s * 1e3, 3)} ms`],
    ["overruns", num(c.overruns)], ["steps", num(c.steps)],
  ]);
  renderLinks(v.links || {}, v.stats || {}, v.cluster, v.boards);
  renderFaults(v.faults || []);
  setHTML($("#events"), (v.events || []).map((e) =>
    `<li><span class="t">${stamp(e.utc)}</span><b>${esc(e.topic)}</b> ${esc(e.text)}</li>`).join(""));
  if (v.playback && !ui.sliderHeld && ui.meta && ui.meta.recording) {
    const rec = ui.meta.recording, span = Math.max(1, rec.t1_ns - rec.t0_ns);
    $("#slider").value = String(Math.round(1000 * (v.playback.cursor_ns - rec.t0_ns) / span));
    $("#slider-time").textContent = `${stamp(v.utc)} (${v.playback.playing ? "playing" : "paused"})`;
  }
}

function railState(r) {
  if (r.latched) return ["LATCHED", "bad"];
  if (r.tripped) return ["TRIPPED", "bad"];
  return r.on ? ["ON", "on"] : ["OFF", "off"];
}
function renderRails(rails) {
  const live = ui.meta && ui.meta.mode === "live";
  keyedRows($("#rails tbody"), rails, (r) => r.name, (r) => {
    const tr = document.createElement("tr");
    tr.id = `rail-${r.name}`;
    tr.innerHTML = `<td>${esc(r.name)}</td>` + "<td></td>".repeat(7) + "<td class=\"act\"></td>";
    if (live) {
      tr.lastChild.innerHTML = ["on", "off", "reset"].map((a) =>
        `<button data-rail="${esc(r.name)}" data-act="${a}">${a[0].toUpperCase() + a.slice(1)}</button>`).join(" ");
    }
    return tr;
  }, (tr, r) => {
    const [state, cls] = railState(r);
    tr.dataset.state = state;
    cell(tr, 1, state, `state ${cls}`);
    cell(tr, 2, r.commanded_on == null ? "–" : r.commanded_on ? "on" : "off");
    cell(tr, 3, num(r.current_a)); cell(tr, 4, num(r.voltage_v, 2)); cell(tr, 5, num(r.power_w, 2));
    cell(tr, 6, num(r.trips)); cell(tr, 7, num(r.short_a, 2));
  });
}
function renderThermal(t) {
  setHTML($("#temps tbody"), Object.entries(t.temps_degc || {}).map(([n, d]) =>
    `<tr><td>${esc(n)}</td><td>${num(d, 1)} °C</td></tr>`).join(""));
  const live = ui.meta && ui.meta.mode === "live";
  keyedRows($("#heaters tbody"), t.heaters || [], (h) => h.name, (h) => {
    const tr = document.createElement("tr");
    tr.id = `heater-${h.name}`;
    tr.innerHTML = `<td>${esc(h.name)}</td><td></td><td></td><td></td><td></td>`;
    if (live) {
      tr.lastChild.innerHTML = `<select data-heater-mode="${esc(h.name)}">${["auto", "on", "off"].map((m) =>
        `<option${m === h.mode ? " selected" : ""}>${m}</option>`).join("")}</select>
        <button data-heater="${esc(h.name)}">Set</button>`;
    }
    return tr;
  }, (tr, h) => {
    tr.dataset.mode = h.mode ?? "";
    cell(tr, 1, esc(h.mode ?? "–"));
    // the thermostat's "on" heats nothing while the heater's rail is off
    const unpowered = h.on && h.powered === false;
    cell(tr, 2, unpowered ? `on (no power: rail ${esc(h.rail)} off)` : h.on ? "on" : "off",
      unpowered ? "bad" : h.on ? "on" : "off");
    cell(tr, 3, h.on_below_degc == null ? "–" : `${num(h.on_below_degc, 0)} / ${num(h.off_above_degc, 0)}`);
  });
}
function renderOrbit(o) {
  const e = o.next_eclipse, now = o.eclipse_now;
  kv($("#orbit"), [
    ["sun", o.in_eclipse == null ? "–" : o.in_eclipse ? "eclipse" : "sunlit", o.in_eclipse ? "bad" : "on"],
    ["sunlit fraction", num(o.sunlit_frac, 2)],
    ["eclipse ends", now ? (now.exit_utc ? `${stamp(now.exit_utc)} (in ${dur(now.exit_in_s)})` : "beyond the horizon") : "–"],
    ["next eclipse entry", e && e.entry_utc ? `${stamp(e.entry_utc)} (in ${dur(e.entry_in_s)})` : "–"],
    ["next eclipse exit", e && e.exit_utc ? `${stamp(e.exit_utc)} (in ${dur(e.exit_in_s)})` : "–"],
    ["beta", `${num(o.beta_deg, 2)}°`], ["period", o.period_s ? dur(o.period_s) : "–"],
    ["lat / lon", `${num(o.lat_deg, 2)}° / ${num(o.lon_deg, 2)}°`], ["altitude", `${num(o.alt_km, 1)} km`],
    ["local solar time", `${num(o.local_solar_time_h, 2)} h`],
    ["SAA / polar horn", `${num(o.in_saa)} / ${num(o.in_polar_horn)}`, o.in_saa ? "bad" : ""],
  ]);
}
function renderLinks(l, st, cl, boards) {
  const rows = [];
  if (cl) {
    rows.push(["fleet", `${esc(cl.name)}: ${num(cl.n)} members; shown: ${num(cl.member)} ${esc(cl.names[cl.member])}`]);
    const isl = cl.isl || {};
    rows.push(["fleet ISL ring", `links ${num(isl.ring_links)} · down ${num(isl.ring_down)} · ` +
      `min ${num(isl.ring_min_gbps, 0)} Gbps · max ${num(isl.ring_max_km, 2)} km`]);
  }
  for (const name of ["board", "control"]) {
    const s = l[name];
    if (!s) continue;
    if (name === "board" && Array.isArray(boards) && !boards.length) {
      // the board plane listening is no board link: no board has said hello
      rows.push(["board link", `no board connected (board plane ${s.is_up ? "listening" : "down"})`, "off"]);
    } else {
      rows.push([`${name} link`, `${s.is_up ? "up" : "down"} · reconnects ${num(s.reconnects)}`, s.is_up ? "on" : "bad"]);
    }
    // counts may be plain or by reason ({"hwm": 3, ...}): show every reason with its count
    const fmt = (n) => (n && typeof n === "object"
      ? Object.entries(n).map(([k, v]) => `${esc(k)} ${num(v)}`).join(", ") || "none" : num(n));
    const drops = Object.entries(s).filter(([k]) => /drop|bad_frames|decode_errors|refused/.test(k))
      .map(([k, n]) => `${esc(k)}: ${fmt(n)}`).join(" · ");
    rows.push([`${name} drops`, drops || "–"]);
  }
  for (const [board, b] of Object.entries(l.boards || {})) {
    rows.push([`board ${board}`, [b.lag_s != null ? `lag ${num(b.lag_s * 1e3, 1)} ms` : "",
      b.rtt_p50_ms != null ? `RTT p50 ${num(b.rtt_p50_ms, 2)} / p99 ${num(b.rtt_p99_ms, 2)} / max ${num(b.rtt_max_ms, 2)} ms` : ""]
      .filter(Boolean).join(" · ") || "–"]);
  }
  if (st.commands) rows.push(["commands board / control", `${num(st.commands.board)} / ${num(st.commands.control)}`]);
  if (st.rejected) rows.push(["refused board / control", `${num(st.rejected.board)} / ${num(st.rejected.control)}`]);
  if (st.boards) rows.push(["boards seen", esc(Object.keys(st.boards).join(", ") || "none")]);
  kv($("#links"), rows.length ? rows : [["links", "–"]]);
}
// a fault's expiry: the sim time (UTC, as the header shows it) and how much sim time is left
function expiry(untilNs) {
  const v = ui.view;
  if (!(untilNs > 0)) return "until cleared";
  if (!v || v.unix_ms == null) return `until sim t = ${num(untilNs / 1e9, 0)} s`;
  const utc = new Date(v.unix_ms + (untilNs - v.t_ns) / 1e6).toISOString().replace(/\.\d+Z$/, "Z");
  return `until ${stamp(utc)} sim time (${dur(Math.max(0, (untilNs - v.t_ns) / 1e9))} left)`;
}
function renderFaults(faults) {
  const live = ui.meta && ui.meta.mode === "live";
  const list = $("#faults-active");
  keyedRows(list, faults, (f) => String(f.fault_id), (f) => {
    const li = document.createElement("li");
    li.dataset.faultId = f.fault_id;
    li.dataset.faultName = f.name;
    // a permanent fault (its schema says it cannot be cleared) gets no Clear button: it would always be refused
    const schema = ui.faultSchemas.find((x) => x.name === f.name);
    const permanent = schema ? schema.clearable === false : false;
    li.innerHTML = `<span></span> ${live && !permanent ? `<button data-clear="${f.fault_id}">Clear</button>` : ""}`;
    return li;
  }, (li, f) => {
    const schema = ui.faultSchemas.find((x) => x.name === f.name);
    const html = `<b>#${f.fault_id} ${esc(f.name)}</b> ${esc(JSON.stringify(f.params))} ` +
      (schema && schema.clearable === false ? "permanent" : expiry(f.until_ns));
    if (li.firstChild.dataset.html !== html) { li.firstChild.innerHTML = html; li.firstChild.dataset.html = html; }
  });
  let none = list.querySelector(".none");
  if (!faults.length && !none) { none = document.createElement("li"); none.className = "doc none"; none.textContent = "none"; list.appendChild(none); }
  if (faults.length && none) none.remove();
}

// -- the map (plotly scattergeo) --------------------------------------------------------------------------
function onMap(m) {
  const line = (d, name, color, dash) => ({ type: "scattergeo", mode: "lines", name, lat: d.lat, lon: d.lon,
    line: { color, width: 2, dash: dash || "solid" }, hoverinfo: "skip" });
  const traces = [];
  if (m.saa_outline) {
    traces.push({ type: "scattergeo", mode: "lines", name: "SAA", lat: m.saa_outline.lat_deg,
      lon: m.saa_outline.lon_deg, fill: "toself", fillcolor: "rgba(198,40,40,0.12)",
      line: { color: "rgba(198,40,40,0.6)", width: 1 }, hoverinfo: "name" });
  }
  traces.push(line(m.past.sunlit, "sunlit", "#e3a008"), line(m.past.eclipse, "eclipse", "#1d3a8a"));
  traces.push(line(m.ahead.sunlit, "ahead, sunlit", "rgba(227,160,8,0.55)", "dot"),
    line(m.ahead.eclipse, "ahead, eclipse", "rgba(29,58,138,0.55)", "dot"));
  traces.push({ type: "scattergeo", mode: "markers", name: "in SAA", lat: m.past.saa.lat, lon: m.past.saa.lon,
    marker: { color: "#c62828", size: 4 }, hoverinfo: "name" });
  if (m.now) {
    traces.push({ type: "scattergeo", mode: "markers", name: "now", lat: [m.now.lat_deg], lon: [m.now.lon_deg],
      marker: { size: 11, color: m.now.sunlit ? "#e3a008" : "#1d3a8a", line: { color: "#000", width: 1 } } });
  }
  const layout = { margin: { l: 0, r: 0, t: 0, b: 0 }, showlegend: true, legend: { orientation: "h", y: -0.02 },
    geo: { projection: { type: "equirectangular" }, showland: true, landcolor: "#e8ebe4", showocean: true,
      oceancolor: "#dce9f5", showcountries: true, countrycolor: "#c8ccd2", coastlinecolor: "#9aa3ad",
      lataxis: { range: [-90, 90] }, lonaxis: { range: [-180, 180] } }, uirevision: "map" };
  Plotly.react("map", traces, layout, PLOT_CONFIG);
  ui.mapDrawn = true;
}

// -- plots ------------------------------------------------------------------------------------------------
function savePlots() {
  localStorage.setItem(STORE_KEY, JSON.stringify(ui.plots.map((p) => ({ fields: p.fields, window_s: p.window_s }))));
}
function loadPlots() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch (e) { return null; }
}
function defaultPlots() {
  const saved = loadPlots();
  const have = new Set(ui.fieldsKnown);
  if (saved && saved.length) {
    saved.forEach((p) => addPlot(p.fields, p.window_s));
    return;
  }
  // a cluster's member fields end in .<member>: satellite.power.soc.40
  const cl = ui.view && ui.view.cluster, sfx = cl ? `.${cl.member}` : "";
  const pick = (names) => names.map((f) => f + sfx).filter((f) => have.has(f));
  const temps = ui.fieldsKnown.filter((f) => f.startsWith("satellite.thermal.temps_degc.") &&
    (!cl || f.endsWith(sfx))).slice(0, 8);
  const sets = [pick(["satellite.power.soc"]), pick(["satellite.power.bus_v", "satellite.power.battery_v"]),
    temps, pick(cl ? ["satellite.accelerator.load_w"] : ["satellite.accelerator.utilisation"])];
  const any = sets.some((s) => s.length);
  if (!any) {
    const first = ui.fieldsKnown.filter((f) => !f.startsWith("sim."))[0];
    if (first) addPlot([first], 1800);
    return;
  }
  sets.filter((s) => s.length).forEach((s) => addPlot(s, 1800));
}
function addPlot(fields, windowS) {
  const id = `p${ui.nextId++}`;
  const div = document.createElement("div");
  div.className = "plot";
  div.id = `plot-${id}`;
  div.innerHTML = `<div class="head"><span class="fields"></span>
    <input class="add-field" list="field-list" placeholder="add a field" size="28">
    <select class="window">${$("#plot-window").innerHTML}</select>
    <button class="remove" title="remove this plot">✕</button></div><div class="chart" id="chart-${id}"></div>`;
  $("#plots").appendChild(div);
  const plot = { id, fields: fields.slice(), window_s: windowS, div };
  div.querySelector(".window").value = String(windowS);
  div.querySelector(".window").addEventListener("change", (e) => { plot.window_s = Number(e.target.value); changed(); });
  div.querySelector(".remove").addEventListener("click", () => {
    Plotly.purge(`chart-${id}`); div.remove(); ui.plots = ui.plots.filter((p) => p !== plot); changed();
  });
  div.querySelector(".add-field").addEventListener("change", (e) => {
    const f = e.target.value.trim();
    if (f && !plot.fields.includes(f)) { plot.fields.push(f); changed(); }
    e.target.value = "";
  });
  div.querySelector(".fields").addEventListener("click", (e) => {
    const f = e.target.dataset.drop;
    if (f) { plot.fields = plot.fields.filter((x) => x !== f); changed(); }
  });
  ui.plots.push(plot);
  drawFieldChips(plot);
  changed();
}
function drawFieldChips(plot) {
  plot.div.querySelector(".fields").innerHTML = plot.fields.map((f) =>
    `<span class="chip">${esc(f)}<button data-drop="${esc(f)}" title="remove">×</button></span>`).join(" ");
}
function changed() { ui.plots.forEach(drawFieldChips); savePlots(); sendPlots(); }
function sendPlots() {
  send({ op: "plots", plots: ui.plots.map((p) => ({ id: p.id, fields: p.fields, window_s: p.window_s })) });
}
function onSeries(msg) {
  for (const plot of ui.plots) {
    const d = msg.plots[plot.id];
    if (!d) continue;
    const traces = d.series.map((s) => ({ type: "scatter", mode: "lines", name: s.field, x: s.x, y: s.y,
      connectgaps: false, line: { width: 1.5 } }));
    const shapes = d.eclipses.map(([a, b]) => ({ type: "rect", xref: "x", yref: "paper", x0: a, x1: b, y0: 0, y1: 1,
      fillcolor: "rgba(29,58,138,0.13)", line: { width: 0 }, layer: "below" }));
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: d.now, x1: d.now, y0: 0, y1: 1,
      line: { color: "rgba(0,0,0,0.35)", width: 1, dash: "dot" } });
    const missing = plot.fields.filter((f) => !d.fields.includes(f) || !d.series.find((s) => s.field === f));
    const layout = { margin: { l: 50, r: 10, t: 6, b: 30 }, showlegend: true,
      legend: { orientation: "h", y: -0.18, font: { size: 10 } },
      xaxis: { type: "date", range: [d.x0, d.x1] }, yaxis: { automargin: true }, shapes, uirevision: plot.id,
      annotations: missing.length ? [{ text: `no data (yet) for ${missing.join(", ")}`, xref: "paper", yref: "paper",
        x: 0.5, y: 0.5, showarrow: false, font: { color: "#667085" } }] : [] };
    Plotly.react(`chart-${plot.id}`, traces, layout, PLOT_CONFIG);
    plot.div.dataset.points = String(d.series.reduce((n, s) => n + s.x.length, 0));
    plot.div.dataset.lastX = String(Math.max(0, ...d.series.map((s) => (s.x.length ? s.x[s.x.length - 1] : 0))));
  }
}

// the number in a box, or null after saying what is wrong (an empty box is not 0: nothing is sent)
function typedNumber(sel, what) {
  const el = $(sel), text = el.value.trim(), n = Number(text);
  if (text === "" || !Number.isFinite(n) || el.validity.badInput) {
    refuseHere(`${what}${text ? `, not ${JSON.stringify(text)}` : ""}; nothing was sent`);
    return null;
  }
  return n;
}
function refuseHere(message) {
  const li = document.createElement("li");
  li.className = "err";
  li.dataset.ok = "0";
  li.textContent = `✘ ${message}`;
  $("#cmd-log").prepend(li);
}

// -- commands ---------------------------------------------------------------------------------------------
const pending = new Map();
function command(topic, payload, label) {
  const id = ui.nextId++;
  pending.set(id, label || topic);
  send({ op: "command", id, topic, payload: payload || {} });
}
function board(topic, payload) {
  command("board.command", { topic, payload }, `${topic} ${JSON.stringify(payload)}`);
}
function onReply(r) {
  const label = pending.get(r.id) || r.topic;
  pending.delete(r.id);
  const li = document.createElement("li");
  const when = ui.view && ui.view.utc ? ui.view.utc.slice(11, 19) : "";
  if (r.ok) {
    li.className = "ok";
    li.dataset.ok = "1";
    li.innerHTML = `<span class="t">${esc(when)}</span>✔ ${esc(label)}: ${esc(JSON.stringify(r.data || {}))}`;
  } else {
    const e = r.error || {};
    li.className = "err";
    li.dataset.ok = "0";
    li.innerHTML = `<span class="t">${esc(when)}</span>✘ ${esc(label)}: ${esc(e.message || "refused")}` +
      (e.field ? ` <i>(field ${esc(e.field)})</i>` : "") + (e.valid ? ` valid: ${esc(e.valid.join(", "))}` : "");
  }
  $("#cmd-log").prepend(li);
  while ($("#cmd-log").children.length > 100) $("#cmd-log").lastChild.remove();
}
function onError(e) {
  const li = document.createElement("li");
  li.className = "err";
  li.textContent = `console: ${e.message}`;
  $("#cmd-log").prepend(li);
}

// -- faults: forms from the fault schemas -----------------------------------------------------------------
function buildFaultSelect() {
  $("#fault-name").innerHTML = ui.faultSchemas.map((f) => `<option value="${esc(f.name)}">${esc(f.name)}</option>`).join("");
  buildFaultFields();
}
function propType(p) {
  if (p.type) return p.type;
  const types = (p.anyOf || []).map((x) => x.type);
  if (types.includes("integer") && types.includes("string")) return "index-or-name";
  const alt = (p.anyOf || []).find((x) => x.type && x.type !== "null");
  return alt ? alt.type : "string";
}
function suggestions(name) {
  const v = ui.view || {};
  if (name === "rail") return (v.rails || []).map((r) => r.name);
  if (name === "heater") return ((v.thermal || {}).heaters || []).map((h) => h.name);
  if (name === "node") return Object.keys((v.thermal || {}).temps_degc || {});
  if (name === "array") return ((v.bus || {}).arrays || []).map((a) => a.name);
  return [];
}
function buildFaultFields() {
  const f = ui.faultSchemas.find((x) => x.name === $("#fault-name").value);
  const box = $("#fault-fields");
  if (!f) { box.innerHTML = ""; $("#fault-doc").textContent = ""; return; }
  $("#fault-doc").textContent = f.doc + (f.clearable ? "" : " (permanent: cannot be cleared)");
  const props = (f.params && f.params.properties) || {};
  const required = new Set((f.params && f.params.required) || []);
  const rows = Object.entries(props).map(([name, p]) => {
    const type = propType(p), unit = p.unit ? ` ${esc(p.unit)}` : "";
    const req = required.has(name) ? " required" : "";
    const dflt = p.default !== undefined && p.default !== null ? p.default : "";
    let input;
    const en = p.enum || ((p.anyOf || []).find((x) => x.enum) || {}).enum;
    if (en) {
      input = `<select name="${esc(name)}" data-type="string">${en.map((o) =>
        `<option${o === dflt ? " selected" : ""}>${esc(o)}</option>`).join("")}</select>`;
    } else if (type === "boolean") {
      input = `<input type="checkbox" name="${esc(name)}" data-type="boolean"${dflt === true ? " checked" : ""}>`;
    } else if (type === "index-or-name") {
      input = `<input type="text" name="${esc(name)}" data-type="index-or-name" value="${esc(dflt)}"` +
        ` placeholder="index or name"${req}>`;
    } else if (type === "integer" || type === "number") {
      const min = p.minimum ?? p.exclusiveMinimum, max = p.maximum ?? p.exclusiveMaximum;
      input = `<input type="number" name="${esc(name)}" data-type="${type}" step="${type === "integer" ? 1 : "any"}"` +
        `${min !== undefined ? ` min="${min}"` : ""}${max !== undefined ? ` max="${max}"` : ""} value="${esc(dflt)}"${req}>`;
    } else {
      const list = suggestions(name);
      const dl = list.length ? `<datalist id="dl-${esc(name)}">${list.map((o) => `<option value="${esc(o)}">`).join("")}</datalist>` : "";
      input = `<input type="text" name="${esc(name)}" data-type="string" value="${esc(dflt)}"` +
        `${list.length ? ` list="dl-${esc(name)}"` : ""}${req}>${dl}`;
    }
    return `<label>${esc(name)}${unit} ${input}<span class="help">${esc(p.description || "")}</span></label>`;
  });
  if (f.clearable) {
    rows.push(`<label>duration s <input type="number" name="__duration_s" min="0" step="any" placeholder="until cleared">` +
      `<span class="help">clear automatically after this much sim time (empty: until cleared)</span></label>`);
  }
  box.innerHTML = rows.join("");
}
function injectFault(ev) {
  ev.preventDefault();
  const name = $("#fault-name").value;
  const params = {};
  let duration = null;
  for (const el of $("#fault-fields").querySelectorAll("[name]")) {
    const t = el.dataset.type;
    if (el.name === "__duration_s") {
      if (el.value.trim() !== "" || el.validity.badInput) {
        duration = Number(el.value.trim());
        if (el.validity.badInput || !Number.isFinite(duration)) {
          refuseHere("duration s: enter a number of seconds, or leave it empty (until cleared); nothing was sent");
          return;
        }
      }
      continue;
    }
    if (t === "boolean") { params[el.name] = el.checked; continue; }
    if (el.value === "") continue; // the emulator applies its default, or says the field is required
    const text = el.value.trim();
    // an index is sent as a number and a name as text: "sat-0" must never become member 0
    if (t === "index-or-name") params[el.name] = /^\d+$/.test(text) ? Number(text) : text;
    else params[el.name] = t === "integer" || t === "number" ? Number(el.value) : el.value;
  }
  const payload = { name, params };
  if (duration !== null) payload.duration_s = duration;
  command("fault.inject", payload, `fault.inject ${name} ${JSON.stringify(params)}${duration !== null ? ` for ${duration} s` : ""}`);
}

// -- wiring -----------------------------------------------------------------------------------------------
function wire() {
  document.body.addEventListener("click", (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement)) return;
    if (t.dataset.cmd) command(t.dataset.cmd, {});
    if (t.dataset.rail) {
      const rail = t.dataset.rail;
      if (t.dataset.act === "reset") board("eps.rail.reset", { rail });
      else board("eps.rail.set", { rail, on: t.dataset.act === "on" });
    }
    if (t.dataset.heater) {
      const mode = document.querySelector(`select[data-heater-mode="${CSS.escape(t.dataset.heater)}"]`).value;
      board("thermal.heater.set", { heater: t.dataset.heater, mode });
    }
    if (t.dataset.clear) command("fault.clear", { fault_id: Number(t.dataset.clear) });
  });
  $("#btn-step").addEventListener("click", () => {
    const s = typedNumber("#step-s", "step: enter a number of seconds");
    if (s !== null) command("clock.step", { duration_s: s });
  });
  $("#btn-speed").addEventListener("click", () => {
    const speed = typedNumber("#speed", "speed: enter a number (the wall-clock multiplier)");
    if (speed !== null) { ui.steerEdited = false; command("clock.set_speed", { speed }); }
  });
  $("#btn-mode").addEventListener("click", () => {
    const mode = $("#mode").value, payload = { mode };
    if (mode === "scaled") {
      payload.speed = typedNumber("#speed", "speed: enter a number (the wall-clock multiplier) for scaled mode");
      if (payload.speed === null) return;
    }
    ui.steerEdited = false;
    command("clock.set_mode", payload);
  });
  for (const sel of ["#speed", "#mode"]) $(sel).addEventListener("input", () => { ui.steerEdited = true; });
  $("#fault-name").addEventListener("change", buildFaultFields);
  $("#member").addEventListener("change", (e) => pickMember(Number(e.target.value)));
  $("#fault-form").addEventListener("submit", injectFault);
  $("#plot-add").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = $("#plot-field").value.trim();
    if (f) addPlot([f], Number($("#plot-window").value));
    $("#plot-field").value = "";
  });
  $("#btn-play").addEventListener("click", () => send({ op: "play", speed: Number($("#play-speed").value) }));
  $("#btn-stop").addEventListener("click", () => send({ op: "pause" }));
  const slider = $("#slider");
  const seek = () => {
    const rec = ui.meta && ui.meta.recording;
    if (!rec) return;
    const t = rec.t0_ns + Math.round((rec.t1_ns - rec.t0_ns) * Number(slider.value) / 1000);
    send({ op: "seek", t_ns: t });
  };
  slider.addEventListener("pointerdown", () => { ui.sliderHeld = true; });
  slider.addEventListener("pointerup", () => { ui.sliderHeld = false; });
  slider.addEventListener("input", seek);
  slider.addEventListener("change", () => { ui.sliderHeld = false; seek(); });
}

wire();
connect();
