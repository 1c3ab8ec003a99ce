// The review page's behaviour: sign-in, the queue, the note with its evidence, decisions on
// codes, catalogue search, submitting feedback, pasting a note, and the keyboard.
//
// Every piece of text from the service (note, codes, descriptions, ids, messages) reaches the
// page through textContent or text nodes, never as HTML; the page's CSP also makes HTML sinks
// refuse strings (Trusted Types), so a slip here fails loudly instead of running a note's markup.

import { api, ApiError, isSendableKey } from "./api.js";
import { evidenceTags, percent, segmentNote, weightLevel } from "./evidence.js";

// sessionStorage: the key lives as long as this tab, is never shared with other tabs, and is
// gone when the tab closes; it is never written to localStorage or a cookie.
const SESSION_KEY = "plant-icd.review.key";
const SESSION_CODER = "plant-icd.review.coder";
const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 180;
const DEFAULT_EVIDENCE_INFO =
  "The selected code's evidence is highlighted; darker means more weight. Point at the text, or tick “Show evidence of every code”, to see the evidence of the others.";

const state = {
  key: null,
  me: null,
  coderId: null,
  queue: [],
  total: 0,
  prediction: null,
  segments: [],
  rows: [], // [{code, description, score, rank, above_threshold, highlights, suggested}]
  selected: null, // code string
  saved: new Map(), // code -> decision, as recorded
  pending: new Map(), // code -> decision, changed here and not yet sent
  leaveArmed: false,
  openSequence: 0, // only the latest request to open a note or load the queue is shown
  queueSequence: 0,
  busy: 0,
  search: { sequence: 0, timer: 0, results: [], active: -1 },
};

// -- small DOM helpers (text only) --------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element with a class and text content; children are appended as nodes. */
function make(tag, className, text, ...children) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined && text !== null) element.textContent = text;
  for (const child of children) element.append(child);
  return element;
}

function setStatus(message) {
  $("status").textContent = message;
  if (message) $("alert").textContent = "";
}

function setAlert(message) {
  $("alert").textContent = message;
  if (message) $("status").textContent = "";
}

function compact(code) {
  return code.toUpperCase().replace(/[.\s]/g, "");
}

function formatDate(iso) {
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime())
    ? iso
    : moment.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function noteLabel(prediction) {
  return prediction.note_id ? `note ${prediction.note_id}` : `prediction ${prediction.prediction_id.slice(0, 8)}`;
}

function isKept(decision) {
  return decision === "accepted" || decision === "added";
}

function effective(code) {
  return state.pending.get(code) ?? state.saved.get(code) ?? null;
}

/** Suggestions above their threshold with no decision yet: a final review must decide each. */
function undecidedRows() {
  return state.rows.filter((row) => row.suggested && row.above_threshold && effective(row.code) === null);
}

/** Score and threshold with enough decimals that they never look equal when they are not. */
function scoreAndThreshold(score, threshold) {
  let digits = 2;
  while (digits < 4 && score.toFixed(digits) === threshold.toFixed(digits) && score !== threshold) digits += 1;
  return [score.toFixed(digits), threshold.toFixed(digits)];
}

const STATUS_BADGES = {
  complete: ["badge done", "reviewed"],
  in_progress: ["badge progress", "in progress"],
  unreviewed: ["badge todo", "to review"],
};

/** Run `work` with the workspace marked aria-busy (for assistive technology, and for tests to
 * know when the page has settled). */
async function busy(work) {
  state.busy += 1;
  $("review-view").setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    state.busy -= 1;
    if (!state.busy) $("review-view").setAttribute("aria-busy", "false");
  }
}

function handleError(error, doing) {
  const detail = error instanceof ApiError ? error.detail : String(error?.message ?? error);
  if (error instanceof ApiError && error.status === 401) {
    signOut(`Signed out: the service no longer accepts this key (${detail}).`);
    return;
  }
  setAlert(`${doing}: ${detail}`);
}

// -- sign-in ------------------------------------------------------------------------------------

