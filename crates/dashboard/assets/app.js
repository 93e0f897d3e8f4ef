// OpenClaw dashboard: live refresh of <main>, the job log over
// server-sent events, and confirmations. No framework, no build step.
// Nothing here holds a request open: pages settle, so screenshots and
// headless tests (--virtual-time-budget) finish.
"use strict";

// Pages with data-refresh reload their <main> every N seconds, while the
// tab is visible, no form field has focus and no field was edited.
(function refresh() {
  const main = document.getElementById("main");
  const every = main && Number(main.dataset.refresh);
  if (!every) return;
  let edited = false;
  main.addEventListener("input", () => { edited = true; });
  setInterval(async () => {
    if (document.hidden || edited) return;
    const active = document.activeElement;
    if (active && main.contains(active) && active.tagName !== "BODY") return;
    try {
      const r = await fetch(location.href, { headers: { "X-Fragment": "1" } });
      // Logged out (or the dashboard restarted): show the login form.
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) main.innerHTML = await r.text();
    } catch (e) { /* the next tick tries again */ }
  }, every * 1000);
})();

// A job's output: server-sent events that resume by offset. Each response
// sends what is stored and ends; for a running job it ends with a "more"
// event, and the EventSource asks again a second later (its "retry").
// Started after the load event, so the document's load never waits on it.
// The URL is relative: the page's <base> puts it under the dashboard's
// base path.
function followLog() {
  const pre = document.getElementById("log");
  if (!pre) return;
  const status = document.getElementById("log-status");
  const src = new EventSource("jobs/" + pre.dataset.job + "/log");
  // The server ended a response on purpose; the reconnect is the next poll.
  let polling = false;
  const add = (text, cls) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    pre.appendChild(span);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  // The page keeps at most about 2 MB of log; the oldest lines go first.
  const MAX_CHARS = 2 * 1024 * 1024;
  const trim = () => {
    let over = pre.textContent.length - MAX_CHARS;
    while (over > 0 && pre.firstChild) {
      over -= pre.firstChild.textContent.length;
      pre.removeChild(pre.firstChild);
    }
  };
  src.addEventListener("skipped", (e) => {
    const [out, err] = e.data.split(" ");
    add("[earlier output not shown: " + out + " bytes of stdout, " + err +
        " of stderr; 'openclaw job logs " + pre.dataset.job + "' prints it all]\n", "note");
  });
  src.addEventListener("out", (e) => { add(JSON.parse(e.data)); trim(); });
  src.addEventListener("err", (e) => { add(JSON.parse(e.data), "err"); trim(); });
  src.addEventListener("more", () => { polling = true; });
  src.addEventListener("end", (e) => {
    src.close();
    const [state, code] = e.data.split(" ");
    status.textContent = "job " + state + (code ? ", exit code " + code : "");
    const badge = document.getElementById("job-state");
    if (badge) { badge.textContent = state; badge.className = "tag tag-" + state; }
  });
  src.addEventListener("problem", (e) => { src.close(); status.textContent = e.data; });
  src.onerror = () => {
    if (src.readyState === EventSource.CLOSED) {
      status.textContent = "stopped following; reload the page to follow again";
    } else if (!polling) {
      status.textContent = "reconnecting…";
    }
    polling = false;
  };
  src.onopen = () => { status.textContent = "following"; };
}
if (document.readyState === "complete") followLog();
else window.addEventListener("load", followLog);

// Forms with data-confirm ask first.
document.addEventListener("submit", (e) => {
  const msg = e.target.dataset && e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});

// A session's recording (asciicast v2, fetched on Play): its output
// played at its pace into a <pre>, pauses over 2 s cut short. A small
// terminal of our own: escape sequences (colours, cursor moves) are
// dropped, carriage return and backspace move within the line, so a shell
// session reads as it looked, without colours.
function player() {
  const box = document.getElementById("recording");
  if (!box) return;
  const play = document.getElementById("rec-play");
  const screen = document.getElementById("rec-screen");
  const status = document.getElementById("rec-status");
  const speedSel = document.getElementById("rec-speed");
  const MAX_LINES = 5000;
  let timer = null;
  let lines = [];
  let cur = [];
  let col = 0;
  const ESC = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]/g;
  const show = () => { screen.textContent = lines.join("\n") + "\n" + cur.join(""); };
  const write = (text) => {
    for (const ch of text.replace(ESC, "")) {
      if (ch === "\n") {
        lines.push(cur.join(""));
        if (lines.length > MAX_LINES) lines.shift();
        cur = []; col = 0;
      } else if (ch === "\r") {
        col = 0;
      } else if (ch === "\b") {
        col = Math.max(0, col - 1);
      } else if (ch >= " " || ch === "\t") {
        cur[col] = ch; col += 1;
      }
    }
    show();
    screen.scrollTop = screen.scrollHeight;
  };
  play.addEventListener("click", async () => {
    if (timer) { clearTimeout(timer); timer = null; }
    lines = []; cur = []; col = 0; show();
    status.textContent = "loading…";
    let r;
    try { r = await fetch("jobs/" + box.dataset.job + "/cast"); }
    catch (e) { status.textContent = "cannot fetch the recording"; return; }
    if (r.status === 404) { status.textContent = "this job has no recording"; return; }
    if (!r.ok) { status.textContent = "cannot fetch the recording (" + r.status + ")"; return; }
    const events = [];
    for (const line of (await r.text()).split("\n").slice(1)) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line);
        if (Array.isArray(e) && e[1] === "o") events.push(e);
      } catch (e) { status.textContent = "the recording is damaged"; return; }
    }
    const speed = Number(speedSel.value) || 1;
    let i = 0;
    const step = () => {
      if (i >= events.length) { status.textContent = "played"; timer = null; return; }
      const [at, , text] = events[i++];
      write(String(text));
      const next = events[i];
      const gap = next ? Math.min(Math.max(next[0] - at, 0) / speed, 2) : 0;
      timer = setTimeout(step, gap * 1000);
    };
    status.textContent = "playing";
    step();
  });
  // For tests: the Play button works from now on.
  box.dataset.ready = "1";
}
if (document.readyState !== "loading") player();
else document.addEventListener("DOMContentLoaded", player);
