// A Server-Sent Events client over fetch(). The browser's EventSource cannot send an Authorization header, so the
// stream is read as a byte stream and parsed as the HTML standard describes: `event`, `data`, `id` and `retry`
// fields, comment lines (heartbeats) ignored, a blank line dispatching the event. On a dropped connection it
// reconnects with `Last-Event-ID`, so the server resumes after the last event this page saw.

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

export class EventStream {
  /**
   * @param {string} url
   * @param {{headers: () => object, onEvent: (type: string, data: string, id: string|null) => void,
   *          onStatus: (status: "connecting"|"open"|"reconnecting"|"auth"|"unavailable", detail?: any) => void}} options
   */
  constructor(url, { headers, onEvent, onStatus }) {
    this.url = url;
    this.headers = headers;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastEventId = null;
    this.retryMs = 3000;
    this.stopped = true;
    this.controller = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  /** Drop the current connection and connect again at once (after the API key changed). */
  restart() {
    this.stop();
    this.start();
  }

  async loop() {
    let attempt = 0;
    this.onStatus("connecting");
    while (!this.stopped) {
      const controller = new AbortController();
      this.controller = controller;
      let waitMs = this.retryMs;
      try {
        const headers = { ...this.headers(), Accept: "text/event-stream" };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        const response = await fetch(this.url, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401 || response.status === 403) {
          this.onStatus("auth", response.status);
          waitMs = 30000;
        } else if (!response.ok || !response.body) {
          this.onStatus("unavailable", response.status);
          waitMs = Math.min(60000, this.retryMs * 2 ** Math.min(attempt, 4));
        } else {
          attempt = 0;
          this.onStatus("open");
          await this.read(response.body, controller.signal);
        }
      } catch (error) {
        if (controller.signal.aborted || this.stopped) return;
        waitMs = Math.min(60000, this.retryMs * 2 ** Math.min(attempt, 4));
      }
      if (this.stopped || controller.signal.aborted) return;
      attempt += 1;
      this.onStatus("reconnecting");
      await sleep(waitMs, controller.signal);
    }
  }

  async read(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
    let buffer = "";
    let data = [];
    let type = "";
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone CR at the end may be the first half of CRLF: wait for the next chunk.
        if (!match || (match[0] === "\r" && match.index === buffer.length - 1)) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (id !== null) this.lastEventId = id;
          if (data.length) this.onEvent(type || "message", data.join("\n"), this.lastEventId);
          data = [];
          type = "";
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") data.push(val);
        else if (field === "event") type = val;
        else if (field === "id" && !val.includes("\0")) id = val;
        else if (field === "retry" && /^\d+$/.test(val)) this.retryMs = Number(val);
      }
    }
  }
}