async function signIn(key, coderId, { silent = false } = {}) {
  $("sign-in-error").textContent = "";
  if (!isSendableKey(key)) {
    $("sign-in-error").textContent =
      "That is not an API key: keys are printable characters without spaces (they start with picd_).";
    return;
  }
  let me;
  try {
    me = await api.me(key);
  } catch (error) {
    sessionStorage.removeItem(SESSION_KEY);
    if (error instanceof ApiError && error.status === 401) {
      $("sign-in-error").textContent =
        "This API key is not recognised. Check it, or ask an administrator for a coder key.";
    } else {
      $("sign-in-error").textContent = `Could not sign in: ${error.detail ?? error.message}`;
    }
    showSignIn();
    return;
  }
  if (!me.may_review) {
    sessionStorage.removeItem(SESSION_KEY);
    $("sign-in-error").textContent =
      `The key “${me.name}” has the role ${me.role}, which may not review codes. ` +
      "The review page needs a key with the coder (or admin) role: ask an administrator for one.";
    showSignIn();
    return;
  }
  state.key = key;
  state.me = me;
  state.coderId = (coderId || "").trim() || me.name;
  sessionStorage.setItem(SESSION_KEY, key);
  sessionStorage.setItem(SESSION_CODER, state.coderId);
  $("api-key").value = "";
  await busy(async () => {
    showReview();
    if (!silent) setStatus(`Signed in as ${me.name} (${me.role}).`);
    await loadQueue();
    (document.querySelector("#queue-list button") ?? $("filter-reviewed")).focus();
    const first = state.queue[0];
    if (first) await openPrediction(first.prediction_id, { focus: false });
  });
}

function signOut(message = "Signed out.") {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(SESSION_CODER);
  state.key = null;
  state.me = null;
  state.prediction = null;
  state.queue = [];
  state.pending.clear();
  showSignIn();
  setStatus("");
  if (message) $("sign-in-error").textContent = message;
}

function showSignIn() {
  $("review-view").hidden = true;
  $("who").hidden = true;
  document.querySelector("footer.keys").hidden = true;
  $("sign-in-view").hidden = false;
  $("api-key").focus();
}

function showReview() {
  $("sign-in-view").hidden = true;
  $("review-view").hidden = false;
  document.querySelector("footer.keys").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.me.name;
  $("who-role").textContent = state.me.role;
  $("who-coder").textContent = state.coderId;
  const mayPredict = state.me.may_predict;
  $("paste-form").hidden = !mayPredict;
  $("paste-refused").hidden = mayPredict;
  $("paste-refused").textContent = mayPredict
    ? ""
    : `Your key's role (${state.me.role}) may not code new notes: that needs the ehr or admin role.`;
}

// -- the queue ----------------------------------------------------------------------------------

function localDay(value, plusDays = 0) {
  const [year, month, day] = value.split("-").map(Number);
  return new Date(year, month - 1, day + plusDays).toISOString();
}

function queueFilters() {
  const from = $("filter-from").value;
  const to = $("filter-to").value;
  if (from && to && from > to) throw new Error("the From date is after the To date");
  return {
    reviewed: $("filter-reviewed").value,
    note_id: $("filter-note-id").value.trim(),
    created_from: from ? localDay(from) : "",
    created_to: to ? localDay(to, 1) : "", // the whole To day
    order: "newest",
  };
}

function loadQueue(options) {
  return busy(() => fetchQueue(options));
}

async function fetchQueue({ append = false } = {}) {
  let filters;
  try {
    filters = queueFilters();
  } catch (error) {
    setAlert(`Cannot filter: ${error.message}.`);
    return false;
  }
  const offset = append ? state.queue.length : 0;
  const sequence = ++state.queueSequence;
  try {
    const page = await api.queue(state.key, { ...filters, limit: PAGE_SIZE, offset });
    if (sequence !== state.queueSequence) return false;
    state.queue = append ? [...state.queue, ...page.items] : page.items;
    state.total = page.total;
  } catch (error) {
    handleError(error, "Could not load the queue");
    return false;
  }
  renderQueue();
  return true;
}

/** The queue's items grouped by note id, in queue order: a note coded again (a client's retry,
 * a re-sent note) shows once, its other predictions listed under it. */
function queueGroups() {
  const groups = [];
  const byNote = new Map();
  for (const item of state.queue) {
    const group = item.note_id ? byNote.get(item.note_id) : undefined;
    if (group) {
      group.push(item);
    } else {
      const fresh = [item];
      groups.push(fresh);
      if (item.note_id) byNote.set(item.note_id, fresh);
    }
  }
  return groups;
}

function statusBadge(item) {
  const [className, text] = STATUS_BADGES[item.review_status] ?? STATUS_BADGES.unreviewed;
  return make("span", className, text);
}

function queueButton(item, className, ...children) {
  const button = make("button", className, null, ...children);
  button.type = "button";
  button.dataset.id = item.prediction_id;
  if (state.prediction?.prediction_id === item.prediction_id) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => openPrediction(item.prediction_id));
  return button;
}

