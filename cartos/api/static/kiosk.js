// Kiosk page of the cart's screen. Plain browser JavaScript, no build step and no
// external resources: it renders the basket view served by /api/v1/basket, follows
// /api/v1/events (server-sent events) and answers prompts with a POST.
"use strict";

const API = "/api/v1";

const ALERT_TEXT = {
  unscanned: "An item was not scanned.",
  ticket_switch: "The scanned code does not match the item.",
  weight_mismatch: "The weight does not match the items.",
  removed_never_added: "An item was removed that was not in the basket.",
  unknown_item: "We could not recognise an item.",
  sensor_fault: "A sensor needs attention.",
};

const MODE_TEXT = {
  barcode_weight: "Camera unavailable: please scan every item.",
  vision_barcode: "Scale unavailable: items are checked by camera and scanner.",
  barcode_only: "Please scan every item.",
  camera_only: "Scanner unavailable: items are recognised by camera.",
};

let shownPromptId = null;
// The newest basket view rendered so far. A fetch answered before an event may arrive after
// it, so an older version of the same session must never overwrite a newer one.
let shownSession = null;
let shownVersion = -1;

function byId(id) {
  return document.getElementById(id);
}

function money(cents) {
  return cents === null || cents === undefined ? "" : (cents / 100).toFixed(2);
}

function renderItems(items) {
  const body = byId("item-rows");
  body.replaceChildren();
  let total = 0;
  for (const item of items) {
    const row = document.createElement("tr");
    row.dataset.sku = item.sku;
    row.className = "item";
    const name = document.createElement("td");
    name.textContent = item.sku;
    const qty = document.createElement("td");
    qty.className = "num qty";
    qty.textContent = String(item.qty);
    const price = document.createElement("td");
    price.className = "num";
    price.textContent = money(item.unit_price_cents === null ? null : item.unit_price_cents * item.qty);
    row.append(name, qty, price);
    body.append(row);
    total += (item.unit_price_cents || 0) * item.qty;
  }
  byId("empty").hidden = items.length > 0;
  byId("total").textContent = money(total);
}

function renderPrompt(prompts) {
  const section = byId("prompt");
  const current = prompts.length > 0 ? prompts[0] : null;
  if (current === null) {
    section.hidden = true;
    section.dataset.promptId = "";
    shownPromptId = null;
    return;
  }
  if (current.id === shownPromptId) {
    return;
  }
  shownPromptId = current.id;
  section.dataset.promptId = current.id;
  byId("prompt-question").textContent = current.question;
  byId("prompt-error").hidden = true;
  const options = byId("prompt-options");
  options.replaceChildren();
  for (const option of current.options) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = option;
    button.dataset.answer = option;
    button.addEventListener("click", () => answer(current.id, option));
    options.append(button);
  }
  section.hidden = false;
}

function renderAlerts(alerts) {
  const list = byId("alert-list");
  list.replaceChildren();
  for (const alert of alerts) {
    const entry = document.createElement("li");
    entry.dataset.kind = alert.kind;
    entry.textContent = ALERT_TEXT[alert.kind] || alert.kind.replaceAll("_", " ");
    list.append(entry);
  }
  byId("alerts").hidden = alerts.length === 0;
}

function renderBasket(view) {
  if (view.session === shownSession && view.version < shownVersion) {
    return;
  }
  shownSession = view.session;
  shownVersion = view.version;
  document.body.dataset.version = String(view.version);
  renderItems(view.items);
  renderPrompt(view.pending_prompts);
  renderAlerts(view.alerts);
}

function renderHealth(health) {
  const banner = byId("health");
  banner.dataset.mode = health.mode;
  const text = MODE_TEXT[health.mode];
  banner.textContent = text || "";
  banner.hidden = !text;
}

function setConnection(state, text) {
  const badge = byId("connection");
  badge.dataset.state = state;
  badge.textContent = text;
}

async function refresh() {
  const response = await fetch(`${API}/basket`, { cache: "no-store" });
  if (response.ok) {
    renderBasket(await response.json());
  }
}

async function answer(promptId, option) {
  const buttons = byId("prompt-options").querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  let response;
  try {
    response = await fetch(`${API}/prompts/${encodeURIComponent(promptId)}/answer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ answer: option }),
    });
  } catch (err) {
    response = null;
  }
  if (response === null || !response.ok) {
    const error = byId("prompt-error");
    error.textContent = response === null ? "The cart did not answer, please try again."
      : "That question is no longer open.";
    error.hidden = false;
    buttons.forEach((b) => { b.disabled = false; });
  }
  await refresh();
}

function connect() {
  const source = new EventSource(`${API}/events`);
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("error", () => setConnection("offline", "reconnecting…"));
  source.addEventListener("basket", (e) => renderBasket(JSON.parse(e.data)));
  source.addEventListener("prompt", (e) => renderPrompt(JSON.parse(e.data).pending_prompts));
  source.addEventListener("health", (e) => renderHealth(JSON.parse(e.data)));
  source.addEventListener("alert", () => refresh());
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  fetch(`${API}/health`, { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : null))
    .then((health) => { if (health) renderHealth(health); });
  connect();
});
