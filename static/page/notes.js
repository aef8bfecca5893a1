// Notes: the list of all the user's notes (newest first, live as jobs complete), one note's
// view (Escape goes back), and the setting that opens a tracked upload's notes when it is done.
import { $, page, showError } from './state.js';
import { clock, errorLine, parseTime } from './words.js';

const SETTING = 'jobserver:openNotesOnDone';

export function openNotesSetting() {
  try { return localStorage.getItem(SETTING) === '1'; } catch { return false; }
}

// ---- the list --------------------------------------------------------------------------------

let listShown = false;

export async function showNotesList() {
  listShown = true;
  const panel = $('#notes-list-panel');
  panel.hidden = false;
  panel.focus();
  await loadNotesList();
}

export function hideNotesList() {
  listShown = false;
  $('#notes-list-panel').hidden = true;
}

async function loadNotesList() {
  const client = page.client;
  try {
    const reply = await client.api.request('GET', '/api/notes', { query: { limit: 200 } });
    if (page.client !== client || !listShown) return;
    showError($('#notes-list-error'), '');
    $('#notes-list').replaceChildren(...reply.notes.map(noteItem));
    $('#notes-list-empty').hidden = reply.notes.length > 0;
  } catch (err) {
    showError($('#notes-list-error'), errorLine(err));
  }
}

function noteItem(note) {
  const li = document.createElement('li');
  li.dataset.noteId = note.noteId;
  const link = document.createElement('a');
  link.href = '#notes/' + encodeURIComponent(note.noteId);
  link.className = 'note-title';
  link.textContent = note.title || note.filename || 'Notes';
  const source = document.createElement('p');
  source.className = 'hint note-source';
  const made = parseTime(note.createdAt);
  const pages = note.pageCount ? ` · ${note.pageCount} page${note.pageCount === 1 ? '' : 's'}` : '';
  source.textContent = `${note.filename || ''}${pages}${made ? ' · ' + clock(made) : ''}`;
  const download = document.createElement('a');
  download.className = 'button';
  download.href = page.client.api.markdownUrl(note.noteId);
  download.setAttribute('download', '');
  download.textContent = 'Download Markdown';
  download.setAttribute('aria-label', `Download Markdown of ${note.filename || note.title || 'these notes'}`);
  li.append(link, source, download);
  return li;
}

/** A job completed with notes: the list, if shown, gets them; a tracked upload may open them. */
export function notesEvent(event, wasTracked) {
  if (event.type !== 'job.completed' || !event.result || !event.result.noteId) return;
  if (listShown) loadNotesList();
  if (wasTracked && openNotesSetting() && !location.hash.startsWith('#notes/')) {
    location.hash = '#notes/' + encodeURIComponent(event.result.noteId);
  }
}

// ---- one note --------------------------------------------------------------------------------

export async function showNotes(noteId) {
  const panel = $('#notes');
  page.returnFocus = document.activeElement;
  panel.hidden = false;
  $('#notes-title').textContent = 'Loading notes…';
  $('#notes-body').hidden = true;
  $('#notes-source').textContent = '';
  showError($('#notes-error'), '');
  panel.focus();
  try {
    const note = await page.client.api.getNote(noteId);
    renderNotes(note);
  } catch (err) {
    $('#notes-title').textContent = 'Notes';
    showError($('#notes-error'), errorLine(err));
  }
}

function renderNotes(note) {
  $('#notes-title').textContent = note.title || note.filename || 'Notes';
  const pages = note.pageCount ? ` · ${note.pageCount} page${note.pageCount === 1 ? '' : 's'}` : '';
  $('#notes-source').textContent = `${note.filename || ''}${pages}`;
  $('#notes-summary').textContent = note.summary || '';
  $('#notes-points').replaceChildren(...(note.keyPoints || []).map((point) => {
    const li = document.createElement('li');
    li.append(point.text + ' ');
    if (point.page != null) li.append(pageRef(point.page));
    return li;
  }));
  $('#notes-sections').replaceChildren(...(note.sections || []).map((section) => {
    const li = document.createElement('li');
    li.dataset.level = String(section.level || 1);
    li.append(section.title + ' ');
    if (section.page != null) li.append(pageRef(section.page));
    return li;
  }));
  $('#notes-keywords').replaceChildren(...(note.keywords || []).map((word) => {
    const li = document.createElement('li');
    li.textContent = word;
    return li;
  }));
  $('#notes-download').href = page.client.api.markdownUrl(note.noteId);
  $('#notes-body').hidden = false;
}

function pageRef(pageNumber) {
  const span = document.createElement('span');
  span.className = 'page-ref';
  span.textContent = `(p. ${pageNumber})`;
  return span;
}

export function hideNotes() {
  const panel = $('#notes');
  if (panel.hidden) return false;
  panel.hidden = true;
  return true;
}

export function setUpNotes() {
  const box = $('#open-notes-setting');
  box.checked = openNotesSetting();
  box.addEventListener('change', () => {
    try { localStorage.setItem(SETTING, box.checked ? '1' : '0'); } catch { /* private mode */ }
  });
}