function renderQueue() {
  const list = $("queue-list");
  const focusedId = document.activeElement?.closest?.("#queue-list")
    ? document.activeElement.dataset.id
    : null;
  list.replaceChildren();
  for (const [head, ...others] of queueGroups()) {
    const title = make("span", "qi-title", head.note_id ? `Note ${head.note_id}` : "Note without an ID");
    if (head.note_id) title.title = `Note ${head.note_id}`; // the whole id, when it is cut short
    const button = queueButton(
      head,
      "queue-item",
      title,
      make("span", "qi-date", formatDate(head.created_at)),
      make(
        "span",
        "qi-codes",
        head.codes_above_threshold.length ? head.codes_above_threshold.join(", ") : "no code above threshold",
      ),
      statusBadge(head),
    );
    const entry = make("li", null, null, button);
    if (others.length) {
      entry.classList.add("qi-group");
      button.append(make("span", "qi-retries", `coded ${others.length + 1} times: newest shown, earlier below`));
      const earlier = make("ol", "retries");
      earlier.setAttribute("aria-label", `Earlier predictions of note ${head.note_id}`);
      others.forEach((item, index) => {
        const label = `earlier ${index + 1}: ${formatDate(item.created_at)}`;
        earlier.append(make("li", null, null, queueButton(item, "retry-item", make("span", "qi-date", label), statusBadge(item))));
      });
      entry.append(earlier);
    }
    list.append(entry);
  }
  if (!state.queue.length) list.append(make("li", "empty", "No predictions match these filters."));
  $("queue-count").textContent = `(${state.queue.length} of ${state.total})`;
  $("queue-more").hidden = state.queue.length >= state.total;
  if (focusedId) list.querySelector(`button[data-id="${CSS.escape(focusedId)}"]`)?.focus();
}

// -- one prediction -----------------------------------------------------------------------------

function openPrediction(id, options) {
  return busy(() => fetchPrediction(id, options));
}

async function fetchPrediction(id, { focus = true } = {}) {
  const sequence = ++state.openSequence;
  let detail;
  try {
    detail = await api.prediction(state.key, id);
  } catch (error) {
    if (sequence === state.openSequence) handleError(error, "Could not open the prediction");
    return false;
  }
  if (sequence !== state.openSequence) return false; // the coder has opened another since
  state.prediction = detail;
  state.pending = new Map();
  state.saved = new Map(detail.review.decisions.map((decision) => [decision.code, decision.decision]));
  state.leaveArmed = false;
  state.rows = detail.codes.map((code) => ({ ...code, suggested: true }));
  const suggested = new Set(detail.codes.map((code) => compact(code.code)));
  for (const decision of detail.review.decisions) {
    if (!suggested.has(compact(decision.code))) addRow(decision.code, null);
  }
  state.segments = detail.note_text ? segmentNote(detail.note_text, detail.codes) : [];
  state.selected = state.rows[0]?.code ?? null;
  $("comment").value = "";
  closeSearch();
  $("code-search").value = "";
  renderHeader();
  renderNote();
  renderCodes();
  renderQueue();
  if (focus) focusSelectedCode();
  return true;
}

function addRow(code, description) {
  const row = { code, description: description ?? "", highlights: [], suggested: false };
  state.rows.push(row);
  if (description === null) {
    // A code added earlier: the prediction does not carry its description, the catalogue does.
    api
      .code(state.key, code)
      .then((info) => {
        row.description = info.description;
        renderCodes();
      })
      .catch(() => {});
  }
  return row;
}

function renderHeader() {
  const prediction = state.prediction;
  $("note-heading").textContent = prediction.note_id ? `Note ${prediction.note_id}` : "Note without an ID";
  const parts = [
    `Created ${formatDate(prediction.created_at)}`,
    `${prediction.model.name} ${prediction.model.version}`,
    `sent by ${prediction.client}`,
  ];
  if (prediction.encounter_id) parts.splice(1, 0, `encounter ${prediction.encounter_id}`);
  const events = prediction.feedback;
  if (events.length) {
    const last = events[events.length - 1];
    const review = prediction.review;
    const where = review.status === "complete"
      ? "review complete"
      : `review in progress (${review.undecided.length} above threshold undecided)`;
    parts.push(`${where}, last by ${last.coder_id} ${formatDate(last.created_at)}`);
    const commented = [...events].reverse().find((event) => event.comment);
    if (commented) parts.push(`comment: “${commented.comment}”`);
  } else {
    parts.push("not reviewed yet");
  }
  $("note-meta").textContent = parts.join(" · ");
}

