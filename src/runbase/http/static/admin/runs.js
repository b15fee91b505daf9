// The runs browser: every account's runs, filtered; a run's video, logs, input and error.
import { api, fill, field, h, ms, table, toast, usd, when } from "./api.js";

const STATUSES = ["", "pending", "processing", "succeeded", "failed", "canceled"];

function hashQuery() {
  const query = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(query));
}

function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

function duration(run) {
  if (!run.startedAt || !run.completedAt) return "—";
  return ms(Date.parse(run.completedAt) - Date.parse(run.startedAt));
}

export async function runsPage(page) {
  const filters = hashQuery();
  const [{ data: accounts }, { data: keys }] = await Promise.all([api("/accounts"), api("/keys")]);
  const accountNames = Object.fromEntries(accounts.map((a) => [a.id, a.name]));
  const keyNames = Object.fromEntries(keys.map((k) => [k.id, `${k.name} (${k.prefix}…)`]));
  const option = (value, label, selected) => h("option", { value, selected: selected === value }, label);
  const form = h(
    "form.card.filters#run-filters",
    {},
    field("Account", h("select", { name: "account" }, option("", "any", filters.account), accounts.map((a) => option(a.id, a.name, filters.account)))),
    field("Key", h("select", { name: "key" }, option("", "any", filters.key), keys.map((k) => option(k.id, keyNames[k.id], filters.key)))),
    field("Status", h("select", { name: "status" }, STATUSES.map((s) => option(s, s || "any", filters.status || "")))),
    field("Model", h("input", { name: "model", value: filters.model || "", placeholder: "any" })),
    field("Created after", h("input", { name: "createdAfter", type: "datetime-local" })),
    field("Created before", h("input", { name: "createdBefore", type: "datetime-local" })),
    h("button.primary", { type: "submit" }, "Filter"),
  );
  const list = h("section.card#run-list");
  const detail = h("aside.card.run-detail#run-detail", { hidden: true });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const inputs = form.elements;
    const query = new URLSearchParams();
    for (const name of ["account", "key", "status", "model"]) {
      if (inputs[name].value) query.set(name, inputs[name].value);
    }
    for (const name of ["createdAfter", "createdBefore"]) {
      if (inputs[name].value) query.set(name, toIso(inputs[name].value));
    }
    location.hash = `#/runs?${query}`;
  });
  fill(page, h("h1", {}, "Runs"), form, h("div.runs-layout", {}, list, detail));
  const names = { accountNames, keyNames };
  await loadRuns(list, detail, filters, names);
}

async function loadRuns(list, detail, filters, names, cursor = null, shown = []) {
  const { data, nextCursor } = await api("/runs", { query: { ...filters, limit: 25, cursor } });
  const runs = [...shown, ...data];
  const rows = runs.map((run) => {
    const row = h(
      "tr.run-row",
      { dataset: { run: run.id, status: run.status } },
      h("td.thumb", {}, thumbnail(run)),
      h("td", {}, h("span.mono", {}, run.id), h("div.hint", {}, run.input.prompt || "")),
      h("td", {}, names.accountNames[run.accountId] || run.accountId, h("div.hint", {}, names.keyNames[run.keyId] || run.keyId)),
      h("td", {}, h("span", { class: `pill ${run.status}` }, run.status), run.isTest ? h("span.pill", {}, "test") : null),
      h("td", {}, run.model, h("div.hint", {}, run.backend || "—")),
      h("td.num.cost", {}, usd(run.costUsd)),
      h("td", {}, when(run.createdAt)),
      h("td.num", {}, duration(run)),
    );
    row.addEventListener("click", () => showRun(detail, run.id, names));
    return row;
  });
  const more = nextCursor
    ? h("button", { type: "button", onclick: () => loadRuns(list, detail, filters, names, nextCursor, runs) }, "More runs")
    : null;
  fill(list, table(["", "Run", "Account / key", "Status", "Model / backend", "Cost", "Created", "Took"], rows, "No runs match."), more);
}

function thumbnail(run) {
  const url = run.output && run.output.urls[0];
  if (!url) return h("div.no-thumb", {}, run.status === "failed" ? "✕" : "…");
  // The first frames of the video itself: runs have no separate poster image.
  return h("video", { src: `${url}#t=0.5`, muted: true, preload: "metadata", playsInline: true });
}

async function showRun(detail, runId, names) {
  detail.hidden = false;
  fill(detail, h("p.hint", {}, "Loading…"));
  const run = await api(`/runs/${encodeURIComponent(runId)}`);
  const url = run.output && run.output.urls[0];
  const active = run.status === "pending" || run.status === "processing";
  const cancel = active
    ? h("button.danger#cancel-run", { type: "button", onclick: () => cancelRun(detail, run.id, names) }, "Cancel run (refund)")
    : null;
  fill(detail, 
    h("div.detail-head", {}, h("h2.mono", {}, run.id), h("span", { class: `pill ${run.status}` }, run.status)),
    url ? h("video#run-video", { src: url, controls: true, playsInline: true, preload: "metadata" }) : null,
    h(
      "dl.facts",
      {},
      h("dt", {}, "Account"), h("dd", {}, names.accountNames[run.accountId] || run.accountId),
      h("dt", {}, "Key"), h("dd", {}, names.keyNames[run.keyId] || run.keyId),
      h("dt", {}, "Cost"), h("dd", {}, usd(run.costUsd)),
      h("dt", {}, "Backend"), h("dd", {}, run.backend || "—"),
      h("dt", {}, "Created"), h("dd", {}, when(run.createdAt)),
      h("dt", {}, "Started"), h("dd", {}, when(run.startedAt)),
      h("dt", {}, "Completed"), h("dd", {}, when(run.completedAt)),
      h("dt", {}, "Attempts"), h("dd", {}, run.attempts),
    ),
    run.error ? h("div.run-error#run-error", {}, h("strong", {}, run.error.code), " ", run.error.message) : null,
    h("h3", {}, "Input"),
    h("pre#run-input", {}, JSON.stringify(run.input, null, 2)),
    h("h3", {}, "Logs"),
    h("pre#run-logs", {}, run.logs.length ? run.logs.join("\n") : "(none)"),
    cancel,
  );
}

async function cancelRun(detail, runId, names) {
  try {
    const run = await api(`/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
    toast(`Run ${run.id}: ${run.status}.`);
  } catch (error) {
    toast(error.message, true);
  }
  await showRun(detail, runId, names);
}
