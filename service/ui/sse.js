// Server-Sent Events read with fetch(): an EventSource cannot send an Authorization header, and the key must never
// go in a URL. This parses text/event-stream as the HTML standard says an EventSource does, and reconnects as one
// would (after the server's `retry` delay, sending the last event id as Last-Event-ID, so the log stream resumes
// without a gap or a repeat), but stops for good on an answer that retrying cannot change.

import { apiError, fetchOptions, isAbort, sleep } from './api.js';

const RETRY_DEFAULT_MS = 2000;
const RETRY_MAX_MS = 30000;
const FATAL_STATUSES = new Set([400, 401, 403, 404]);
const LINE_END = /\r\n|\r|\n/g;

export class EventStream {
  /**
   * @param {URL} url  the stream's URL; on a reconnect the same URL is sent with a Last-Event-ID header (which
   *   the API lets win over `after`)
   * @param {object} handlers  onEvent(type, data, id); onOpen(); onRetry(error, delayMs); onStop(error|null)
   */
  constructor(url, { onEvent, onOpen = () => {}, onRetry = () => {}, onStop = () => {} }) {
    this.url = url;
    this.handlers = { onEvent, onOpen, onRetry, onStop };
    this.lastEventId = '';
    this.retryMs = RETRY_DEFAULT_MS;
    this.controller = new AbortController();
    this.stopped = false;
    this.finished = false;
    this.reconnectNow = false;
  }

  start() {
    this.run().catch((error) => this.finish(error));
    return this;
  }

  /** Stop reading and never reconnect (also from inside onEvent, e.g. on `end`); onStop is not called. */
  stop() {
    this.stopped = true;
    this.finished = true;
    this.controller.abort();
  }

  /** After the current connection closes, reconnect at once instead of after the retry delay (`reconnect`). */
  reconnectSoon() {
    this.reconnectNow = true;
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      let error = null;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
        const response = await fetch(this.url, fetchOptions(this.controller.signal, headers));
        if (response.status === 204) {
          this.finish(null); // the log has ended and nothing follows the cursor
          return;
        }
        if (!response.ok) {
          const failure = await apiError(response);
          if (FATAL_STATUSES.has(response.status)) {
            this.finish(failure);
            return;
          }
          throw failure; // 429, 503: the instance is busy or going away; try again later
        }
        this.handlers.onOpen();
        failures = 0;
        await this.consume(response.body);
      } catch (caught) {
        if (this.stopped || isAbort(caught)) break;
        error = caught;
        failures += 1;
      }
      if (this.stopped) break;
      const delayMs = this.reconnectNow ? 0 : Math.min(this.retryMs * 2 ** Math.max(0, failures - 1), RETRY_MAX_MS);
      this.reconnectNow = false;
      this.handlers.onRetry(error, delayMs);
      try {
        await sleep(delayMs, this.controller.signal);
      } catch {
        break;
      }
    }
    this.finish(null);
  }

  /** The stream ended by itself (204, or an answer retrying cannot change): onStop, once. */
  finish(error) {
    if (this.finished) return;
    this.stopped = true;
    this.finished = true;
    this.handlers.onStop(isAbort(error) ? null : error);
  }

  async consume(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const event = { type: '', data: [], id: this.lastEventId };
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let consumed = 0;
        LINE_END.lastIndex = 0;
        for (let match = LINE_END.exec(buffer); match !== null; match = LINE_END.exec(buffer)) {
          // a CR that ends the chunk may be the first half of a CRLF split across two chunks
          if (match[0] === '\r' && match.index === buffer.length - 1) break;
          this.line(buffer.slice(consumed, match.index), event);
          consumed = LINE_END.lastIndex;
          if (this.stopped) return;
        }
        buffer = buffer.slice(consumed);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  line(text, event) {
    if (text === '') {
      this.dispatch(event);
      return;
    }
    if (text.startsWith(':')) return; // a comment: the server's keep-alive ping
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event.type = value;
    else if (field === 'data') event.data.push(value);
    else if (field === 'id' && !value.includes('\0')) event.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
  }

  dispatch(event) {
    // as an EventSource does: the id counts even for an event without data; it persists until the next id
    this.lastEventId = event.id;
    const { type, data } = event;
    event.type = '';
    event.data = [];
    if (data.length === 0) return;
    this.handlers.onEvent(type || 'message', data.join('\n'), this.lastEventId);
  }
}