function selectedRow() {
  return state.rows.find((row) => row.code === state.selected) ?? null;
}

function renderNote() {
  const container = $("note-text");
  const prediction = state.prediction;
  container.replaceChildren();
  $("evidence-info").textContent = DEFAULT_EVIDENCE_INFO;
  if (prediction.note_text === null) {
    container.append(
      make("p", "muted", "The note's text is not stored (text storage is off, or it was purged); its codes are listed without evidence."),
    );
    return;
  }
  const row = selectedRow();
  const heaviest = Math.max(0, ...(row?.highlights ?? []).map((highlight) => highlight.weight));
  state.segments.forEach((segment, index) => {
    if (!segment.covers.length) {
      container.append(document.createTextNode(segment.text));
      return;
    }
    const mine = segment.covers.find((cover) => cover.code === state.selected);
    const span = make(mine ? "mark" : "span", null, segment.text);
    // Other codes' evidence is drawn only on hover or with "Show evidence of every code".
    span.className = mine ? `evidence selected w${weightLevel(mine.weight, heaviest)}` : "evidence other";
    span.dataset.segment = String(index);
    span.dataset.start = String(segment.start);
    span.dataset.end = String(segment.end);
    span.dataset.codes = segment.covers.map((cover) => cover.code).join(" ");
    if (mine) span.dataset.weight = mine.weight.toFixed(6);
    span.title = describeCovers(segment.covers);
    container.append(span);
  });
}

function describeCovers(covers) {
  const codes = covers.map((cover) => `${cover.code} ${cover.description} (weight ${percent(cover.weight)})`);
  return `Evidence for ${codes.join("; ")}`;
}

function showEvidenceInfo(event) {
  const span = event.target.closest?.("[data-segment]");
  if (!span) return;
  const segment = state.segments[Number(span.dataset.segment)];
  if (segment) $("evidence-info").textContent = describeCovers(segment.covers);
}

// -- the code list and decisions ----------------------------------------------------------------

function decisionText(code) {
  const pending = state.pending.get(code);
  const saved = state.saved.get(code);
  if (pending) return `${pending} · not saved`;
  if (saved) return `${saved} · saved`;
  return "undecided";
}

function renderCodes() {
  const list = $("code-list");
  // Rebuilding replaces the buttons; put the focus back on the same control of the same code.
  const active = document.activeElement;
  const focusCode = active?.closest?.("#code-list li")?.dataset.code ?? null;
  const focusRole = active?.dataset?.role ?? null;
  list.replaceChildren();
  if (!state.rows.length) list.append(make("li", "empty", "The model suggested no codes for this note."));
  for (const row of state.rows) {
    const decision = effective(row.code);
    const item = make("li", "code-row");
    item.dataset.code = row.code;
    if (decision) item.classList.add(isKept(decision) ? "kept" : "rejected");
    if (state.pending.has(row.code)) item.classList.add("unsaved");
    if (row.code === state.selected) item.classList.add("selected");

    const meta = make("span", "code-meta");
    if (row.suggested) {
      const hasThreshold = typeof row.threshold === "number";
      const [score, threshold] = hasThreshold
        ? scoreAndThreshold(row.score, row.threshold)
        : [row.score.toFixed(2), null];
      meta.append(make("span", "score", `score ${score}`));
      // Each code has its own tuned threshold: show it, so 0.22 above and 0.40 below make sense.
      if (hasThreshold) meta.append(make("span", "cutoff", `threshold ${threshold}`));
      meta.append(
        make("span", row.above_threshold ? "threshold above" : "threshold below", row.above_threshold ? "above threshold" : "below threshold"),
      );
    } else {
      meta.append(make("span", "threshold added", "added by a coder"));
    }
    const select = make(
      "button",
      "code-select",
      null,
      make("span", "code", row.code),
      make("span", "description", row.description || " "),
      meta,
    );
    select.type = "button";
    select.dataset.role = "select";
    select.setAttribute("aria-current", row.code === state.selected ? "true" : "false");
    select.addEventListener("click", () => selectCode(row.code));

    const accept = make("button", "accept", "Accept");
    accept.type = "button";
    accept.dataset.role = "accept";
    accept.setAttribute("aria-pressed", String(isKept(decision)));
    accept.setAttribute("aria-label", `Accept ${row.code}`);
    accept.addEventListener("click", () => decide(row.code, "accepted"));
    const reject = make("button", "reject", "Reject");
    reject.type = "button";
    reject.dataset.role = "reject";
    reject.setAttribute("aria-pressed", String(decision === "rejected"));
    reject.setAttribute("aria-label", `Reject ${row.code}`);
    reject.addEventListener("click", () => decide(row.code, "rejected"));
    const group = make("div", "decide", null, accept, reject, make("span", "decision-state", decisionText(row.code)));
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", `Decision on ${row.code}`);
    item.append(select, group);
    list.append(item);
  }
  if (focusCode) {
    const selector = `li[data-code="${CSS.escape(focusCode)}"] [data-role="${focusRole ?? "select"}"]`;
    list.querySelector(selector)?.focus();
  }
  renderEvidenceList();
  renderPendingSummary();
}

