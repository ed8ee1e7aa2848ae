// The job page: metadata, progress and events above; the log below. The log view shows a window of the job's log:
// it opens on the newest lines and follows the live stream; scrolling up loads older pages (`before`), a permalink
// or a search hit opens the window around a line (`around`), and scrolling down from there loads newer pages
// (`after`) until the window meets the live edge, where the stream takes over again from the window's last seq.

import { renderMessage } from './ansi.js';
import { LEVELS, apiGet, apiUrl, fetchOptions, fetchRetrying, isAbort } from './api.js';
import { byId, fill, formatClock, formatCount, formatJson, formatTime, h, progressBar, setProgress, show } from './dom.js';
import { LogView } from './logview.js';
import { EventStream } from './sse.js';

const FIRST_PAGE_LINES = 200;
const PAGE_LINES = 500; // the API's maximum page
const AROUND_LINES = 200;
const HIGHLIGHT_DELAY_MS = 150; // gathers the highlight look-ups of lines that arrive close together
const JOB_REFRESH_DELAY_MS = 300;

export class JobPage {
  constructor() {
    this.elements = {
      view: byId('job-view'),
      name: byId('job-name'),
      status: byId('job-status'),
      id: byId('job-id'),
      error: byId('job-error'),
      progress: byId('job-progress'),
      meta: byId('job-meta'),
      payload: byId('job-payload'),
      result: byId('job-result'),
      events: byId('job-events'),
      levels: byId('level-filter'),
      searchForm: byId('search-form'),
      searchInput: byId('search-input'),
      searchFilter: byId('search-filter'),
      previousMatch: byId('previous-match'),
      nextMatch: byId('next-match'),
      wrap: byId('wrap-toggle'),
      exportChoice: byId('export-choice'),
      download: byId('download'),
      contextBar: byId('context-bar'),
      contextSeq: byId('context-seq'),
      contextBack: byId('context-back'),
      scroller: byId('log-scroller'),
      banner: byId('log-banner'),
      empty: byId('log-empty'),
      jumpLatest: byId('jump-latest'),
      logStatus: byId('log-status'),
      streamStatus: byId('stream-status'),
    };
    this.levels = new Set(LEVELS); // every level shown: no `level` parameter
    this.query = '';
    this.filterMatches = true;
    this.progressBar = progressBar(null);
    this.view = new LogView(this.elements.scroller, {
      buildRow: (line) => this.buildRow(line),
      textOf: (line) => (line.source ? `[${line.source}] ${line.message}` : line.message),
      onNearTop: () => this.loadOlder(),
      onNearBottom: () => this.loadNewer(),
      onFollowChange: () => this.showLogStatus(),
      onTrim: (side) => this.trimmed(side),
      onRender: (rows) => this.rendered(rows),
    });
    this.buildLevelFilter();
    this.bindControls();
    this.jobId = null;
  }

  // —— opening and closing ——

  open(jobId) {
    this.close();
    this.jobId = jobId;
    this.job = null;
    this.generation = 0;
    this.ended = false;
    this.contextSeq = null;
    this.focusSeq = seqOfHash();
    this.firstLineMarked = false;
    this.aborter = new AbortController();
    performance.mark('joblens:job-open');
    fill(this.elements.name, 'Loading…');
    fill(this.elements.status);
    this.elements.status.className = 'status';
    fill(this.elements.id, jobId);
    show(this.elements.error, false);
    fill(this.elements.progress, this.progressBar, h('span', { class: 'progress-message' }));
    setProgress(this.progressBar, null);
    this.updateSearchControls();
    this.onHashChange = () => {
      const seq = seqOfHash();
      if (seq !== null) this.jumpTo(seq);
    };
    window.addEventListener('hashchange', this.onHashChange);
    show(this.elements.view, true);
    this.refreshJob();
    this.refreshProgress();
    this.reload({ aroundSeq: this.focusSeq });
  }

  close() {
    if (this.jobId === null) return;
    this.stopStream();
    this.aborter.abort();
    clearTimeout(this.jobRefreshTimer);
    clearTimeout(this.highlightTimer);
    window.removeEventListener('hashchange', this.onHashChange);
    this.view.reset([]);
    this.jobId = null;
    show(this.elements.view, false);
  }

  // —— the job's record, progress and events ——

