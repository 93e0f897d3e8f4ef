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
