// The log view: a virtualised list of lines. Only the rows in (and just around) the viewport exist in the DOM, so
// a job of a million lines costs what a screenful costs. The lines loaded are a window onto the job's log, at most
// `maxLines` long, that the page extends by pages (older above, newer below) and trims on the side far from the
// viewport; row heights are estimated from the text (a monospace font makes that near exact) and corrected once a
// row has been laid out.
//
// Position: every change to the lines or their heights is laid out at once, in the same task, keeping the row under
// the viewport's top where it was (or, following, the bottom in view). The anchor is taken just before the change,
// from the scroll position of that moment, so a scroll by the user that came first is kept, whatever the order in
// which the browser delivers its scroll event and the next animation frame. Only building rows waits for a frame.

import { lineColumns } from './ansi.js';

const OVERSCAN_PX = 400; // rows built beyond the viewport, so that a fast scroll shows no gap
const NEAR_EDGE_ROWS = 60; // how close to the window's end loading the next page starts
const BOTTOM_SLACK_PX = 4;

export class LogView {
  /**
   * @param {HTMLElement} scroller  the scrolling element (it holds one sizer; rows are placed inside it)
   * @param {object} options
   *   buildRow(line) → HTMLElement, the row for a line (called again after invalidate())
   *   textOf(line) → the text its message column shows (for height estimates; default: the message)
   *   onNearTop(), onNearBottom(): the viewport nears the first or last loaded line
   *   onFollowChange(following), onTrim(side: 'older'|'newer'), onRender(rowCount)
   */
  constructor(scroller, options) {
    const { buildRow, textOf, onNearTop, onNearBottom, onFollowChange, onTrim, onRender, maxLines = 20000 } = options;
    this.scroller = scroller;
    this.sizer = scroller.appendChild(document.createElement('div'));
    this.sizer.className = 'log-sizer';
    this.callbacks = { buildRow, onNearTop, onNearBottom, onFollowChange, onTrim, onRender };
    this.textOf = textOf ?? ((line) => line.message ?? '');
    this.maxLines = maxLines;
    this.entries = []; // { line, columns, height, measuredEpoch }, ascending seq
    this.offsets = new Float64Array(1); // offsets[i]: the top of entry i; offsets[n]: the total height
    this.layoutDirty = true;
    this.rows = new Map(); // seq → row element in the DOM
    this.contentEpoch = 0; // bumped by invalidate(): rows built before are rebuilt
    this.geometryEpoch = 0; // bumped when the wrap mode or the width changes: measured heights are stale
    this.wrap = false;
    this.following = true;
    this.atLiveEdge = true; // the window ends at the newest line (the stream appends); set by the page
    this.anchor = null; // { seq, delta }: the row under the viewport's top, and how far into it
    this.expectedTop = -1; // the scrollTop the view set last: its scroll event is not the user's
    this.pointerDown = false;
    this.frameRequested = false;
    this.geometry = { lineHeight: 18, padding: 2, charWidth: 7.8, charsPerRow: 120, gutter: 260 };
    this.bindEvents();
    this.measureGeometry();
  }

  // —— the lines ——

  get size() {
    return this.entries.length;
  }

  get firstSeq() {
    return this.entries.length ? this.entries[0].line.seq : null;
  }

  get lastSeq() {
    return this.entries.length ? this.entries[this.entries.length - 1].line.seq : null;
  }

  lineAt(index) {
    return this.entries[index]?.line;
  }

  /** Replace every line (a new filter, a jump). */
  reset(lines) {
    this.entries = lines.map((line) => this.entry(line));
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.anchor = null;
    this.layoutDirty = true;
    this.relayout();
  }

  /** Newer lines, after the last one (lines not newer than it are ignored: a stream may repeat a boundary). */
  append(lines) {
    const last = this.lastSeq ?? -1;
    const fresh = lines.filter((line) => line.seq > last);
    if (fresh.length === 0) return 0;
    this.change(() => {
      for (const line of fresh) this.entries.push(this.entry(line));
      this.trim();
    });
    return fresh.length;
  }

