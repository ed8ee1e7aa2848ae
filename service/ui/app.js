// The viewer's entry point: sign-in, and the two pages (/ui/ the job list, /ui/?job=ID a job, #seq=N a line).

import { ApiError, apiGet, session, spaceOfKey } from './api.js';
import { byId, fill, show } from './dom.js';
import { JobPage } from './job.js';
import { JobsPage } from './jobs.js';

const elements = {
  signInView: byId('sign-in-view'),
  signInForm: byId('sign-in-form'),
  keyInput: byId('api-key'),
  signInError: byId('sign-in-error'),
  signOut: byId('sign-out'),
  space: byId('space-label'),
  jobsLink: byId('jobs-link'),
};

const jobsPage = new JobsPage(navigate);
const jobPage = new JobPage();

/** Go to a URL of the viewer (relative to /ui/) without reloading the page. */
function navigate(href) {
  history.pushState(null, '', new URL(href, window.location.href));
  route();
}

function route() {
  const signedIn = Boolean(session.spaceId);
  show(elements.signInView, !signedIn);
  show(elements.signOut, signedIn);
  show(elements.jobsLink, signedIn);
  fill(elements.space, signedIn ? `space ${session.spaceId}` : '');
  if (!signedIn) {
    jobsPage.close();
    jobPage.close();
    document.title = 'Sign in · joblens';
    elements.keyInput.focus();
    return;
  }
  const params = new URLSearchParams(window.location.search);
  const jobId = params.get('job');
  if (jobId) {
    jobsPage.close();
    if (jobPage.jobId !== jobId) jobPage.open(jobId);
  } else {
    jobPage.close();
    jobsPage.show(params);
  }
}

async function signIn(event) {
  event.preventDefault();
  const key = elements.keyInput.value.trim();
  show(elements.signInError, false);
  const spaceId = spaceOfKey(key);
  if (!spaceId) {
    failSignIn('That is not an API key: a key reads emit_<space id>_<secret>.');
    return;
  }
  session.store(key);
  try {
    await apiGet(`/spaces/${spaceId}/jobs`, { limit: 1 }); // the key works and may read jobs
  } catch (error) {
    session.forget();
    const reason =
      error instanceof ApiError && error.status === 401
        ? 'This key is unknown or revoked.'
        : error instanceof ApiError && error.status === 403
          ? 'This key may not read jobs (it needs the jobs:read scope).'
          : `Could not check the key: ${error.message}`;
    failSignIn(reason);
    return;
  }
  elements.keyInput.value = ''; // the field would otherwise keep it for as long as the page lives
  route();
}

function failSignIn(message) {
  fill(elements.signInError, message);
  show(elements.signInError, true);
}

function signOut() {
  session.forget();
  navigate('./');
}

elements.signInForm.addEventListener('submit', signIn);
elements.signOut.addEventListener('click', signOut);
window.addEventListener('popstate', route);
window.addEventListener('joblens:unauthorized', () => {
  // the key was revoked (or the data was wiped): back to the sign-in form, saying why
  session.forget();
  route();
  failSignIn('The API key stopped working (revoked or unknown); sign in again.');
});
document.addEventListener('click', (event) => {
  // links within the viewer change the page without a reload (so a job page opens at once)
  const link = event.target.closest('a[data-nav]');
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute('href'));
});

route();
