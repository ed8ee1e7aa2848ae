// A log message as DOM nodes: ANSI colour codes (SGR 0, 1, 22, 30–37, 39, 90–97) become styled spans, search
// matches become <mark>s, and everything else — including `<script>` and other markup — stays text.

// ESC [ params intermediates final (CSI, which SGR is one of), ESC ] … BEL|ESC \ (OSC: titles, hyperlinks),
// or ESC and one character. Only SGR is rendered; the rest is dropped rather than shown as noise.
const ESCAPE = /\x1b(?:\[([0-9;:?<=>]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)/g;
const HAS_SURROGATES = /[\uD800-\uDFFF]/;
const TAB_COLUMNS = 8;

/**
 * @param {string} message  the line's message as the API returns it
 * @param {Array<[number, number]>} [highlights]  the API's match ranges: code-point offsets into `message`,
 *   end exclusive (escape sequences included, since they are part of the stored message)
 * @returns {DocumentFragment}
 */
export function renderMessage(message, highlights) {
  const fragment = document.createDocumentFragment();
  const ranges = highlights?.length ? toUnitRanges(message, highlights) : [];
  if (!message.includes('\x1b') && ranges.length === 0) {
    fragment.append(message); // the common case: one text node
    return fragment;
  }
  const style = { fg: 0, bold: false };
  let rangeIndex = 0;
  const emit = (start, end) => {
    // one run of text in one style, cut where a match starts or ends
    let position = start;
    while (position < end) {
      while (rangeIndex < ranges.length && ranges[rangeIndex][1] <= position) rangeIndex += 1;
      const range = ranges[rangeIndex];
      const inMatch = range !== undefined && range[0] <= position;
      const stop = inMatch ? Math.min(end, range[1]) : Math.min(end, range ? range[0] : end);
      fragment.append(styled(message.slice(position, stop), style, inMatch));
      position = stop;
    }
  };
  let textStart = 0;
  ESCAPE.lastIndex = 0;
  for (let match = ESCAPE.exec(message); match !== null; match = ESCAPE.exec(message)) {
    emit(textStart, match.index);
    textStart = ESCAPE.lastIndex;
    if (match[2] === 'm') applySgr(style, match[1]);
  }
  emit(textStart, message.length);
  return fragment;
}

function styled(text, style, inMatch) {
  const classes = [];
  if (style.fg) classes.push(`fg-${style.fg}`);
  if (style.bold) classes.push('bold');
  if (!inMatch && classes.length === 0) return document.createTextNode(text);
  const element = document.createElement(inMatch ? 'mark' : 'span');
  if (classes.length) element.className = classes.join(' ');
  element.textContent = text;
  return element;
}

function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((code) => (code === '' ? 0 : Number(code)));
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) {
      style.fg = 0;
      style.bold = false;
    } else if (code === 1) style.bold = true;
    else if (code === 22) style.bold = false;
    else if (code === 39) style.fg = 0;
    else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) style.fg = code;
    else if (code === 38 || code === 48) {
      // 256-colour and true-colour forms: skip their arguments, so that they are not read as codes of their own
      i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0;
    }
    // backgrounds, underline, blink, …: not rendered
  }
}

/** Code-point ranges → UTF-16 index ranges (JS strings index by UTF-16 unit), sorted, overlaps merged. */
function toUnitRanges(message, highlights) {
  let convert = (offset) => offset;
  if (HAS_SURROGATES.test(message)) {
    const units = [0];
    for (const character of message) units.push(units[units.length - 1] + character.length);
    convert = (offset) => units[Math.max(0, Math.min(offset, units.length - 1))];
  }
  const ranges = highlights
    .filter((range) => Array.isArray(range) && range[1] > range[0])
    .map(([start, end]) => [convert(start), convert(end)])
    .sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last && range[0] <= last[1]) last[1] = Math.max(last[1], range[1]);
    else merged.push(range);
  }
  return merged;
}

/** The columns each of a message's lines takes (escape codes take none, a tab up to 8): row-height estimates. */
export function lineColumns(message) {
  const plain = message.includes('\x1b') ? message.replace(ESCAPE, '') : message;
  return plain.split(/\r\n|\r|\n/).map((line) => {
    if (!line.includes('\t')) return line.length;
    let columns = 0;
    for (const character of line) columns += character === '\t' ? TAB_COLUMNS - (columns % TAB_COLUMNS) : 1;
    return columns;
  });
}