  /** Older lines, before the first one. */
  prepend(lines) {
    const first = this.firstSeq ?? Number.MAX_SAFE_INTEGER;
    const fresh = lines.filter((line) => line.seq < first);
    if (fresh.length === 0) return 0;
    this.change(() => {
      this.entries.unshift(...fresh.map((line) => this.entry(line)));
      this.trim();
    });
    return fresh.length;
  }

  indexOfSeq(seq) {
    let low = 0;
    let high = this.entries.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const found = this.entries[middle].line.seq;
      if (found === seq) return middle;
      if (found < seq) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /** The index of the first entry with seq ≥ `seq` (entries.length if none). */
  indexFromSeq(seq) {
    let low = 0;
    let high = this.entries.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.entries[middle].line.seq < seq) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Rebuild the rows shown (a line's highlights arrived, the focused line changed). */
  invalidate() {
    this.contentEpoch += 1;
    this.request();
  }

  /** The lines of the window, for the page to look things up in (read-only). */
  lines() {
    return this.entries.map((entry) => entry.line);
  }

  entry(line) {
    return { line, columns: lineColumns(this.textOf(line)), height: 0, measuredEpoch: -1, builtEpoch: -1 };
  }

  trim() {
    const excess = this.entries.length - this.maxLines;
    if (excess <= 0) return;
    // drop the side farther from what is on screen (following: always the oldest lines)
    const middle = this.anchor ? this.indexFromSeq(this.anchor.seq) : this.entries.length;
    const dropOldest = this.following || middle > this.entries.length / 2;
    const dropped = dropOldest ? this.entries.splice(0, excess) : this.entries.splice(this.entries.length - excess);
    for (const { line } of dropped) {
      this.rows.get(line.seq)?.remove();
      this.rows.delete(line.seq);
    }
    this.callbacks.onTrim?.(dropOldest ? 'older' : 'newer');
  }

  /** Change the lines or their heights in `apply`, keeping the reader's place (see the top of this file). */
  change(apply) {
    if (!this.following) this.captureAnchor(); // the offsets still describe what is on screen
    apply();
    this.layoutDirty = true;
    this.relayout();
  }

  /** Lay out now and put the viewport back on its anchor; the rows are built in the next frame. */
  relayout() {
    this.layout();
    this.restorePosition();
    this.request();
  }

  // —— modes ——

  setWrap(wrap) {
    this.wrap = wrap;
    this.scroller.classList.toggle('wrap', wrap);
    this.measureGeometry();
  }

  setFollowing(following) {
    if (this.following === following) return;
    this.following = following;
    this.callbacks.onFollowChange?.(following);
  }

  /** Follow again: scroll to the newest line and stay there. */
  followLatest() {
    this.setFollowing(true);
    this.relayout();
  }

  /** Bring a line into view (centred), and stop following. */
  scrollToSeq(seq) {
    const index = this.indexOfSeq(seq);
    if (index === -1) return false;
    this.setFollowing(false);
    this.layout();
    // the anchor is the viewport's top relative to the row's top: above it by half the space the row leaves
    const centring = Math.max(0, (this.scroller.clientHeight - this.entries[index].height) / 2);
    this.anchor = { seq, delta: -centring };
    this.relayout();
    return true;
  }

  // —— geometry ——

  measureGeometry() {
    if (this.scroller.clientWidth === 0) return; // hidden: the ResizeObserver calls again once it is shown
    const geometry = this.probeGeometry();
    this.change(() => {
      this.geometry = geometry;
      this.geometryEpoch += 1; // every measured height is stale
    });
  }

  probeGeometry() {
    // one hidden row of 100 characters tells the font's metrics and the message column's width (measured
    // against the scroller's width: the width the sizer had without wrapping would be too wide)
    this.sizer.style.width = '';
    const probe = document.createElement('div');
    probe.className = 'log-row probe';
    const gutter = probe.appendChild(document.createElement('span'));
    gutter.className = 'gutter';
    gutter.textContent = '0000000 00:00:00.000 ERROR';
    const message = probe.appendChild(document.createElement('span'));
    message.className = 'msg';
    message.textContent = 'x'.repeat(100);
    this.sizer.appendChild(probe);
    const style = getComputedStyle(message);
    const lineHeight = parseFloat(style.lineHeight) || 18;
    const charWidth = message.getBoundingClientRect().width / 100 || 7.8;
    const rowHeight = probe.getBoundingClientRect().height;
    const gutterWidth = message.getBoundingClientRect().left - probe.getBoundingClientRect().left;
    probe.classList.add('wrap-probe');
    const columnWidth = message.getBoundingClientRect().width;
    probe.remove();
    return {
      lineHeight,
      padding: Math.max(0, rowHeight - lineHeight),
      charWidth,
      gutter: gutterWidth,
      charsPerRow: Math.max(8, Math.floor(columnWidth / charWidth)),
    };
  }

  estimate(entry) {
    const { lineHeight, padding, charsPerRow } = this.geometry;
    const rows = this.wrap
      ? entry.columns.reduce((sum, columns) => sum + Math.max(1, Math.ceil(columns / charsPerRow)), 0)
      : entry.columns.length;
    return rows * lineHeight + padding;
  }

  layout() {
    if (!this.layoutDirty) return;
    this.layoutDirty = false;
    const count = this.entries.length;
    if (this.offsets.length !== count + 1) this.offsets = new Float64Array(count + 1);
    let top = 0;
    let widest = 0;
    for (let i = 0; i < count; i += 1) {
      const entry = this.entries[i];
      if (entry.measuredEpoch !== this.geometryEpoch) entry.height = this.estimate(entry);
      this.offsets[i] = top;
      top += entry.height;
      if (!this.wrap) for (const columns of entry.columns) widest = Math.max(widest, columns);
    }
    this.offsets[count] = top;
    this.sizer.style.height = `${top}px`;
    // without wrapping, the widest line loaded sets the scroll width, so it does not change as rows come and go
    this.sizer.style.width = this.wrap ? '' : `${Math.ceil(this.geometry.gutter + widest * this.geometry.charWidth + 24)}px`;
  }

  /** The index of the entry at `y` px from the top (clamped to the entries). */
  indexAt(y) {
    let low = 0;
    let high = this.entries.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.offsets[middle] <= y) low = middle;
      else high = middle - 1;
    }
    return Math.max(0, low);
  }