  async refreshJob() {
    const jobId = this.jobId;
    try {
      const job = await apiGet(`/jobs/${encodeURIComponent(jobId)}`, {}, { signal: this.aborter.signal });
      if (jobId !== this.jobId) return;
      this.job = job;
      this.renderJob(job);
    } catch (error) {
      if (isAbort(error) || jobId !== this.jobId) return;
      fill(this.elements.name, error.status === 404 ? 'Job not found' : 'Could not load the job');
      fill(this.elements.error, error.message);
      show(this.elements.error, true);
    }
  }

  scheduleJobRefresh() {
    clearTimeout(this.jobRefreshTimer);
    this.jobRefreshTimer = setTimeout(() => this.refreshJob(), JOB_REFRESH_DELAY_MS);
  }

  renderJob(job) {
    document.title = `${job.name} · joblens`;
    fill(this.elements.name, job.name);
    this.setStatus(job.status);
    const rows = [
      ['Retries', `${job.attemptNumber} of ${job.maxRetries}`],
      ['Timeout', `${job.timeoutSeconds} s`],
      ['Created', formatTime(job.createdAt)],
      ['Delivered', formatTime(job.deliveredAt)],
      ['Started', formatTime(job.startedAt)],
      ['Ended', formatTime(job.completedAt)],
      ['Updated', formatTime(job.updatedAt)],
    ];
    fill(this.elements.meta, rows.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
    fill(this.elements.payload, formatJson(job.payload));
    fill(this.elements.result, formatJson(job.result));
    const events = [...(job.events ?? [])].reverse(); // newest first, like the job list
    fill(
      this.elements.events,
      events.length === 0
        ? h('tr', {}, h('td', { colspan: 3 }, 'No events'))
        : events.map((event) =>
            h(
              'tr',
              {},
              h('td', { class: 'mono' }, formatTime(event.createdAt)),
              h('td', {}, h('span', { class: `event-type event-${event.type}` }, event.type)),
              h('td', {}, event.data === null || event.data === undefined ? '' : h('code', {}, JSON.stringify(event.data))),
            ),
          ),
    );
  }

  setStatus(status) {
    if (!status) return;
    const element = this.elements.status;
    if (element.textContent !== status) {
      fill(element, status);
      element.className = `status status-${status}`;
    }
    if (this.job && this.job.status !== status) this.scheduleJobRefresh(); // its events and times changed too
  }

  async refreshProgress() {
    const jobId = this.jobId;
    try {
      const record = await apiGet(`/jobs/${encodeURIComponent(jobId)}/progress`, {}, { signal: this.aborter.signal });
      if (jobId === this.jobId) this.setProgressRecord(record);
    } catch {
      // the job record's own error says what went wrong
    }
  }

  setProgressRecord(record) {
    const progress = record?.progress;
    setProgress(this.progressBar, progress?.percent ?? null, progress?.message ?? '');
    const stages = Object.entries(progress?.subProgress ?? {});
    fill(
      this.elements.progress,
      this.progressBar,
      h('span', { class: 'progress-message' }, progress ? `${progress.percent}% ${progress.message ?? ''}` : 'No progress reported'),
      stages.length
        ? h(
            'ul',
            { class: 'stages' },
            stages.map(([stage, sub]) =>
              h('li', {}, h('span', { class: 'stage' }, stage), progressBar(sub?.percent ?? null, sub?.message ?? ''), sub?.message ?? ''),
            ),
          )
        : null,
    );
  }

  // —— the log: filters ——

  /** The filter of the window's reads and of the stream. In context, none: the lines around a hit, all of them. */
  filter() {
    if (this.contextSeq !== null) return {};
    const params = {};
    if (this.levels.size < LEVELS.length) params.level = [...this.levels].join(',');
    if (this.query && this.filterMatches) Object.assign(params, { q: this.query, highlight: 'true' });
    return params;
  }

  read(params) {
    return apiGet(`/jobs/${encodeURIComponent(this.jobId)}/logs`, { ...this.filter(), ...params }, { signal: this.aborter.signal });
  }

  // —— the log: loading the window ——

  /** Open the window on the newest lines (and follow), or around `aroundSeq`. */
  async reload({ aroundSeq = null } = {}) {
    const generation = ++this.generation;
    this.stopStream();
    this.hasOlder = false;
    this.loadingOlder = false;
    this.loadingNewer = false;
    this.highlightRanges = [];
    this.setAtLiveEdge(aroundSeq === null);
    this.view.reset([]);
    this.banner('Loading…');
    try {
      const page = aroundSeq === null ? await this.read({ limit: FIRST_PAGE_LINES }) : await this.readAround(aroundSeq);
      if (generation !== this.generation) return;
      this.view.reset(page.logs);
      if (aroundSeq === null) {
        this.hasOlder = page.cursor.hasMore;
        this.view.followLatest();
      } else {
        this.hasOlder = page.cursor.hasOlder;
        this.setAtLiveEdge(!page.cursor.hasNewer);
        this.view.scrollToSeq(this.nearestSeq(aroundSeq));
      }
      this.banner(null);
      this.lookUpHighlights(page.logs);
      this.startStream();
    } catch (error) {
      if (isAbort(error) || generation !== this.generation) return;
      this.banner(`Could not read the log: ${error.message}`, true);
    }
    this.showLogStatus();
  }

  /** The lines around `seq` (half before, half after). */
  async readAround(seq) {
    if (!this.filter().q) return this.read({ around: seq, limit: AROUND_LINES });
    // `around` is a context read, never filtered by text (the API refuses q with it): the matches around a seq
    // are two reads, one each way
    const [older, newer] = await Promise.all([
      this.read({ before: seq + 1, limit: AROUND_LINES / 2 }),
      this.read({ after: seq, limit: AROUND_LINES / 2 }),
    ]);
    const logs = [...older.logs, ...newer.logs];
    return { logs, cursor: { mode: 'around', hasOlder: older.cursor.hasMore, hasNewer: newer.cursor.hasMore } };
  }

  nearestSeq(seq) {
    const index = Math.min(this.view.indexFromSeq(seq), this.view.size - 1);
    return index >= 0 ? this.view.lineAt(index).seq : seq;
  }

  async loadOlder() {
    if (!this.hasOlder || this.loadingOlder || this.view.size === 0) return;
    const generation = this.generation;
    this.loadingOlder = true;
    this.banner('Loading older lines…');
    try {
      const page = await this.read({ before: this.view.firstSeq, limit: PAGE_LINES });
      if (generation !== this.generation) return;
      this.hasOlder = page.cursor.hasMore;
      this.view.prepend(page.logs);
      this.lookUpHighlights(page.logs);
      this.banner(null);
    } catch (error) {
      if (!isAbort(error) && generation === this.generation) this.banner(`Could not load older lines: ${error.message}`, true);
    } finally {
      if (generation === this.generation) this.loadingOlder = false;
      this.showLogStatus();
    }
  }

  async loadNewer() {
    if (this.atLiveEdge || this.loadingNewer || this.view.size === 0) return;
    const generation = this.generation;
    this.loadingNewer = true;
    try {
      const page = await this.read({ after: this.view.lastSeq, limit: PAGE_LINES });
      if (generation !== this.generation) return;
      this.view.append(page.logs);
      this.lookUpHighlights(page.logs);
      if (!page.cursor.hasMore) {
        // the window meets the newest visible line: the stream continues exactly from its last seq
        this.setAtLiveEdge(true);
        this.startStream();
      }
    } catch (error) {
      if (!isAbort(error) && generation === this.generation) this.banner(`Could not load newer lines: ${error.message}`, true);
    } finally {
      if (generation === this.generation) this.loadingNewer = false;
      this.showLogStatus();
    }
  }

  trimmed(side) {
    if (side === 'older') this.hasOlder = true;
    else this.setAtLiveEdge(false); // newer lines were dropped: the stream's lines no longer join on
  }

  setAtLiveEdge(atLiveEdge) {
    this.atLiveEdge = atLiveEdge;
    this.view.atLiveEdge = atLiveEdge;
    if (!atLiveEdge) this.view.setFollowing(false);
    this.showLogStatus();
  }

  jumpToLatest() {
    if (window.location.hash) history.replaceState(null, '', window.location.pathname + window.location.search);
    this.focusSeq = null;
    if (this.atLiveEdge && this.contextSeq === null) {
      this.view.invalidate();
      this.view.followLatest();
    } else {
      this.contextSeq = null;
      this.updateSearchControls();
      this.reload();
    }
  }

  /** Show line `seq` (a permalink, a match): in the window if it is there, else a window around it. */
  jumpTo(seq) {
    this.focusSeq = seq;
    if (this.view.indexOfSeq(seq) !== -1) {
      this.view.scrollToSeq(seq);
      this.view.invalidate();
    } else {
      this.reload({ aroundSeq: seq });
    }
  }

  // —— the log: the live stream ——

  startStream() {
    this.stopStream();
    const params = { ...this.filter() };
    if (this.atLiveEdge) params.after = this.view.lastSeq ?? 0;
    else params.tail = 1; // away from the live edge only the status and progress events matter
    const stream = new EventStream(apiUrl(`/jobs/${encodeURIComponent(this.jobId)}/logs/stream`, params), {
      onEvent: (type, data) => this.streamEvent(stream, type, data),
      onOpen: () => this.streamState('live'),
      onRetry: (error, delayMs) => this.streamState(error ? `reconnecting in ${Math.round(delayMs / 1000)} s: ${error.message}` : 'reconnecting'),
      onStop: (error) => this.streamState(error ? `stopped: ${error.message}` : 'ended'),
    });
    this.stream = stream.start();
  }

  stopStream() {
    this.stream?.stop();
    this.stream = null;
  }

  streamEvent(stream, type, data) {
    if (stream !== this.stream) return;
    const payload = JSON.parse(data);
    if (type === 'logs') {
      if (!this.atLiveEdge) return;
      const added = this.view.append(payload.logs);
      if (added) this.lookUpHighlights(payload.logs);
      this.showLogStatus();
    } else if (type === 'status') {
      this.setStatus(payload.status);
    } else if (type === 'progress') {
      this.setProgressRecord(payload);
    } else if (type === 'end') {
      stream.stop();
      this.ended = true;
      this.setStatus(payload.status);
      this.scheduleJobRefresh();
      this.streamState('ended');
    } else if (type === 'reconnect') {
      stream.reconnectSoon(); // this instance is shutting down: straight to another one, by Last-Event-ID
    } else if (type === 'error') {
      this.streamState(`interrupted: ${payload.error}`);
    }
  }

  streamState(state) {
    this.streamText = state === 'ended' && this.ended ? 'log ended' : state;
    this.showLogStatus();
  }

  /** A passing remark under the log (no more matches, a failed download), gone after a while. */
  note(text) {
    this.noteText = text;
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => {
      this.noteText = '';
      this.showLogStatus();
    }, 6000);
    this.showLogStatus();
  }