function renderEvidenceList() {
  const row = selectedRow();
  const wrap = $("evidence-list-wrap");
  const list = $("evidence-list");
  list.replaceChildren();
  if (!row || !row.highlights.length || state.prediction.note_text === null) {
    wrap.hidden = true;
    return;
  }
  wrap.hidden = false;
  $("evidence-code").textContent = row.code;
  for (const highlight of row.highlights) {
    // Source and context flags as words, never colour alone.
    const tags = evidenceTags(highlight).map((tag) => make("span", "tag", tag));
    const button = make("button", "evidence-jump", null, make("q", null, highlight.text ?? ""), ` ${percent(highlight.weight)}`, ...tags);
    button.type = "button";
    button.setAttribute("aria-label", `Show “${highlight.text ?? ""}” in the note${tags.length ? ` (${evidenceTags(highlight).join(", ")})` : ""}`);
    button.addEventListener("click", () => {
      const mark = $("note-text").querySelector(`mark[data-start="${highlight.start}"]`);
      if (!mark) return;
      mark.scrollIntoView({ block: "center" });
      mark.classList.add("flash");
      setTimeout(() => mark.classList.remove("flash"), 1200);
    });
    list.append(make("li", null, null, button));
  }
}

function renderPendingSummary() {
  const counts = { accepted: 0, rejected: 0, added: 0 };
  for (const decision of state.pending.values()) counts[decision] += 1;
  const total = state.pending.size;
  const undecided = undecidedRows();
  $("submit-review").disabled = total === 0 && !undecided.length;
  $("save-progress").disabled = total === 0;
  for (const id of ["accept-rest", "reject-rest"]) $(id).disabled = !undecided.length;
  $("accept-rest").textContent = `Accept the rest (${undecided.length})`;
  $("reject-rest").textContent = `Reject the rest (${undecided.length})`;
  const left = undecided.length
    ? ` ${undecided.length} above threshold undecided: ${undecided.map((row) => row.code).join(", ")}.`
    : "";
  $("pending-summary").textContent = total
    ? `Not saved yet: ${counts.accepted} accepted, ${counts.rejected} rejected, ${counts.added} added.${left}`
    : state.saved.size
      ? left ? `Saved so far.${left}` : "All decisions on this note are saved."
      : `No decisions yet.${left}`;
}

/** "Accept the rest" / "Reject the rest": decide every undecided suggestion above threshold. */
function decideTheRest(decision) {
  const rest = undecidedRows();
  if (!rest.length) return;
  for (const row of rest) state.pending.set(row.code, decision);
  state.leaveArmed = false;
  renderNote();
  renderCodes();
  setStatus(`${decision === "accepted" ? "Accepted" : "Rejected"} the rest: ${rest.map((row) => row.code).join(", ")}; submit to save.`);
}

function selectCode(code, { focus = false } = {}) {
  state.selected = code;
  renderNote();
  renderCodes();
  const first = $("note-text").querySelector("mark.w4") ?? $("note-text").querySelector("mark");
  first?.scrollIntoView({ block: "nearest" });
  if (focus) focusSelectedCode();
}

function focusSelectedCode() {
  const selector = state.selected
    ? `li[data-code="${CSS.escape(state.selected)}"] [data-role="select"]`
    : "[data-role='select']";
  const button = $("code-list").querySelector(selector);
  if (button) button.focus();
  else $("code-list-heading").focus();
}

function moveSelection(step) {
  if (!state.rows.length) return;
  const index = state.rows.findIndex((row) => row.code === state.selected);
  const next = Math.max(0, Math.min(state.rows.length - 1, index + step));
  selectCode(state.rows[next].code, { focus: true });
}

