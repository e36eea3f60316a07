/* Gleaner review: the keyboard-first grid and detail view. Plain JS, no dependencies, served locally.
 *
 * Actions change the page at once (optimistic) and go to the server one at a time, in order; each answer
 * carries the confirmed state of the touched images, which replaces the guess. Open tabs poll a cheap
 * version endpoint and refresh the cards they show when someone else changed the catalog.
 */
"use strict";

(() => {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const isGrid = boot.page === "grid";
  const cards = Array.from(document.querySelectorAll(".card[data-sha]"));
  const cardOf = new Map(); // sha256 -> its cards (an image can be in several candidate pairs)
  for (const card of cards) cardOf.set(card.dataset.sha, [...(cardOf.get(card.dataset.sha) || []), card]);
  const cardsOf = (sha) => cardOf.get(sha) || [];
  const view = boot.filter.view || "all";
  const pairView = isGrid && view === "candidates"; // pairs of a near-duplicate candidate, side by side
  const groupView = isGrid && view === "duplicates";
  const FOCUS_KEY = "gleaner-review-focus";
  const PLACE_KEY = "gleaner-review-place"; // the grid page an image was opened from, and the image last seen
  const here = isGrid ? null : cards[0]?.dataset.sha; // the detail view's image
  const selected = new Set();
  const REVIEW = { accept: "accepted", reject: "rejected", unreview: "unreviewed" };
  const POLL_MS = 2000;
  let legend = boot.legend;
  let version = boot.version;
  let focus = 0;
  let inflight = 0;
  let queue = Promise.resolve();
  let saved = false; // "saved" shows once something was
  let regroup = false; // a near-duplicate decision changed the page's pairs or groups: reload once all is saved

  const $ = (selector) => document.querySelector(selector);
  const statusEl = $("#status");

  // --- small helpers -------------------------------------------------------------------------------------

  // Labels created one after another get hues a golden angle apart: neighbours never look alike.
  function hue(name) {
    const entry = legend.find((item) => item.name === name);
    let seed = entry ? entry.id : 0;
    if (!entry) for (const ch of name) seed = (seed * 31 + ch.codePointAt(0)) % 9973;
    return Math.round(seed * 137.508) % 360;
  }

  function tint(element, name) {
    element.style.background = name ? `hsl(${hue(name)} 75% 82%)` : "";
  }

  let toastTimer = null;
  function toast(message, error = false) {
    const el = $("#toast");
    el.textContent = message;
    el.classList.toggle("error", error);
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), error ? 5000 : 2000);
  }

  function showStatus() {
    document.body.dataset.inflight = String(inflight); // tests wait for "0": every change confirmed
    statusEl.classList.toggle("busy", inflight > 0);
    statusEl.textContent = inflight > 0 || !saved ? "" : "saved";
    const sel = $("#selection");
    if (sel) sel.textContent = selected.size ? `${selected.size} selected` : "";
  }

  async function api(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": boot.csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  // One request at a time, in the order of the key presses: undo always undoes what the user last saw.
  function enqueue(work) {
    inflight += 1;
    saved = true;
    showStatus();
    const result = queue.then(work);
    queue = result
      .catch(() => {})
      .finally(() => {
        inflight -= 1;
        showStatus();
        if (inflight === 0 && regroup) reloadKeepingFocus();
      });
    return result;
  }

  // --- cards ----------------------------------------------------------------------------------------------

  function paint(card) {
    const label = card.dataset.label;
    const review = card.dataset.review;
    card.classList.remove("r-unreviewed", "r-accepted", "r-rejected");
    card.classList.add(`r-${review}`);
    const lab = card.querySelector(".lab");
    lab.textContent = label || "unlabelled";
    tint(lab, label);
    card.querySelector(".rev").textContent = review;
  }

  function apply(states) {
    for (const [sha, state] of Object.entries(states || {})) {
      for (const card of cardsOf(sha)) {
        card.dataset.label = state.label || "";
        card.dataset.review = state.review;
        paint(card);
      }
    }
  }

  function snapshot(shas) {
    const saved = {};
    for (const sha of shas) {
      const card = cardsOf(sha)[0];
      if (card) saved[sha] = { label: card.dataset.label, review: card.dataset.review };
    }
    return saved;
  }

  function setFocus(index, { scroll = true } = {}) {
    if (!cards.length) return;
    index = Math.max(0, Math.min(cards.length - 1, index));
    cards[focus]?.classList.remove("focus");
    focus = index;
    cards[focus].classList.add("focus");
    if (scroll && isGrid) cards[focus].scrollIntoView({ block: "nearest" });
  }

  function toggle(index, on) {
    const card = cards[index];
    if (!card) return;
    const sha = card.dataset.sha;
    const select = on === undefined ? !selected.has(sha) : on;
    if (select) selected.add(sha);
    else selected.delete(sha);
    for (const other of cardsOf(sha)) other.classList.toggle("selected", select);
    showStatus();
  }

  function clearSelection() {
    for (const sha of selected) for (const card of cardsOf(sha)) card.classList.remove("selected");
    selected.clear();
    showStatus();
  }

  function columns() {
    if (cards.length < 2) return 1;
    const top = cards[0].offsetTop;
    let count = 0;
    for (const card of cards) {
      if (card.offsetTop !== top) break;
      count += 1;
    }
    return Math.max(1, count);
  }

  function targets() {
    if (selected.size) return Array.from(selected);
    return cards[focus] ? [cards[focus].dataset.sha] : [];
  }

  // --- legend ---------------------------------------------------------------------------------------------

  function legendHref(name) {
    const params = new URLSearchParams(boot.filter);
    if (params.get("label") === name) params.delete("label");
    else params.set("label", name);
    if (params.get("view") === "unlabelled") params.delete("view");
    const query = params.toString();
    return query ? `/?${query}` : "/";
  }

  function renderLegend() {
    const list = $("#legend");
    if (!list) return;
    list.replaceChildren(
      ...legend.map((entry) => {
        const item = document.createElement("li");
        item.dataset.label = entry.name;
        if (boot.filter.label === entry.name) item.className = "active";
        const key = document.createElement("kbd");
        key.textContent = entry.key ?? "";
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        tint(swatch, entry.name);
        const name = document.createElement(isGrid ? "a" : "span");
        name.textContent = entry.name;
        if (isGrid) name.href = legendHref(entry.name);
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = entry.count.toLocaleString("en");
        item.append(key, swatch, name, count);
        return item;
      }),
    );
    renderKeymap();
  }

  // The key map: always on screen (fixed at the bottom), one button per digit key, in key order.
  function renderKeymap() {
    const map = $("#keymap");
    if (!map) return;
    const button = (key, text, title) => {
      const el = document.createElement("button");
      el.type = "button";
      el.dataset.key = key;
      el.title = title;
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      el.append(kbd, text);
      return el;
    };
    const keyed = legend.filter((entry) => entry.key !== null && entry.key !== undefined);
    const items = keyed.map((entry) => {
      const el = button(String(entry.key), entry.name, `give the label "${entry.name}" (${entry.key})`);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      tint(swatch, entry.name);
      el.prepend(swatch);
      return el;
    });
    const rest = legend.length - keyed.length;
    items.push(button("l", rest ? `${rest} more…` : "any label…", "type the start of a label (l)"));
    items.push(button("?", "all keys", "every key (?)"));
    map.replaceChildren(...items);
  }

  function settle(data) {
    if (data.version) version = data.version;
    if (data.legend) {
      legend = data.legend;
      renderLegend();
      cards.forEach(paint); // a new label may have brought its colour
    }
    apply(data.images);
    if (data.regroup && (pairView || groupView)) regroup = true;
    if (data.reload) refresh();
    if (!isGrid && data.changed) refreshFacts();
  }

  // --- actions --------------------------------------------------------------------------------------------

  // The detail view moves on to the next image once the server has the change (the grid moves the focus).
  function nextImage() {
    const link = $("#next-image");
    if (link) window.location.href = link.href;
    else toast("that was the last image of this view");
  }

  function act(kind, label = null, chosen = null) {
    const shas = chosen || targets();
    if (!shas.length) return;
    const before = snapshot(shas);
    for (const card of shas.flatMap(cardsOf)) {
      if (kind === "label") card.dataset.label = label;
      else if (kind === "clear") card.dataset.label = "";
      else card.dataset.review = REVIEW[kind];
      card.classList.add("pending");
      paint(card);
    }
    const onFocused = shas.length === 1 && cards[focus]?.dataset.sha === shas[0];
    if (isGrid && (!selected.size || chosen) && onFocused) setFocus(focus + 1);
    enqueue(async () => {
      try {
        const data = await api("/api/action", { action: kind, label, shas });
        if (!isGrid && shas.includes(here)) {
          apply(data.images);
          nextImage();
        } else settle(data);
      } catch (error) {
        apply(before);
        toast(`not saved: ${error.message}`, true);
      } finally {
        for (const card of shas.flatMap(cardsOf)) card.classList.remove("pending");
      }
    });
  }

  // Suspected label errors: each chosen card takes the label the audit suggests for it (one request per label).
  function takeSuggestion(chosen = null) {
    const shas = (chosen || targets()).filter((sha) => cardsOf(sha).some((card) => card.dataset.suggested));
    if (!shas.length) return toast("y takes the suggested label in the Suspected label errors view", true);
    const bySuggestion = new Map();
    for (const sha of shas) {
      const suggested = cardsOf(sha)[0].dataset.suggested;
      bySuggestion.set(suggested, [...(bySuggestion.get(suggested) || []), sha]);
    }
    for (const [label, group] of bySuggestion) act("label", label, group);
  }

  // The whole filtered view, every page; the bulk dialog has said how many images change (see openPicker).
  function actOnView(kind, label = null) {
    enqueue(async () => {
      try {
        const data = await api("/api/action", { action: kind, label, scope: "view", filter: boot.filter });
        settle(data);
        toast(`${data.changed.toLocaleString("en")} image(s) changed (u undoes)`);
      } catch (error) {
        toast(`not saved: ${error.message}`, true);
      }
    });
  }

  function undo() {
    enqueue(async () => {
      try {
        const data = await api("/api/undo", {});
        const undone = data.undone || [];
        if (!isGrid && undone.length && !undone.includes(here)) {
          window.location.href = `/image/${undone[0]}${filterQuery()}`; // back to the image it undid
          return;
        }
        settle(data);
        const first = undone.find((sha) => cardsOf(sha).length);
        if (isGrid && first && !pairView && !groupView) setFocus(cards.indexOf(cardsOf(first)[0]));
        if (data.action) toast(`undone: ${data.changed} change(s)${data.skipped ? `, ${data.skipped} changed since` : ""}`);
        else toast("nothing to undo");
      } catch (error) {
        toast(`undo failed: ${error.message}`, true);
      }
    });
  }

  // --- near-duplicate decisions (Candidates and Duplicates views) -----------------------------------------

  // The page reloads once every decision is saved (pairs leave, groups change); the focus stays where it was.
  function reloadKeepingFocus() {
    const card = cards[focus];
    const pair = card?.closest(".pair");
    const kept = { href: window.location.href, index: focus, sha: card?.dataset.sha, side: card?.dataset.side };
    if (pair) Object.assign(kept, { a: pair.dataset.a, b: pair.dataset.b });
    sessionStorage.setItem(FOCUS_KEY, JSON.stringify(kept));
    window.location.reload();
  }

  function restoreFocus() {
    let kept = null;
    try {
      kept = JSON.parse(sessionStorage.getItem(FOCUS_KEY) || "null");
    } catch (error) {
      kept = null;
    }
    sessionStorage.removeItem(FOCUS_KEY);
    if (!kept || kept.href !== window.location.href) return false;
    let index = cards.findIndex((card) => {
      if (card.dataset.sha !== kept.sha) return false;
      const pair = card.closest(".pair");
      return !pair || (pair.dataset.a === kept.a && pair.dataset.b === kept.b && card.dataset.side === kept.side);
    });
    if (index < 0) index = Math.min(kept.index, cards.length - 1);
    setFocus(index);
    return true;
  }

  const DECIDED = {
    duplicate: "duplicates: the copy is set aside",
    not_duplicate: "not duplicates: never grouped again",
    keep: "kept: the other copy is set aside",
    split: "split out of its group",
    keeper: "the keeper of its group now",
  };

  function decide(kind, card = cards[focus]) {
    if (!card) return;
    let body = null;
    let busy = card;
    if (pairView) {
      const pair = card.closest(".pair");
      const { a, b } = pair.dataset;
      if (kind === "keep") {
        const mine = card.dataset.sha;
        body = { action: "keeper", a: mine, b: mine === a ? b : a };
      } else body = { action: kind, a, b };
      busy = pair;
      const index = cards.indexOf(card);
      const next = cards.findIndex((other, i) => i > index && !other.closest(".pair.deciding") && other.closest(".pair") !== pair && other.dataset.side === card.dataset.side);
      if (next >= 0) setFocus(next);
    } else if (groupView) {
      const keeper = card.dataset.keeper;
      if (!keeper) {
        toast(kind === "split" ? "this is the keeper: focus a copy to split it out" : "this is already the keeper", true);
        return;
      }
      body = kind === "split" ? { action: "not_duplicate", a: keeper, b: card.dataset.sha } : { action: "keeper", a: card.dataset.sha };
    } else {
      toast("d, k and s work in the Candidates and Duplicates views", true);
      return;
    }
    busy.classList.add("deciding");
    enqueue(async () => {
      try {
        settle(await api("/api/dedupe", body));
        toast(`${DECIDED[kind]} (u undoes)`);
      } catch (error) {
        busy.classList.remove("deciding");
        toast(`not saved: ${error.message}`, true);
      }
    });
  }

  async function addLabel(name) {
    const data = await api("/api/labels", { name });
    settle(data);
    return data;
  }

  function labelByKey(digit, chosen = null) {
    const entry = legend.find((item) => item.key === digit);
    if (!entry) {
      toast(`no label on key ${digit}: add one in the legend`, true);
      return;
    }
    act("label", entry.name, chosen);
  }

  function filterQuery(extra = {}) {
    const query = new URLSearchParams({ ...boot.filter, ...extra }).toString();
    return query ? `?${query}` : "";
  }

  // --- the picker: one image or a selection (l, label…), or the whole view (label all…, accept all…) --------
  //
  // Typing filters the labels by the start of their names (then by any word's start), in legend order; the
  // first match is chosen, arrows move the choice, enter applies it; a name no label has creates one. The
  // whole-view dialog looks different (class "bulk") and says how many images it will change before Apply.

  let picker = { scope: "targets", kind: "label", shas: [] };
  let pickerChoice = null; // { name, isNew }
  let impactSeq = 0;

  const fold = (text) => text.trim().toLocaleLowerCase();
  const plural = (count, word) => `${count.toLocaleString("en")} ${word}${count === 1 ? "" : "s"}`;

  function matches(typed) {
    const want = fold(typed);
    if (!want) return legend.map((entry) => entry.name);
    const names = legend.map((entry) => entry.name);
    const starts = names.filter((name) => fold(name).startsWith(want));
    const words = names.filter((name) => !starts.includes(name) && fold(name).split(/[\s_-]+/).some((w) => w.startsWith(want)));
    return [...starts, ...words];
  }

  function renderChoices(active = 0) {
    const typed = $("#picker-input").value.trim();
    const found = matches(typed);
    const options = found.map((name) => ({ name, isNew: false }));
    if (typed && !legend.some((entry) => fold(entry.name) === fold(typed))) options.push({ name: typed, isNew: true });
    active = Math.max(0, Math.min(options.length - 1, active));
    const list = $("#picker-list");
    list.replaceChildren(
      ...options.map((option, index) => {
        const item = document.createElement("li");
        item.setAttribute("role", "option");
        item.dataset.index = String(index);
        const entry = legend.find((e) => e.name === option.name);
        if (option.isNew) {
          item.dataset.new = "1";
          item.textContent = `new label "${option.name}"`;
        } else {
          item.dataset.label = option.name;
          const key = document.createElement("kbd");
          key.textContent = entry?.key ?? "";
          const swatch = document.createElement("span");
          swatch.className = "swatch";
          tint(swatch, option.name);
          item.append(key, swatch, option.name);
        }
        if (index === active) {
          item.classList.add("active");
          item.setAttribute("aria-selected", "true");
        }
        return item;
      }),
    );
    list.querySelector("li.active")?.scrollIntoView({ block: "nearest" });
    const choice = options[active] || null;
    const changed = choice?.name !== pickerChoice?.name;
    pickerChoice = choice;
    if (picker.scope === "view" && changed) showImpact();
    if (picker.scope !== "view") $("#picker-apply").disabled = !choice;
  }

  function moveChoice(delta) {
    const items = $("#picker-list").children;
    const active = Array.from(items).findIndex((item) => item.classList.contains("active"));
    renderChoices((active < 0 ? 0 : active) + delta);
  }

  // How many images of the view the action would change (asked of the server: every page counts).
  async function showImpact() {
    const impact = $("#picker-impact");
    const apply = $("#picker-apply");
    const seq = ++impactSeq;
    if (picker.kind === "label" && !pickerChoice) {
      impact.textContent = "";
      apply.disabled = true;
      return;
    }
    impact.textContent = "counting…";
    apply.disabled = true;
    try {
      const label = picker.kind === "label" ? pickerChoice.name : null;
      const data = await api("/api/impact", { action: picker.kind, label, filter: boot.filter });
      if (seq !== impactSeq) return;
      impact.textContent = `${data.changes.toLocaleString("en")} of ${plural(data.total, "image")} will change`;
      apply.textContent = `Apply to ${plural(data.changes, "image")}`;
      apply.disabled = data.changes === 0;
    } catch (error) {
      if (seq === impactSeq) impact.textContent = `cannot count: ${error.message}`;
    }
  }

  function openPicker(scope, kind = "label", shas = null) {
    const total = Number(($("#total")?.textContent || "0").replace(/,/g, ""));
    const chosen = shas || targets();
    if (scope === "targets" && !chosen.length) return;
    picker = { scope, kind, shas: chosen };
    pickerChoice = null;
    const form = $("#picker-form");
    form.classList.toggle("bulk", scope === "view");
    form.classList.toggle("no-input", kind !== "label");
    const verb = { label: "Label", accept: "Accept", reject: "Reject" }[kind];
    $("#picker-title").textContent =
      scope === "view" ? `${verb} all ${plural(total, "image")} of this view (every page)` : `${verb} ${plural(chosen.length, "image")}`;
    $("#picker-impact").textContent = "";
    const apply = $("#picker-apply");
    apply.textContent = "Apply";
    apply.disabled = false;
    $("#picker").hidden = false;
    const input = $("#picker-input");
    input.value = "";
    if (kind === "label") {
      renderChoices(0);
      input.focus();
    } else {
      $("#picker-list").replaceChildren();
      showImpact();
      apply.focus();
    }
  }

  function closePicker() {
    $("#picker").hidden = true;
    impactSeq += 1;
  }

  function applyPicker() {
    const { scope, kind, shas } = picker;
    if (kind !== "label") {
      closePicker();
      actOnView(kind);
      return;
    }
    const choice = pickerChoice;
    if (!choice) return;
    closePicker();
    const run = () => (scope === "view" ? actOnView("label", choice.name) : act("label", choice.name, shas));
    if (!choice.isNew) run();
    else
      enqueue(() => addLabel(choice.name))
        .then(run)
        .catch((error) => toast(`label not added: ${error.message}`, true));
  }

  $("#picker-form").addEventListener("submit", (event) => {
    event.preventDefault();
    applyPicker();
  });
  $("#picker-input").addEventListener("input", () => renderChoices(0));
  $("#picker-input").addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      moveChoice(event.key === "ArrowDown" ? 1 : -1);
      event.preventDefault();
    }
  });
  $("#picker-list").addEventListener("click", (event) => {
    const item = event.target.closest("li");
    if (!item) return;
    renderChoices(Number(item.dataset.index));
    if (picker.scope !== "view") applyPicker(); // one click labels; the whole view waits for Apply
  });
  $("#picker-cancel").addEventListener("click", closePicker);

  // --- keeping the place: back from an image to the grid page it was opened from, focused on it ------------

  const sameFilter = (a, b) => JSON.stringify(Object.entries(a || {}).sort()) === JSON.stringify(Object.entries(b || {}).sort());

  function readPlace() {
    try {
      return JSON.parse(sessionStorage.getItem(PLACE_KEY) || "null");
    } catch (error) {
      return null;
    }
  }

  function rememberPlace(sha) {
    const n = new URLSearchParams(window.location.search).get("n");
    const place = { grid: window.location.href, shas: cards.map((card) => card.dataset.sha), sha, filter: boot.filter, n };
    sessionStorage.setItem(PLACE_KEY, JSON.stringify(place));
  }

  function openImage(card) {
    rememberPlace(card.dataset.sha);
    window.location.href = card.querySelector("a.thumb").href;
  }

  function backToGrid() {
    const place = readPlace();
    if (place && sameFilter(place.filter, boot.filter)) {
      if (place.shas.includes(here)) {
        window.location.href = place.grid;
        return;
      }
      window.location.href = `/${filterQuery(place.n ? { n: place.n, at: here } : { at: here })}`;
      return;
    }
    window.location.href = `/${filterQuery({ at: here })}`; // the page that starts with this image
  }

  function restorePlace() {
    const place = readPlace();
    let sha = null;
    if (place && place.grid === window.location.href && place.sha) {
      sha = place.sha;
      sessionStorage.setItem(PLACE_KEY, JSON.stringify({ ...place, sha: null })); // once: a later visit starts at the top
    }
    if (!(sha && cardsOf(sha).length)) sha = boot.at;
    if (!(sha && cardsOf(sha).length)) return false;
    setFocus(cards.indexOf(cardsOf(sha)[0]), { scroll: false });
    cards[focus].scrollIntoView({ block: "center" });
    return true;
  }

  if (!isGrid && here) {
    const place = readPlace();
    if (place && sameFilter(place.filter, boot.filter)) {
      place.sha = here; // n / p moved on: esc returns to this image
      sessionStorage.setItem(PLACE_KEY, JSON.stringify(place));
    }
  }

  // --- small images: nearest-neighbour scaling when an image is drawn larger than it is -------------------

  function sharpen(img) {
    if (!img.naturalWidth || !img.clientWidth) return;
    const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
    img.classList.toggle("pixelated", scale > 1);
  }

  const pictures = Array.from(document.querySelectorAll(".card img, .member img"));
  for (const img of pictures) {
    img.addEventListener("load", () => sharpen(img));
    if (img.complete) sharpen(img);
  }
  window.addEventListener("resize", () => pictures.forEach(sharpen));

  // --- keeping tabs consistent ----------------------------------------------------------------------------

  async function refresh() {
    try {
      const data = await api("/api/state", { shas: cards.map((card) => card.dataset.sha) });
      settle(data);
      if (!isGrid) refreshFacts();
    } catch (error) {
      /* the next poll tries again */
    }
  }

  async function refreshFacts() {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector(".facts");
    const here = $(".facts");
    if (fresh && here) {
      here.replaceWith(fresh);
      renderLegend();
    }
  }

  async function poll() {
    if (inflight || document.hidden) return;
    try {
      const response = await fetch("/api/version", { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      if (data.version !== version && !inflight) {
        const decisions = (v) => String(v).split(".").slice(2).join(".");
        const regrouped = decisions(data.version) !== decisions(version);
        version = data.version;
        if (regrouped && (pairView || groupView)) reloadKeepingFocus();
        else await refresh();
      }
    } catch (error) {
      /* server gone or restarting: keep the page as it is */
    }
  }
  setInterval(poll, POLL_MS);

  // --- keys -----------------------------------------------------------------------------------------------

  function toggleHelp(show) {
    const help = $("#help");
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  function follow(selector) {
    const link = $(selector);
    if (link) window.location.href = link.href;
  }

  function move(delta, extend) {
    if (!isGrid) return;
    if (extend) toggle(focus, true);
    setFocus(focus + delta);
    if (extend) toggle(focus, true);
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!$("#picker").hidden && !(target instanceof HTMLInputElement)) {
      if (event.key === "Escape") {
        closePicker();
        event.preventDefault();
      }
      return; // the dialog's buttons take enter and space
    }
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) {
      if (event.key === "Escape") {
        closePicker();
        target.blur();
      }
      return;
    }
    if (!$("#help").hidden) {
      if (event.key === "Escape" || event.key === "?") toggleHelp(false);
      event.preventDefault();
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a" && isGrid) {
      cards.forEach((_, index) => toggle(index, true));
      event.preventDefault();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    let handled = true;
    if (key === "ArrowRight") isGrid ? move(1, event.shiftKey) : follow("#next-image");
    else if (key === "ArrowLeft") isGrid ? move(-1, event.shiftKey) : follow("#prev-image");
    else if (key === "ArrowDown") move(columns(), event.shiftKey);
    else if (key === "ArrowUp") move(-columns(), event.shiftKey);
    else if (key === " ") isGrid && toggle(focus);
    else if (/^[0-9]$/.test(key)) labelByKey(Number(key));
    else if (key === "Backspace" || key === "Delete") act("clear");
    else if (key === "a") act("accept");
    else if (key === "x") act("reject");
    else if (key === "y") takeSuggestion();
    else if (key === "A") isGrid && openPicker("view", "accept");
    else if (key === "X") isGrid && openPicker("view", "reject");
    else if (key === "u") undo();
    else if (key === "d") pairView ? decide("duplicate") : toast("d works in the Candidates view", true);
    else if (key === "k") decide(pairView ? "keep" : "keeper");
    else if (key === "s") decide(pairView ? "not_duplicate" : "split");
    else if (key === "l") openPicker("targets");
    else if (key === "?") toggleHelp();
    else if (key === "Enter") isGrid && cards[focus] && openImage(cards[focus]);
    else if (key === "n") follow(isGrid ? "#next-page" : "#next-image");
    else if (key === "p") follow(isGrid ? "#prev-page" : "#prev-image");
    else if (key === "Escape") {
      if (selected.size) clearSelection();
      else if (!isGrid) backToGrid();
    } else handled = false;
    if (handled) event.preventDefault();
  });

  // --- mouse ----------------------------------------------------------------------------------------------

  cards.forEach((card, index) => {
    card.addEventListener("click", (event) => {
      if (!isGrid) return;
      if (event.shiftKey || event.ctrlKey || event.metaKey) {
        event.preventDefault();
        toggle(index);
      } else if (event.target.closest("a.thumb") && event.button === 0) rememberPlace(card.dataset.sha);
      setFocus(index, { scroll: false });
    });
  });
  // label…, accept and reject on a card (that card only) or in the detail view (its image, then the next)
  document.querySelectorAll("[data-act]").forEach((button) =>
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      button.blur();
      const card = button.closest(".card") || cards[0];
      if (!card) return;
      if (isGrid) setFocus(cards.indexOf(card), { scroll: false });
      const kind = button.dataset.act;
      if (kind === "label") openPicker("targets", "label", [card.dataset.sha]);
      else if (kind === "suggest") takeSuggestion([card.dataset.sha]);
      else act(kind, null, [card.dataset.sha]);
    }),
  );
  // the key map's buttons do what their keys do
  $("#keymap").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (!button) return;
    button.blur();
    const key = button.dataset.key;
    if (key === "l") openPicker("targets");
    else if (key === "?") toggleHelp();
    else labelByKey(Number(key));
  });
  $("#back")?.addEventListener("click", (event) => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    backToGrid();
  });
  document.querySelectorAll("[data-help]").forEach((button) => button.addEventListener("click", () => toggleHelp()));
  $("#help").addEventListener("click", (event) => event.target === $("#help") && toggleHelp(false));
  $("#picker").addEventListener("click", (event) => event.target === $("#picker") && closePicker());
  document.querySelectorAll("[data-bulk]").forEach((button) =>
    button.addEventListener("click", () => {
      button.blur();
      openPicker("view", button.dataset.bulk);
    }),
  );
  document.querySelectorAll("[data-dedupe]").forEach((button) =>
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      button.blur();
      const card = button.closest(".card") || button.closest(".pair")?.querySelector(".card");
      if (!card) return;
      setFocus(cards.indexOf(card), { scroll: false });
      decide(button.dataset.dedupe, card);
    }),
  );
  $("#review-select")?.addEventListener("change", (event) => event.target.form.submit());
  $("#add-label")?.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = event.target.elements.name;
    const name = input.value.trim();
    if (!name) return;
    enqueue(() =>
      addLabel(name)
        .then((data) => {
          input.value = "";
          input.blur();
          toast(data.created ? `label "${data.name}" added` : `label "${data.name}" exists`);
        })
        .catch((error) => toast(`label not added: ${error.message}`, true)),
    );
  });

  // --- start ----------------------------------------------------------------------------------------------

  cards.forEach(paint);
  renderLegend();
  if (isGrid && !restoreFocus() && !restorePlace()) setFocus(0, { scroll: false });
  showStatus();
  document.body.dataset.ready = "1";
})();