  // —— the log: highlights of matches among unfiltered lines ——

  /**
   * Lines that came without `highlights` while a query is set (shown unfiltered: highlight-only mode, context; or
   * from the stream): look their matches up by seq range with a filtered read (`after=lo-1`, at most a page) and
   * copy the highlights over. A page covers at most 500 lines, so one read of 500 matches covers any page of them.
   */
  lookUpHighlights(lines) {
    if (!this.query) return;
    const missing = lines.filter((line) => line.highlights === undefined);
    if (missing.length === 0) return;
    this.highlightRanges.push([missing[0].seq, missing[missing.length - 1].seq]);
    this.scheduleHighlights();
  }

  scheduleHighlights() {
    clearTimeout(this.highlightTimer);
    this.highlightTimer = setTimeout(() => this.drainHighlights(), HIGHLIGHT_DELAY_MS);
  }

  async drainHighlights() {
    if (this.drainingHighlights) return;
    this.drainingHighlights = true;
    const generation = this.generation;
    const query = this.query;
    try {
      while (this.highlightRanges.length && generation === this.generation && query === this.query) {
        const ranges = mergeRanges(this.highlightRanges);
        const [low, high] = ranges.shift();
        this.highlightRanges = ranges;
        if (this.view.size === 0 || high < this.view.firstSeq || low > this.view.lastSeq) continue;
        const level = this.contextSeq === null ? this.filter().level : undefined;
        const page = await apiGet(
          `/jobs/${encodeURIComponent(this.jobId)}/logs`,
          { q: query, level, highlight: 'true', after: low - 1, limit: PAGE_LINES },
          { signal: this.aborter.signal },
        );
        if (generation !== this.generation || query !== this.query) return;
        for (const match of page.logs) {
          if (match.seq > high) break;
          const index = this.view.indexOfSeq(match.seq);
          if (index !== -1) this.view.lineAt(index).highlights = match.highlights ?? [];
        }
        const last = page.logs.at(-1)?.seq;
        if (page.cursor.hasMore && last !== undefined && last < high) this.highlightRanges.unshift([last + 1, high]);
        this.view.invalidate();
      }
    } catch (error) {
      if (!isAbort(error)) this.note(`highlights unavailable: ${error.message}`);
    } finally {
      this.drainingHighlights = false;
      if (this.highlightRanges.length) this.scheduleHighlights(); // ranges of a reload made meanwhile
    }
  }