/** accept / reject / undo (decision null). Pressing the active choice again undoes it. */
function decide(code, decision) {
  const row = state.rows.find((candidate) => candidate.code === code);
  if (!row || !state.prediction) return;
  state.leaveArmed = false;
  const saved = state.saved.get(code) ?? null;
  const current = effective(code);
  if (!row.suggested && state.pending.get(code) === "added" && !saved) {
    // Added here and never saved: rejecting (or undoing) simply takes it off the list again.
    if (decision !== "accepted") {
      state.rows = state.rows.filter((candidate) => candidate !== row);
      state.pending.delete(code);
      state.selected = state.rows[0]?.code ?? null;
      setStatus(`Removed ${code} from the codes to add.`);
    }
  } else if (decision === null || (decision === "accepted" ? isKept(current) : current === decision)) {
    state.pending.delete(code);
  } else if (decision === "accepted" ? isKept(saved) : saved === decision) {
    state.pending.delete(code);
  } else {
    state.pending.set(code, decision);
  }
  if (state.selected !== code && state.rows.includes(row)) state.selected = code;
  if (decision !== null && effective(code) !== null) advanceToUndecided(code);
  renderNote();
  renderCodes();
}

/** Select the next code without a decision after `code` (wrapping round), so A or R moves on
 * and a second key press never overwrites the decision just made. */
function advanceToUndecided(code) {
  const start = state.rows.findIndex((row) => row.code === code);
  for (let step = 1; step < state.rows.length; step += 1) {
    const row = state.rows[(start + step) % state.rows.length];
    if (effective(row.code) === null) {
      state.selected = row.code;
      return;
    }
  }
}

function addCode(code, description) {
  const key = compact(code);
  const existing = state.rows.find((row) => compact(row.code) === key);
  if (existing?.suggested) {
    if (!isKept(effective(existing.code))) decide(existing.code, "accepted");
    else selectCode(existing.code);
    setStatus(`${existing.code} was already suggested; it is marked accepted.`);
    return;
  }
  if (existing) {
    if (!isKept(effective(existing.code))) decide(existing.code, "accepted");
    setStatus(`${existing.code} is already in the list.`);
    return;
  }
  addRow(code, description);
  state.pending.set(code, "added");
  state.selected = code;
  state.leaveArmed = false;
  renderNote();
  renderCodes();
  setStatus(`Added ${code} (${description}); submit to save it.`);
}

function submitReview() {
  return busy(() => saveReview({ final: true }));
}

function saveProgress() {
  return busy(() => saveReview({ final: false }));
}

async function saveReview({ final }) {
  const prediction = state.prediction;
  if (!prediction) return;
  const undecided = undecidedRows();
  if (final && undecided.length) {
    // A final review decides every suggestion above threshold: nothing silently drops out.
    const codes = undecided.map((row) => row.code).join(", ");
    setAlert(
      `Not submitted: ${undecided.length} suggestion(s) above threshold are undecided (${codes}). ` +
        "Accept or reject each (A / R), use Accept the rest or Reject the rest, or Save progress to finish later.",
    );
    state.selected = undecided[0].code;
    renderNote();
    renderCodes();
    focusSelectedCode();
    return;
  }
  if (!state.pending.size) {
    setAlert("Nothing to save: accept, reject or add at least one code first.");
    return;
  }
  const decisions = [...state.pending].map(([code, decision]) => ({ code, decision }));
  const comment = $("comment").value.trim();
  $("submit-review").disabled = true;
  $("save-progress").disabled = true;
  try {
    await api.feedback(state.key, prediction.prediction_id, {
      coder_id: state.coderId,
      decisions,
      comment: comment || null,
      final,
    });
  } catch (error) {
    renderPendingSummary();
    handleError(error, final ? "Could not save the review" : "Could not save progress");
    return;
  }
  const counts = { accepted: 0, rejected: 0, added: 0 };
  for (const decision of decisions) counts[decision.decision] += 1;
  const summary = Object.entries(counts)
    .filter(([, count]) => count)
    .map(([decision, count]) => `${count} ${decision}`)
    .join(", ");
  state.pending.clear();
  if (!final) {
    await fetchQueue();
    await fetchPrediction(prediction.prediction_id);
    const left = undecidedRows().length;
    setStatus(`Saved progress on ${noteLabel(prediction)} (${summary}); ${left} above threshold still undecided.`);
    return;
  }
  await openNext(`Saved the review of ${noteLabel(prediction)} (${summary}).`);
}

/** Open the note after the current one in the queue (refreshed first); `message` leads. */
function goToNext(message = "") {
  return busy(() => openNext(message));
}

