// A console in the browser: the page's fragment holds a single-use token; the websocket
// (through the front door, after its login check) first says what the console is, then
// carries a VNC stream (drawn by noVNC) or a terminal's bytes (drawn by xterm.js).
import RFB from "/_hc/novnc/core/rfb.js";

const PREFIX = "/_hc/console/";
const name = decodeURIComponent(location.pathname.slice(PREFIX.length));
const token = location.hash.slice(1);
const status = document.getElementById("status");
const note = document.getElementById("note");
const screen = document.getElementById("screen");
document.getElementById("name").textContent = name;
document.title = `${name}: homecloud console`;
// The token is used up on connecting: a reload needs a new link, so do not keep it around.
history.replaceState(null, "", location.pathname);

function say(text, closed = false) {
  status.textContent = text;
  status.classList.toggle("closed", closed);
}

function showScreen(ws) {
  const rfb = new RFB(screen, ws, { shared: true });
  rfb.scaleViewport = true;  // scaled to the window
  rfb.resizeSession = false;
  const cad = document.getElementById("cad");
  cad.hidden = false;
  cad.onclick = () => { rfb.sendCtrlAltDel(); rfb.focus(); };
  note.textContent = "Scaled to the window; the VM sets its own resolution. No clipboard: " +
    "QEMU's VNC server does not share one.";
  rfb.addEventListener("connect", () => { say("connected"); rfb.focus(); });
  rfb.addEventListener("disconnect", (e) =>
    say(e.detail.clean ? "closed" : "connection lost", true));
  window.hcConsole = { kind: "screen", rfb };
}

function showTerminal(ws, text) {
  const term = new Terminal({ cursorBlink: true, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  const encoder = new TextEncoder();
  const resize = () => {
    fit.fit();
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [term.cols, term.rows] }));
  };
  term.onData((data) => ws.send(encoder.encode(data)));
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") term.write(new Uint8Array(event.data));
  };
  window.addEventListener("resize", resize);
  resize();
  term.focus();
  note.textContent = text || "Copy: select; paste: Ctrl-Shift-V. Resizes with the window.";
  say("connected");
  window.hcConsole = { kind: "terminal", term };
}

if (!token) {
  say(`this link has no token: run \`hc console ${name}\` for a new one`, true);
} else {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/_hc/console-ws/` +
    `${encodeURIComponent(name)}?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => {
    const hello = JSON.parse(event.data);
    // A sleeping instance is woken first: the proxy says so, then says what the console is.
    if (hello.kind === "starting") { say(hello.note || "starting…"); return; }
    ws.onmessage = null;
    if (hello.kind === "screen") showScreen(ws);
    else showTerminal(ws, hello.note);
  };
  ws.addEventListener("close", (event) => {
    say(event.reason || `closed (${event.code})`, true);
  });
}