  // —— the log: rows ——

  buildRow(line) {
    const classes = ['log-row', `lvl-${line.level}`];
    if (line.seq === this.focusSeq) classes.push('focused');
    if (line.highlights?.length) classes.push('hit');
    const gutter = h(
      'span',
      { class: 'gutter' },
      h('a', { class: 'seq', href: `#seq=${line.seq}`, title: 'Permalink to this line' }, String(line.seq)),
      h('span', { class: 'time', title: line.loggedAt }, formatClock(line.loggedAt)),
      h('span', { class: 'level' }, String(line.level).toUpperCase()),
    );
    if (this.contextSeq === null && this.query && this.filterMatches) {
      gutter.prepend(
        h('button', { class: 'context', type: 'button', title: 'Show the lines around it', dataset: { context: line.seq } }, '⋯'),
      );
    }
    const message = h('span', { class: 'msg' });
    if (line.source) message.append(h('span', { class: 'source' }, `[${line.source}] `));
    message.append(renderMessage(line.message ?? '', line.highlights));
    return h('div', { class: classes.join(' '), dataset: { seq: line.seq } }, gutter, message);
  }

  rendered(rows) {
    show(this.elements.empty, this.view.size === 0 && !this.elements.banner.textContent);
    if (rows > 0 && !this.firstLineMarked) {
      this.firstLineMarked = true;
      performance.mark('joblens:first-line'); // what the browser tests report as the time to the first line
    }
  }

