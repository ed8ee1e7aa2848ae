// Building the page: every piece of data enters the DOM as text (text nodes, attribute values), never as markup.
// The page's Content-Security-Policy requires Trusted Types, so an `innerHTML = …` anywhere would throw anyway.

/**
 * Create an element. `props`: `class`, `dataset` (an object), `on<event>` (a listener), any other attribute
 * (`true` sets it empty; null, undefined and false leave it out). Children: nodes, or strings (as text).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...texts(children));
  return element;
}

/** Replace an element's children with these nodes or strings (strings as text). */
export function fill(element, ...children) {
  element.replaceChildren(...texts(children));
  return element;
}

function texts(children) {
  return children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false);
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element;
}

export function show(element, visible) {
  element.hidden = !visible;
}

const NUMBER = new Intl.NumberFormat('en');

export function formatCount(count) {
  return NUMBER.format(count);
}

/** `2025-02-24T10:30:00.123Z` → `2025-02-24 10:30:00` (UTC, like the API and the terminal client). */
export function formatTime(iso) {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '') : '—';
}

/** The time of day with milliseconds, for log lines: `10:30:00.123`. */
export function formatClock(iso) {
  return iso && iso.length >= 23 ? iso.slice(11, 23) : (iso ?? '');
}

/** JSON for display (as text in a <pre>). */
export function formatJson(value) {
  return value === null || value === undefined ? '—' : JSON.stringify(value, null, 2);
}

/** A progress bar: <div class="bar"><div class="fill"></div></div>, its width set through the CSSOM (allowed
 * by the CSP, unlike a style attribute). */
export function progressBar(percent, label = '') {
  const fillElement = h('div', { class: 'fill' });
  const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, fillElement);
  setProgress(bar, percent, label);
  return bar;
}

export function setProgress(bar, percent, label = '') {
  const known = typeof percent === 'number' && Number.isFinite(percent);
  const clamped = known ? Math.max(0, Math.min(100, percent)) : 0;
  bar.firstElementChild.style.width = `${clamped}%`;
  bar.classList.toggle('unknown', !known);
  if (known) bar.setAttribute('aria-valuenow', String(clamped));
  else bar.removeAttribute('aria-valuenow');
  bar.title = known ? `${clamped}%${label ? ` — ${label}` : ''}` : 'no progress reported';
}
