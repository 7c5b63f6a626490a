// Streams a chat reply to the page: SSE over fetch first, a WebSocket when
// SSE fails or no byte arrives in time (an intermediary that buffers), and
// resume with Last-Event-ID when a connection drops mid-reply.
//
// Query parameters, for testing a deployment from the address bar:
//   firstByteTimeout=MS  switch to the WebSocket after MS without a byte (default 5000)
//   transport=ws         start with the WebSocket
//   decoder=naive        decode each chunk on its own (shows why {stream: true}
//                        matters: split characters become U+FFFD); never use it

const params = new URLSearchParams(location.search);

// The bearer token: from the address's fragment (#token=..., which browsers
// never send to a server), kept for this tab only, and removed from the
// address bar so it is not shared by copying the link.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("chat-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("chat-token");
const config = {
  firstByteTimeoutMs: Number(params.get("firstByteTimeout") ?? 5000),
  transport: params.get("transport") === "ws" ? "ws" : "sse",
  naiveDecoder: params.get("decoder") === "naive",
  maxReconnects: 3,
};

class ProtocolError extends Error {
  // A refusal the client must not retry: bad input, a policy, an HTTP 4xx.
  constructor(code, message) { super(message); this.code = code; }
}

// --- Server-Sent Events over fetch --------------------------------------

// Splits decoded text into lines, wherever the chunks were cut, and
// dispatches events as the spec says (a blank line ends an event).
class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }
  reset() { this.name = ""; this.data = []; this.id = null; this.retry = null; }
  feed(text, final = false) {
    const buffer = this.buffer + text;
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const char = buffer[i];
      if (char !== "\r" && char !== "\n") continue;
      // A CR that ends the chunk may be the first half of a CRLF: wait for more.
      if (char === "\r" && i === buffer.length - 1 && !final) break;
      this.line(buffer.slice(start, i));
      if (char === "\r" && buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.buffer = buffer.slice(start);
  }
  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent(this.name || "message", this.id, this.data.join("\n"), this.retry);
      this.reset();
    } else if (!line.startsWith(":")) {
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") this.data.push(value);
      else if (field === "event") this.name = value;
      else if (field === "id") this.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    }
  }
}

async function streamSse({ request, lastEventId, onEvent, onByte }) {
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const abort = new AbortController();
  let gotByte = false;
  const timer = setTimeout(() => { if (!gotByte) abort.abort(new Error("no byte in time")); }, config.firstByteTimeoutMs);
  try {
    const response = await fetch("/api/chat/message/stream", {
      method: "POST", headers, body: JSON.stringify(request), signal: abort.signal,
    });
    if (response.status >= 400 && response.status < 500) {
      const body = await response.json().catch(() => ({}));
      throw new ProtocolError(body.error?.code ?? response.status, body.error?.message ?? response.statusText);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = new SseParser((name, id, data, retry) => onEvent(name, id, JSON.parse(data), retry));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { parser.feed(decoder.decode(), true); return; }
      gotByte = true;
      onByte();
      // {stream: true} keeps a character cut between two chunks for the next one.
      parser.feed(config.naiveDecoder ? new TextDecoder("utf-8").decode(value) : decoder.decode(value, { stream: true }));
    }
  } finally {
    clearTimeout(timer);
  }
}

// --- WebSocket fallback ---------------------------------------------------

function streamWebSocket({ request, lastEventId, onEvent, onByte }) {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // Browsers cannot set headers on a WebSocket: the token goes as a subprotocol.
    const protocols = token ? ["chat.v1", `bearer.${token}`] : ["chat.v1"];
    const socket = new WebSocket(`${scheme}://${location.host}/api/chat/message/ws`, protocols);
    socket.onopen = () => socket.send(JSON.stringify({ ...request, last_event_id: lastEventId ?? undefined }));
    socket.onmessage = (message) => {
      onByte();
      const frame = JSON.parse(message.data);
      onEvent(frame.event, frame.id ?? null, frame.data, frame.retry ?? null);
    };
    socket.onclose = (closed) => {
      if (closed.code === 1000) resolve();
      else if (closed.code >= 1007 && closed.code <= 1009) {
        reject(new ProtocolError(closed.reason.split(":")[0], closed.reason));
      } else reject(new Error(`WebSocket closed (${closed.code})`));
    };
  });
}

// --- The conversation -------------------------------------------------------

const $ = (id) => document.getElementById(id);
// Read by the browser tests: what the page shows, and when.
window.chat = { transport: null, ttftMs: null, state: "ready", timeline: [], conversationId: null };