async function openNext(message) {
  if (!state.prediction) return;
  if (state.pending.size && !state.leaveArmed) {
    state.leaveArmed = true;
    setAlert(
      `You have ${state.pending.size} unsaved decision(s) on this note: press N (or Next note) again to leave them, or Ctrl+Enter to submit.`,
    );
    return;
  }
  const currentId = state.prediction.prediction_id;
  const before = state.queue.map((item) => item.prediction_id);
  const after = before.slice(before.indexOf(currentId) + 1);
  await loadQueue();
  const present = new Set(state.queue.map((item) => item.prediction_id));
  const nextId =
    after.find((id) => present.has(id)) ??
    state.queue.find((item) => item.prediction_id !== currentId && item.review_status !== "complete")?.prediction_id ??
    null;
  if (nextId) {
    await openPrediction(nextId);
    setStatus(`${message} Now showing ${noteLabel(state.prediction)}.`.trim());
  } else {
    await openPrediction(currentId);
    setStatus(`${message} There is no next note in the queue.`.trim());
  }
}

// -- catalogue search (type-ahead) --------------------------------------------------------------

function closeSearch() {
  const box = $("code-search-results");
  box.hidden = true;
  box.replaceChildren();
  state.search.results = [];
  state.search.active = -1;
  $("code-search").setAttribute("aria-expanded", "false");
  $("code-search").removeAttribute("aria-activedescendant");
}

function scheduleSearch() {
  clearTimeout(state.search.timer);
  const query = $("code-search").value.trim();
  if (!query) {
    state.search.sequence += 1;
    closeSearch();
    return;
  }
  state.search.timer = setTimeout(() => runSearch(query), SEARCH_DELAY_MS);
}

async function runSearch(query) {
  const sequence = ++state.search.sequence;
  let found;
  try {
    found = await api.searchCodes(state.key, query, 20);
  } catch (error) {
    if (sequence === state.search.sequence) handleError(error, "Could not search the catalogue");
    return;
  }
  if (sequence !== state.search.sequence) return; // a later keystroke already asked again
  // Chapters and blocks are headings of the catalogue, not codes one can assign.
  state.search.results = found.results.filter((info) => info.kind === "code");
  state.search.active = state.search.results.length ? 0 : -1;
  renderSearch(query);
}

function renderSearch(query) {
  const box = $("code-search-results");
  box.replaceChildren();
  const input = $("code-search");
  state.search.results.forEach((info, index) => {
    const option = make(
      "li",
      "option",
      null,
      make("span", "code", info.code),
      make("span", "description", info.description),
      make("span", "option-meta", info.in_model ? "in model" : ""),
    );
    option.id = `code-option-${index}`;
    option.setAttribute("role", "option");
    option.setAttribute("aria-selected", String(index === state.search.active));
    // mousedown would blur the input first; keep the focus where the coder is typing.
    option.addEventListener("mousedown", (event) => event.preventDefault());
    option.addEventListener("click", () => chooseSearchResult(index));
    box.append(option);
  });
  if (!state.search.results.length) {
    const none = make("li", "option none", `No catalogue code matches “${query}”.`);
    none.setAttribute("role", "option");
    none.setAttribute("aria-disabled", "true");
    box.append(none);
  }
  box.hidden = false;
  keepAboveSubmitBar(box);
  input.setAttribute("aria-expanded", "true");
  if (state.search.active >= 0) input.setAttribute("aria-activedescendant", `code-option-${state.search.active}`);
  else input.removeAttribute("aria-activedescendant");
}

/** The list sits in the column's flow; scroll the column so that none of it is under the sticky
 * submit bar (scrolled to the end, the bar follows the content and covers nothing). */
function keepAboveSubmitBar(element) {
  const panel = element.closest(".panel");
  const bar = panel?.querySelector(".submit-bar");
  if (!panel || !bar) return;
  const hidden = element.getBoundingClientRect().bottom - bar.getBoundingClientRect().top;
  if (hidden > 0) panel.scrollTop += hidden + 4;
}

function moveSearch(step) {
  const count = state.search.results.length;
  if (!count) return;
  state.search.active = (state.search.active + step + count) % count;
  renderSearch($("code-search").value.trim());
  $(`code-option-${state.search.active}`)?.scrollIntoView({ block: "nearest" });
}

function chooseSearchResult(index) {
  const info = state.search.results[index];
  if (!info) return;
  $("code-search").value = "";
  closeSearch();
  addCode(info.code, info.description);
  $("code-search").focus();
}