  // —— rendering ——

  request() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => this.frame());
  }

  frame() {
    this.frameRequested = false;
    const built = this.paint();
    if (this.wrap && built.length) {
      // the estimate can be off (wide characters, a proportional glyph): measure what was built (all reads,
      // then the writes), and lay out again if it was; the next frame builds what moved into view because of it
      const measured = built.map(([index, row]) => [this.entries[index], row.offsetHeight]);
      const wrong = measured.filter(([entry, height]) => Math.abs(height - entry.height) > 0.5);
      for (const [entry] of measured) entry.measuredEpoch = this.geometryEpoch;
      if (wrong.length) {
        this.change(() => {
          for (const [entry, height] of wrong) {
            entry.height = height;
            entry.measuredEpoch = this.geometryEpoch;
          }
        });
        this.paint();
      }
    }
    if (!this.following) this.captureAnchor();
    this.checkEdges();
    this.callbacks.onRender?.(this.rows.size);
  }

  restorePosition() {
    if (this.following && !this.pointerDown) {
      this.setTop(this.offsets[this.entries.length]);
      return;
    }
    if (!this.anchor) return;
    let index = this.indexOfSeq(this.anchor.seq);
    let delta = this.anchor.delta;
    if (index === -1) {
      index = Math.min(this.indexFromSeq(this.anchor.seq), this.entries.length - 1);
      delta = 0;
    }
    if (index >= 0) this.setTop(this.offsets[index] + delta);
  }

  setTop(top) {
    const max = Math.max(0, this.offsets[this.entries.length] - this.scroller.clientHeight);
    const clamped = Math.max(0, Math.min(Math.round(top), Math.round(max)));
    this.expectedTop = clamped;
    if (this.scroller.scrollTop !== clamped) this.scroller.scrollTop = clamped;
  }

  captureAnchor() {
    if (this.entries.length === 0) {
      this.anchor = null;
      return;
    }
    const top = this.scroller.scrollTop;
    const index = this.indexAt(top);
    this.anchor = { seq: this.entries[index].line.seq, delta: top - this.offsets[index] };
  }

  /** Place the rows of the viewport (building the missing ones); returns the [index, row] pairs built. */
  paint() {
    const built = [];
    const keep = new Map();
    if (this.entries.length) {
      const top = this.scroller.scrollTop;
      const first = this.indexAt(top - OVERSCAN_PX);
      const last = this.indexAt(top + this.scroller.clientHeight + OVERSCAN_PX);
      const fragment = document.createDocumentFragment();
      for (let index = first; index <= last; index += 1) {
        const entry = this.entries[index];
        const seq = entry.line.seq;
        let row = this.rows.get(seq);
        if (!row || entry.builtEpoch !== this.contentEpoch) {
          row?.remove();
          row = this.callbacks.buildRow(entry.line);
          entry.builtEpoch = this.contentEpoch;
          fragment.append(row);
          built.push([index, row]);
        }
        const y = `translateY(${this.offsets[index]}px)`;
        if (row.style.transform !== y) row.style.transform = y;
        keep.set(seq, row);
      }
      this.sizer.append(fragment);
    }
    for (const [seq, row] of this.rows) if (!keep.has(seq)) row.remove();
    this.rows = keep;
    return built;
  }

  checkEdges() {
    if (this.entries.length === 0) return;
    const top = this.scroller.scrollTop;
    const first = this.indexAt(top);
    const last = this.indexAt(top + this.scroller.clientHeight);
    if (first < NEAR_EDGE_ROWS) this.callbacks.onNearTop?.();
    if (last >= this.entries.length - NEAR_EDGE_ROWS) this.callbacks.onNearBottom?.();
  }

  isAtBottom() {
    const { scrollTop, clientHeight, scrollHeight } = this.scroller;
    return scrollTop + clientHeight >= scrollHeight - BOTTOM_SLACK_PX;
  }

  // —— the user ——

  bindEvents() {
    const scroller = this.scroller;
    scroller.addEventListener('scroll', () => {
      if (Math.abs(scroller.scrollTop - this.expectedTop) >= 1) {
        // the user scrolled: follow only from the very bottom of a window that ends at the newest line
        this.expectedTop = -1;
        this.setFollowing(this.atLiveEdge && this.isAtBottom());
      }
      if (!this.following) this.captureAnchor();
      this.request();
    });
    // Intent, before the scroll event: while lines pour in, the next append would pin the view to the bottom again
    scroller.addEventListener('wheel', (event) => {
      if (event.deltaY < 0) this.setFollowing(false);
    });
    scroller.addEventListener('keydown', (event) => {
      if (['ArrowUp', 'PageUp', 'Home'].includes(event.key)) this.setFollowing(false);
    });
    scroller.addEventListener('pointerdown', () => {
      this.pointerDown = true; // dragging the scroll bar: never pulled back down under the pointer
    });
    window.addEventListener('pointerup', () => {
      if (!this.pointerDown) return;
      this.pointerDown = false;
      if (this.atLiveEdge && this.isAtBottom()) this.followLatest(); // and catch up with what came meanwhile
    });
    new ResizeObserver(() => this.measureGeometry()).observe(scroller);
  }
}