  banner(text, isError = false) {
    const banner = this.elements.banner;
    fill(banner, text ?? '');
    banner.classList.toggle('error', isError);
    show(banner, Boolean(text));
    const filtered = Object.keys(this.filter()).length > 0;
    fill(this.elements.empty, filtered ? 'No matching lines' : 'No log lines yet');
    show(this.elements.empty, !text && this.view.size === 0);
  }

  showLogStatus() {
    const { logStatus, jumpLatest, streamStatus } = this.elements;
    const following = this.view.following && this.atLiveEdge;
    let state;
    if (this.contextSeq !== null) state = `Context of line ${this.contextSeq}`;
    else if (following) state = 'Following';
    else if (this.atLiveEdge) state = 'Paused';
    else state = 'Viewing history';
    const range = this.view.size ? ` · ${formatCount(this.view.size)} lines loaded (${this.view.firstSeq}–${this.view.lastSeq})` : '';
    fill(logStatus, state + range + (this.hasOlder ? '' : this.view.size ? ' · start of log' : ''));
    fill(streamStatus, [this.streamText && `stream: ${this.streamText}`, this.noteText].filter(Boolean).join(' · '));
    show(jumpLatest, !following);
  }

  // —— controls ——

  buildLevelFilter() {
    fill(
      this.elements.levels,
      LEVELS.map((level) =>
        h('button', { type: 'button', class: `chip lvl-${level}`, 'aria-pressed': 'true', dataset: { level } }, level),
      ),
    );
  }

