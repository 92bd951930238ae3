// genie serve's page: keys -> step messages over one WebSocket; frames come back as PNG bytes.
"use strict";
const KEYMAP = {ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down",
                w: "w", a: "a", s: "s", d: "d", q: "q", e: "e"};
const held = new Set();
const $ = (id) => document.getElementById(id);
let ws, session = null, inFlight = false, pending = 0, lastTick = 0, urls = {D: null, R: null};

function setStatus(text) { $("status").textContent = text; document.body.dataset.status = text; }
function showError(text) { $("error").textContent = text; }
function send(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  inFlight = true;
  ws.send(JSON.stringify(msg));
}
function step() { send(held.size ? {type: "step", keys: [...held]} : {type: "step"}); }
function settings(fields) { send(Object.assign({type: "settings"}, fields)); }

function onState(s) {
  document.body.dataset.step = s.step;
  $("where").textContent = `${s.level} / ${s.step}`;
  $("real-screen").style.display = s.show_real ? "" : "none";
  $("agent").value = s.agent || "";
  const last = s.last;
  if (!last) { ["action", "coin", "term", "psnr", "returns"].forEach((k) => $(k).textContent = "-"); return; }
  $("action").textContent = `${last.action_name} (${last.by})`;
  $("coin").textContent = last.coin_prob.toFixed(3);
  $("term").textContent = last.termination_prob.toFixed(3);
  $("coin-bar").style.width = `${100 * last.coin_prob}%`;
  $("term-bar").style.width = `${100 * last.termination_prob}%`;
  $("psnr").textContent = last.psnr === null ? "real episode over" : last.psnr === "inf" ? "identical" : `${last.psnr.toFixed(1)} dB`;
  $("returns").textContent = `${last.dream_return.toFixed(2)} / ${last.real_return.toFixed(1)}` +
    (last.dream_ended ? "  (dream ended: next step starts a new level)" : "");
}

function onHello(h) {
  session = h.session;
  $("gif").href = `/session/${session}/episode.gif`;
  const [lo, hi] = h.limits.maskgit_steps;
  for (let k = lo; k <= Math.min(hi, 16); k *= 2) $("maskgit").add(new Option(String(k), String(k)));
  h.agents.forEach((name) => $("agent").add(new Option(name, name)));
  $("level").max = h.limits.max_level;
  setStatus("ready");
}

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const msg = JSON.parse(ev.data);
      if (msg.type === "hello") onHello(msg);
      else if (msg.type === "state") { pending = msg.frames; onState(msg); showError(""); }
      else if (msg.type === "error") { showError(msg.message); inFlight = false; }
      return;
    }
    const bytes = new Uint8Array(ev.data), tag = String.fromCharCode(bytes[0]);
    const url = URL.createObjectURL(new Blob([bytes.subarray(1)], {type: "image/png"}));
    const img = $(tag === "D" ? "dream" : "real");
    img.onload = () => { if (urls[tag]) URL.revokeObjectURL(urls[tag]); urls[tag] = url; };
    img.src = url;
    if (tag === "D") img.dataset.step = document.body.dataset.step;
    if (--pending <= 0) inFlight = false;
  };
  ws.onclose = () => setStatus("disconnected");
}

function loop(now) {
  const interval = 1000 / Math.max(1, Number($("fps").value) || 15);
  if ($("run").checked && !inFlight && session && now - lastTick >= interval) { lastTick = now; step(); }
  requestAnimationFrame(loop);
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" && ev.target.type === "number") return;
  const key = KEYMAP[ev.key] || KEYMAP[ev.key.toLowerCase()];
  if (ev.key === "r" || ev.key === "R") { send({type: "reset"}); return; }
  if (!key) return;
  ev.preventDefault();
  const fresh = !held.has(key);
  held.add(key);
  if (!$("run").checked && fresh && !ev.repeat) step();
});
document.addEventListener("keyup", (ev) => { held.delete(KEYMAP[ev.key] || KEYMAP[ev.key.toLowerCase()]); });
window.addEventListener("blur", () => held.clear());
$("reset").onclick = () => send({type: "reset"});
$("go-level").onclick = () => send({type: "reset", level: Number($("level").value)});
$("show-real").onchange = () => settings({show_real: $("show-real").checked});
$("temperature").oninput = () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(1); };
$("temperature").onchange = () => settings({temperature: Number($("temperature").value)});
$("maskgit").onchange = () => settings({maskgit_steps: Number($("maskgit").value)});
$("agent").onchange = () => settings({agent: $("agent").value || null});
connect();
requestAnimationFrame(loop);
