// storyengine studio: live render progress (server-sent events) and the episode player's chapter buttons.
// Hand-written, no dependencies; every page works without it except the live progress.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function watchRender(section) {
  const bars = {}, state = document.getElementById("state"), log = document.getElementById("log");
  const spec = section.dataset.spec;
  const t0 = performance.now();
  const src = new EventSource(section.dataset.events);
  const line = (s) => { log.textContent += s + "\n"; log.scrollTop = log.scrollHeight; };
  const setState = (s) => {
    state.textContent = s; state.className = "state " + s;
    const nav = document.getElementById("nav-job");  // the header's link to this render
    if (nav) { nav.className = "job " + s; nav.textContent = nav.textContent.replace(/\((starting|running|done|failed)\)$/, `(${s})`); }
  };
  function bar(key) {
    if (!bars[key]) {
      const row = el("div", undefined, "bar"), label = el("span"), p = el("progress"), n = el("span", "", "muted");
      p.max = 1; p.value = 0; row.dataset.key = key;
      row.append(label, p, n);
      document.getElementById("bars").append(row);
      bars[key] = { row, label, p, n };
    }
    return bars[key];
  }
  src.addEventListener("started", (m) => { const d = JSON.parse(m.data); setState("running"); line(`started: ${d.label}, ${d.shots} shot(s)`); });
  src.addEventListener("run", (m) => { const d = JSON.parse(m.data); line(`run ${d.run_id}: ${d.series}`); });
  src.addEventListener("progress", (m) => {
    const d = JSON.parse(m.data), b = bar(d.key);
    if (d.done) { b.row.classList.add("finished"); b.p.value = b.p.max; b.n.textContent = "done"; return; }
    if (d.total !== undefined) { b.p.max = Math.max(1, d.total); }
    if (d.description) b.label.textContent = d.description;
    b.p.value = d.completed || 0;
    b.n.textContent = `${d.completed || 0} / ${b.p.max}`;
    document.getElementById("elapsed").textContent = `${d.t.toFixed(1)} s`;
  });
  src.addEventListener("shot", (m) => {
    const d = JSON.parse(m.data), li = el("li");
    const a = el("a", d.shot); a.href = `/series/${encodeURIComponent(spec)}/shots/${encodeURIComponent(d.shot)}`;
    li.append(a, document.createTextNode(` (${d.episode}): `), el("span", d.decision || "—", "v " + (d.decision || "")),
      document.createTextNode(` · ${d.takes} take(s), ${d.generated} generated` + (d.take ? ` · using take ${d.take}` : "")));
    li.dataset.shot = d.shot;
    document.getElementById("shots").append(li);
    line(`shot ${d.shot}: ${d.decision}`);
  });
  src.addEventListener("episode", (m) => {
    const d = JSON.parse(m.data), li = el("li");
    const a = el("a", d.episode); a.href = `/series/${encodeURIComponent(spec)}/episodes/${encodeURIComponent(d.episode)}`;
    li.append(a, document.createTextNode(` · ${Number(d.duration).toFixed(1)} s, ${d.frames} frames${d.reused ? " (unchanged)" : ""}`));
    document.getElementById("episodes").append(li);
    line(`episode ${d.episode} stitched`);
  });
  src.addEventListener("finished", (m) => { const d = JSON.parse(m.data); line(`run ${d.run_id} ${d.status}`); });
  src.addEventListener("end", (m) => {
    const d = JSON.parse(m.data);
    src.close();
    setState(d.state);
    document.getElementById("elapsed").textContent = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    if (d.error) { const f = document.getElementById("failure"); f.textContent = d.error; f.hidden = false; }
    line(`end: ${d.state}`);
  });
  src.onerror = () => { if (src.readyState === EventSource.CLOSED) line("connection closed"); };
}

function chapterButtons() {
  const v = document.getElementById("episode-video");
  if (!v) return;
  document.querySelectorAll("#chapters button[data-start]").forEach((b) => {
    b.addEventListener("click", () => { v.currentTime = parseFloat(b.dataset.start) + 0.01; v.play().catch(() => {}); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const s = document.getElementById("progress");
  if (s && s.dataset.events) watchRender(s);
  chapterButtons();
});