  bindControls() {
    const e = this.elements;
    e.levels.addEventListener('click', (event) => {
      const chip = event.target.closest('[data-level]');
      if (!chip) return;
      const level = chip.dataset.level;
      if (this.levels.has(level)) this.levels.delete(level);
      else this.levels.add(level);
      if (this.levels.size === 0) LEVELS.forEach((each) => this.levels.add(each)); // none means all
      for (const each of e.levels.querySelectorAll('[data-level]')) {
        each.setAttribute('aria-pressed', String(this.levels.has(each.dataset.level)));
      }
      this.contextSeq = null;
      this.updateSearchControls();
      this.reload();
    });
    e.searchForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.applySearch();
    });
    e.searchInput.addEventListener('search', () => this.applySearch()); // the field's clear button
    e.searchFilter.addEventListener('change', () => this.applySearch());
    e.previousMatch.addEventListener('click', () => this.moveToMatch(-1));
    e.nextMatch.addEventListener('click', () => this.moveToMatch(1));
    e.wrap.addEventListener('change', () => this.view.setWrap(e.wrap.checked));
    e.download.addEventListener('click', () => this.download());
    e.jumpLatest.addEventListener('click', () => this.jumpToLatest());
    e.contextBack.addEventListener('click', () => this.leaveContext());
    e.scroller.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-context]');
      if (button) this.showContext(Number(button.dataset.context));
    });
  }

  applySearch() {
    const query = this.elements.searchInput.value.trim();
    const filterMatches = this.elements.searchFilter.checked;
    if (query === this.query && filterMatches === this.filterMatches) return;
    const onlyHighlightsChange = !filterMatches && !this.filterMatches && this.contextSeq === null;
    this.query = query;
    this.filterMatches = filterMatches;
    this.updateSearchControls();
    if (onlyHighlightsChange) {
      // the lines shown stay the same: only their highlights change
      for (const line of this.view.lines()) delete line.highlights;
      this.highlightRanges = [];
      this.lookUpHighlights(this.view.lines());
      this.view.invalidate();
      return;
    }
    this.contextSeq = null;
    this.reload();
  }

  updateSearchControls() {
    const e = this.elements;
    e.previousMatch.disabled = !this.query;
    e.nextMatch.disabled = !this.query;
    show(e.contextBar, this.contextSeq !== null);
    if (this.contextSeq !== null) {
      fill(e.contextSeq, String(this.contextSeq));
      e.contextSeq.setAttribute('href', `#seq=${this.contextSeq}`);
    }
    const filtered = this.query || this.levels.size < LEVELS.length;
    for (const option of e.exportChoice.querySelectorAll('option[data-filtered]')) option.disabled = !filtered;
    if (!filtered && e.exportChoice.selectedOptions[0]?.dataset.filtered !== undefined) e.exportChoice.value = 'text';
  }

  /** A hit's context: every line around it, the hit marked, matches still highlighted. */
  showContext(seq) {
    this.contextSeq = seq;
    this.focusSeq = seq;
    history.replaceState(null, '', `${window.location.pathname}${window.location.search}#seq=${seq}`);
    this.updateSearchControls();
    this.reload({ aroundSeq: seq });
  }

  leaveContext() {
    const seq = this.contextSeq;
    this.contextSeq = null;
    this.updateSearchControls();
    this.reload({ aroundSeq: seq });
  }

  /** The next (1) or previous (-1) match after the focused line, or the line at the top of the view. */
  async moveToMatch(direction) {
    if (!this.query) return;
    const from = this.focusSeq ?? this.view.anchor?.seq ?? this.view.lastSeq ?? 0;
    const level = this.contextSeq === null ? this.filter().level : undefined;
    const params = { q: this.query, level, limit: 1, ...(direction > 0 ? { after: from } : { before: from }) };
    try {
      const page = await apiGet(`/jobs/${encodeURIComponent(this.jobId)}/logs`, params, { signal: this.aborter.signal });
      const match = page.logs[0];
      if (!match) {
        this.note(direction > 0 ? 'no later match' : 'no earlier match');
        return;
      }
      history.replaceState(null, '', `${window.location.pathname}${window.location.search}#seq=${match.seq}`);
      this.jumpTo(match.seq);
    } catch (error) {
      if (!isAbort(error)) this.note(`search failed: ${error.message}`);
    }
  }

  /** The export endpoint, fetched with the key (a plain link could not send it) and saved from a Blob. */
  async download() {
    const choice = this.elements.exportChoice.selectedOptions[0];
    const format = choice.value.startsWith('ndjson') ? 'ndjson' : 'text';
    const params = { format };
    if (choice.dataset.filtered !== undefined) {
      if (this.levels.size < LEVELS.length) params.level = [...this.levels].join(',');
      if (this.query) params.q = this.query;
    }
    const button = this.elements.download;
    button.disabled = true;
    fill(button, 'Downloading…');
    try {
      const url = apiUrl(`/jobs/${encodeURIComponent(this.jobId)}/logs/export`, params);
      const response = await fetchRetrying(url, fetchOptions(this.aborter.signal));
      const blob = await response.blob();
      const name = fileNameOf(response.headers.get('Content-Disposition')) ?? `${this.jobId}.${format === 'ndjson' ? 'ndjson' : 'log'}`;
      const link = h('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    } catch (error) {
      if (!isAbort(error)) this.note(`download failed: ${error.message}`);
    } finally {
      button.disabled = false;
      fill(button, 'Download');
    }
  }
}

function seqOfHash() {
  const match = /^#seq=(\d+)$/.exec(window.location.hash);
  return match ? Number(match[1]) : null;
}

function mergeRanges(ranges) {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [low, high] of sorted) {
    const last = merged[merged.length - 1];
    if (last && low <= last[1] + 1) last[1] = Math.max(last[1], high);
    else merged.push([low, high]);
  }
  return merged;
}

/** The file name of a Content-Disposition header (`attachment; filename="x.log"`), kept to safe characters. */
function fileNameOf(disposition) {
  const match = /filename="?([^";]+)"?/i.exec(disposition ?? '');
  return match ? match[1].replace(/[^\w.-]+/g, '_') : null;
}