function bubble(kind, text = "") {
  const element = document.createElement("div");
  element.className = `bubble ${kind}`;
  element.dir = "auto";
  element.textContent = text;
  $("conversation").append(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

function show(key, value) {
  window.chat[key] = value;
  const output = { transport: "transport", ttftMs: "ttft", state: "state" }[key];
  if (output) $(output).value = key === "ttftMs" ? `${Math.round(value)} ms` : value;
}

async function send(message) {
  bubble("user", message);
  const reply = bubble("assistant");
  reply.classList.add("streaming");
  const request = { message, conversation_id: window.chat.conversationId ?? undefined };
  window.chat.messageId = null;
  window.chat.finishReason = null;
  const sent = performance.now();
  const seen = new Set();
  let lastEventId = null;
  let done = false;
  let retryMs = 1000;
  let transport = config.transport;
  let reconnects = 0;
  window.chat.timeline = [];
  show("state", "streaming");
  // One reply at a time: Send waits, Stop ends this one.
  $("send").disabled = true;
  $("stop").hidden = false;
  $("stop").disabled = false;

  const onEvent = (name, id, data, retry) => {
    if (retry !== null) retryMs = retry;
    if (name === "start") {
      window.chat.conversationId = data.conversation_id;
      window.chat.messageId = data.message_id;
    } else if (name === "token") {
      if (seen.has(data.index)) return; // a resumed stream never repeats, but be safe
      seen.add(data.index);
      lastEventId = id;
      reply.append(data.text);
      const now = performance.now();
      if (window.chat.timeline.length === 0) show("ttftMs", now - sent);
      window.chat.timeline.push({ t: now, index: data.index });
    } else if (name === "end") {
      done = true;
      window.chat.finishReason = data.finish_reason;
    } else if (name === "error" && data.code !== "server_shutdown") {
      done = true;
      reply.classList.add("error");
      bubble("notice", `${data.code}: ${data.message}`);
    } // server_shutdown: the stream ends; reconnect below with Last-Event-ID
  };

  for (;;) {
    let gotByte = false;
    show("transport", transport === "sse" ? "SSE" : "WebSocket");
    try {
      const stream = transport === "sse" ? streamSse : streamWebSocket;
      await stream({ request, lastEventId, onEvent, onByte: () => { gotByte = true; } });
      if (done) break;
      throw new Error("the stream ended before the reply did");
    } catch (error) {
      if (error instanceof ProtocolError) {
        reply.classList.add("error");
        bubble("notice", `${error.code}: ${error.message}`);
        break;
      }
      if (transport === "sse" && !gotByte) {
        bubble("notice", `SSE failed (${error.message}); switching to WebSocket`);
        transport = "ws";
        continue;
      }
      if (reconnects++ >= config.maxReconnects) {
        reply.classList.add("error");
        bubble("notice", `connection lost: ${error.message}`);
        break;
      }
      bubble("notice", `connection dropped; resuming after token ${lastEventId ?? "none"}`);
      await new Promise((wait) => setTimeout(wait, retryMs));
    }
  }
  reply.classList.remove("streaming");
  // "stopped": ended by Stop; "length": a model reached its token limit.
  const ended = { stopped: "stopped", length: "done (the model's token limit)" }[window.chat.finishReason] ?? "done";
  show("state", done && !reply.classList.contains("error") ? ended : "failed");
  $("send").disabled = false;
  $("stop").hidden = true;
}

// Stop: the server ends the reply on whichever process generates it, and the
// stream closes with `end` (finish_reason "stopped").
$("stop").addEventListener("click", async () => {
  const messageId = window.chat.messageId;
  if (!messageId) return;
  $("stop").disabled = true;
  const response = await fetch(`/api/chat/message/${encodeURIComponent(messageId)}/stop`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!response.ok) bubble("notice", `stop failed: HTTP ${response.status}`);
});

// No token (the page opened without the link `make up` prints): say what to
// do instead of sending a request that can only get 401.
if (!token) {
  const help = bubble("notice");
  help.classList.add("setup");
  help.textContent = "This page needs a sign-in token. Open the link that `make up` printed, " +
    "or run `make token` and open this page as " + location.origin + location.pathname + "#token=<the token>.";
  $("send").disabled = true;
  $("message").disabled = true;
  show("state", "no token");
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = $("message").value.trim();
  if (!message) return;
  $("message").value = "";
  send(message);
});
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});