function onSearchKey(event) {
  if (event.key === "ArrowDown") {
    event.preventDefault();
    moveSearch(1);
  } else if (event.key === "ArrowUp") {
    event.preventDefault();
    moveSearch(-1);
  } else if (event.key === "Enter" && !(event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (state.search.active >= 0) chooseSearchResult(state.search.active);
  } else if (event.key === "Escape" && !$("code-search-results").hidden) {
    event.preventDefault();
    event.stopPropagation();
    closeSearch();
  }
}

// -- pasting a note -----------------------------------------------------------------------------

function pasteNote(event) {
  event.preventDefault();
  return busy(codePastedNote);
}

async function codePastedNote() {
  const text = $("paste-text").value;
  if (!text.trim()) {
    setAlert("Paste the note's text first.");
    $("paste-text").focus();
    return;
  }
  const noteId = $("paste-note-id").value.trim();
  let created;
  try {
    created = await api.predict(state.key, { text, note_id: noteId || null });
  } catch (error) {
    handleError(error, "Could not code the note");
    return;
  }
  $("paste-text").value = "";
  $("paste-note-id").value = "";
  await loadQueue();
  await openPrediction(created.prediction_id);
  const above = created.codes.filter((code) => code.above_threshold).length;
  setStatus(`Coded the new ${noteLabel(created)}: ${created.codes.length} codes suggested, ${above} above threshold.`);
}

// -- keyboard -----------------------------------------------------------------------------------

function decideByKey(decision) {
  decide(state.selected, decision);
  focusSelectedCode(); // the selection may have moved on to the next undecided code
}

function isTyping(target) {
  return (
    target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
  );
}

function onKey(event) {
  if ($("review-view").hidden) return;
  const target = event.target;
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
    event.preventDefault();
    if (target instanceof HTMLElement && target.closest("#paste-form")) $("paste-form").requestSubmit();
    else submitReview();
    return;
  }
  if (event.key === "Escape") {
    closeSearch();
    focusSelectedCode();
    return;
  }
  if (isTyping(target) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (target instanceof HTMLElement && target.closest("#queue-list") && ["ArrowDown", "ArrowUp"].includes(event.key)) {
    event.preventDefault();
    const buttons = [...$("queue-list").querySelectorAll("button")];
    const index = buttons.indexOf(target.closest("button"));
    buttons[Math.max(0, Math.min(buttons.length - 1, index + (event.key === "ArrowDown" ? 1 : -1)))]?.focus();
    return;
  }
  const actions = {
    ArrowDown: () => moveSelection(1),
    j: () => moveSelection(1),
    ArrowUp: () => moveSelection(-1),
    k: () => moveSelection(-1),
    a: () => state.selected && decideByKey("accepted"),
    r: () => state.selected && decideByKey("rejected"),
    u: () => state.selected && decide(state.selected, null),
    n: () => goToNext(),
    "/": () => $("code-search").focus(),
  };
  const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

// -- wiring -------------------------------------------------------------------------------------

function start() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("api-key").value.trim(), $("coder-id").value);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("queue-filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await loadQueue()) setStatus(`The queue shows ${state.queue.length} of ${state.total} predictions.`);
  });
  $("queue-more").addEventListener("click", () => loadQueue({ append: true }));
  $("note-text").addEventListener("mouseover", showEvidenceInfo);
  $("note-text").addEventListener("mouseleave", () => {
    $("evidence-info").textContent = DEFAULT_EVIDENCE_INFO;
  });
  $("review-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitReview();
  });
  $("next-note").addEventListener("click", () => goToNext());
  $("save-progress").addEventListener("click", () => saveProgress());
  $("accept-rest").addEventListener("click", () => decideTheRest("accepted"));
  $("reject-rest").addEventListener("click", () => decideTheRest("rejected"));
  $("show-all-evidence").addEventListener("change", (event) => {
    $("note-text").classList.toggle("show-all", event.target.checked);
  });
  $("code-search").addEventListener("input", scheduleSearch);
  $("code-search").addEventListener("keydown", onSearchKey);
  $("code-search").addEventListener("blur", () => setTimeout(closeSearch, 150));
  $("paste-form").addEventListener("submit", pasteNote);
  document.addEventListener("keydown", onKey);

  const key = sessionStorage.getItem(SESSION_KEY);
  if (key) signIn(key, sessionStorage.getItem(SESSION_CODER) ?? "", { silent: true });
  else showSignIn();
}

start();
