// The job list: the space's jobs newest first, a status filter, pages, and progress bars that stay live (the list
// and the progress of its unfinished jobs are read again every few seconds while the tab is visible).

import { STATUSES, TERMINAL_STATUSES, apiGet, isAbort, session } from './api.js';
import { byId, fill, formatTime, h, progressBar, setProgress, show } from './dom.js';

const PAGE_JOBS = 20;
const REFRESH_MS = 2000;

export class JobsPage {
  constructor(navigate) {
    this.navigate = navigate;
    this.elements = {
      view: byId('jobs-view'),
      status: byId('status-filter'),
      body: byId('jobs-body'),
      empty: byId('jobs-empty'),
      error: byId('jobs-error'),
      previous: byId('previous-page'),
      next: byId('next-page'),
      page: byId('page-label'),
    };
    fill(this.elements.status, h('option', { value: '' }, 'all'), STATUSES.map((status) => h('option', { value: status }, status)));
    this.elements.status.addEventListener('change', () => this.go({ status: this.elements.status.value, page: 1 }));
    this.elements.previous.addEventListener('click', () => this.go({ page: this.page - 1 }));
    this.elements.next.addEventListener('click', () => this.go({ page: this.page + 1 }));
    this.rows = new Map(); // job id → { row, statusCell, bar, barLabel, … }
    this.open = false;
  }

  go({ status = this.status, page = this.page }) {
    const params = new URLSearchParams();
    if (status) params.set('status', status);
    if (page > 1) params.set('page', String(page));
    const search = params.toString();
    this.navigate(search ? `?${search}` : './');
  }

  show(params) {
    this.close();
    this.open = true;
    this.status = STATUSES.includes(params.get('status')) ? params.get('status') : '';
    this.page = Math.max(1, Number.parseInt(params.get('page') ?? '1', 10) || 1);
    this.elements.status.value = this.status;
    this.rows.clear();
    fill(this.elements.body);
    show(this.elements.view, true);
    document.title = 'Jobs · joblens';
    this.aborter = new AbortController();
    this.refresh();
  }

  close() {
    if (!this.open) return;
    this.open = false;
    this.aborter.abort();
    clearTimeout(this.timer);
    show(this.elements.view, false);
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.open) return;
    const signal = this.aborter.signal;
    try {
      if (document.visibilityState !== 'hidden') await this.load(signal);
      show(this.elements.error, false);
    } catch (error) {
      if (isAbort(error)) return;
      fill(this.elements.error, `Could not list jobs: ${error.message}`);
      show(this.elements.error, true);
    }
    if (this.open && !signal.aborted) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
  }

  async load(signal) {
    // one more than a page: whether an older page exists, without a count the API does not give
    const jobs = await apiGet(
      `/spaces/${session.spaceId}/jobs`,
      { status: this.status, limit: PAGE_JOBS + 1, offset: (this.page - 1) * PAGE_JOBS },
      { signal },
    );
    const shown = jobs.slice(0, PAGE_JOBS);
    this.renderRows(shown);
    this.elements.previous.disabled = this.page <= 1;
    this.elements.next.disabled = jobs.length <= PAGE_JOBS;
    fill(this.elements.page, `page ${this.page}`);
    show(this.elements.empty, shown.length === 0);
    // progress of the jobs still going, and once of each ended one (its last report stays as it was)
    const wanted = shown.filter((job) => !TERMINAL_STATUSES.has(job.status) || !this.rows.get(job.id)?.progressRead);
    await Promise.all(wanted.map((job) => this.loadProgress(job, signal)));
  }

  async loadProgress(job, signal) {
    try {
      const record = await apiGet(`/jobs/${job.id}/progress`, {}, { signal });
      const entry = this.rows.get(job.id);
      if (!entry) return;
      entry.progressRead = true;
      const progress = record.progress;
      const percent = progress?.percent ?? (job.status === 'completed' ? 100 : null);
      setProgress(entry.bar, percent, progress?.message ?? '');
      fill(entry.barLabel, progress ? `${progress.percent}% ${progress.message ?? ''}` : job.status === 'completed' ? 'done' : '');
    } catch (error) {
      if (isAbort(error)) throw error;
      // one job's progress failing leaves its bar as it was
    }
  }

  renderRows(jobs) {
    const rows = new Map();
    for (const job of jobs) {
      const entry = this.rows.get(job.id) ?? this.buildRow(job);
      this.updateRow(entry, job);
      rows.set(job.id, entry);
    }
    this.rows = rows;
    // reuse rows (their bars keep their state); replaceChildren only moves what changed place
    this.elements.body.replaceChildren(...[...rows.values()].map((entry) => entry.row));
  }

  buildRow(job) {
    const href = `?job=${encodeURIComponent(job.id)}`;
    const statusCell = h('span', { class: 'status' });
    const bar = progressBar(null);
    const barLabel = h('span', { class: 'progress-message' });
    const timesCell = h('td', { class: 'mono' });
    const attemptCell = h('td', { class: 'num' });
    const row = h(
      'tr',
      { dataset: { jobId: job.id } },
      h('td', {}, h('a', { href, class: 'job-link', dataset: { nav: '' } }, job.name), h('div', { class: 'mono dim' }, job.id)),
      h('td', {}, statusCell),
      h('td', { class: 'progress-cell' }, bar, barLabel),
      attemptCell,
      timesCell,
    );
    return { row, statusCell, bar, barLabel, timesCell, attemptCell, progressRead: false, status: null };
  }

  updateRow(entry, job) {
    if (entry.status !== job.status) {
      entry.status = job.status;
      entry.progressRead = false; // its progress may have moved with its status
      fill(entry.statusCell, job.status);
      entry.statusCell.className = `status status-${job.status}`;
    }
    fill(entry.attemptCell, String(job.attemptNumber));
    fill(entry.timesCell, formatTime(job.createdAt));
  }
}
