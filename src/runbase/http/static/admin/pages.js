// Pages: accounts and balances, API keys, the audit log.
import { api, fill, clearError, field, h, showError, table, toast, usd, when } from "./api.js";

// ---- accounts ---------------------------------------------------------------------------

export async function accountsPage(page) {
  const { data } = await api("/accounts");
  const create = h(
    "form.card.inline-form#account-form",
    {},
    h("h2", {}, "New account"),
    field("Name", h("input", { name: "name", required: true, maxlength: 100 })),
    field("Starting balance (USD)", h("input", { name: "balanceUsd", type: "number", step: "any", min: 0, value: 0 })),
    h("button.primary", { type: "submit" }, "Create account"),
    h("p.error", { hidden: true }),
  );
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(create);
    try {
      const { name, balanceUsd } = create.elements;
      const body = { name: name.value, balanceUsd: Number(balanceUsd.value || 0) };
      const account = await api("/accounts", { method: "POST", body });
      toast(`Created account ${account.name}.`);
      await accountsPage(page);
    } catch (error) {
      showError(create, error);
    }
  });
  const rows = data.map((account) =>
    h(
      "tr",
      { dataset: { account: account.name } },
      h("td", {}, h("a", { href: `#/runs?account=${encodeURIComponent(account.id)}` }, account.name), h("div.hint.mono", {}, account.id)),
      h("td.num.balance", {}, usd(account.balanceMicroUsd)),
      h("td.num", {}, usd(account.testBalanceMicroUsd)),
      h("td.num", {}, account.keyCount),
      h("td", {}, when(account.createdAt)),
      h("td", {}, creditForm(page, account)),
    ),
  );
  fill(page, 
    h("h1", {}, "Accounts"),
    h("section.card", {}, table(["Account", "Balance", "Test balance", "Keys", "Created", "Add credits"], rows)),
    create,
  );
}

function creditForm(page, account) {
  const form = h(
    "form.credit",
    {},
    h("input", { name: "usd", type: "number", step: "any", min: 0, placeholder: "USD", required: true, "aria-label": "Amount in USD" }),
    h("input", { name: "note", placeholder: "note (kept in the ledger)", maxlength: 500, "aria-label": "Note" }),
    h("button", { type: "submit" }, "Add"),
    h("p.error", { hidden: true }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(form);
    try {
      const { usd: amount, note } = form.elements;
      const body = { usd: Number(amount.value), note: note.value || null };
      const after = await api(`/accounts/${encodeURIComponent(account.id)}/credits`, { method: "POST", body });
      toast(`${after.name}: balance ${usd(after.balanceMicroUsd)}.`);
      await accountsPage(page);
    } catch (error) {
      showError(form, error);
    }
  });
  return form;
}

// ---- keys -------------------------------------------------------------------------------

export async function keysPage(page) {
  const [{ data: accounts }, { data: keys }] = await Promise.all([api("/accounts"), api("/keys")]);
  const names = Object.fromEntries(accounts.map((account) => [account.id, account.name]));
  const newKey = h("div#new-key");
  const rows = keys.map((key) =>
    h(
      "tr",
      { dataset: { key: key.id } },
      h("td", {}, key.name, h("div.hint.mono", {}, `${key.prefix}…`)),
      h("td", {}, names[key.accountId] || key.accountId),
      h("td", {}, h("span", { class: `pill ${key.enabled ? "ok" : "bad"}` }, key.enabled ? "enabled" : "disabled"), key.isTest ? h("span.pill", {}, "test") : null),
      h("td.num", {}, usd(key.spentMicroUsd), key.spendLimitCents === null ? "" : ` / ${usd(key.spendLimitCents * 10000)}`),
      h("td.num", {}, key.dailyRunQuota ?? "—"),
      h("td.mono", {}, key.allowedIps.length ? key.allowedIps.join(", ") : "any"),
      h("td.mono", {}, key.rateLimit || "default"),
      h("td", {}, when(key.createdAt)),
      h(
        "td.actions",
        {},
        h("button", { type: "button", onclick: () => keyAction(page, key, key.enabled ? "disable" : "enable") }, key.enabled ? "Disable" : "Enable"),
        h("button.danger", { type: "button", onclick: () => keyAction(page, key, "delete") }, "Delete"),
      ),
    ),
  );
  fill(page, 
    h("h1", {}, "API keys"),
    newKey,
    h("section.card", {}, table(["Key", "Account", "State", "Spent / limit", "Runs a day", "Allowed IPs", "Rate limit", "Created", ""], rows)),
    keyForm(page, accounts, newKey),
  );
}

function keyForm(page, accounts, newKey) {
  const form = h(
    "form.card.key-form#key-form",
    {},
    h("h2", {}, "New key"),
    field("Account", h("select", { name: "account", required: true }, accounts.map((a) => h("option", { value: a.id }, a.name)))),
    field("Name", h("input", { name: "name", value: "default", maxlength: 100 })),
    field("Allowed IPs", h("textarea", { name: "allowedIps", rows: 3, placeholder: "203.0.113.7\n2001:db8::/32" }), "One address or CIDR block a line, up to 10; empty allows any."),
    field("Spend limit (cents)", h("input", { name: "spendLimitCents", type: "number", min: 0, step: 1 }), "Lifetime, net of refunds; empty for none."),
    field("Daily run quota", h("input", { name: "dailyRunQuota", type: "number", min: 1, step: 1 }), "Runs per rolling 24 hours."),
    field("Rate limit", h("input", { name: "rateLimit", placeholder: "20/10seconds" }), "Overrides the server's, e.g. 100/second."),
    h("label.check", {}, h("input", { name: "test", type: "checkbox" }), " Test key (sk-test-…: preview engine, test balance)"),
    h("button.primary", { type: "submit" }, "Create key"),
    h("p.error", { hidden: true }),
  );
  const optional = (value) => (value === "" ? null : Number(value));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(form);
    const inputs = form.elements; // (form.name is the form's own name, not the input)
    const body = {
      account: inputs.account.value,
      name: inputs.name.value,
      allowedIps: inputs.allowedIps.value.split(/\s+/).filter(Boolean),
      spendLimitCents: optional(inputs.spendLimitCents.value),
      dailyRunQuota: optional(inputs.dailyRunQuota.value),
      rateLimit: inputs.rateLimit.value || null,
      test: inputs.test.checked,
    };
    try {
      const key = await api("/keys", { method: "POST", body });
      await keysPage(page);
      page.querySelector("#new-key").replaceWith(secretBox(key));
    } catch (error) {
      showError(form, error);
    }
  });
  return form;
}

// The new key's secret, shown this once, with a copy button.
function secretBox(key) {
  const secret = h("code.secret#new-key-secret", {}, key.key);
  const copy = h("button.primary#copy-key", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(key.key);
      copy.textContent = "Copied";
    } catch {
      getSelection().selectAllChildren(secret); // no clipboard access: select it for ⌘C
      copy.textContent = "Selected: press Ctrl+C";
    }
  });
  return h(
    "section.card.new-key#new-key",
    {},
    h("h2", {}, `New key “${key.name}”`),
    h("p.hint", {}, "Copy it now: it is shown only this once, and runbase keeps only its hash."),
    h("div.secret-row", {}, secret, copy),
  );
}

async function keyAction(page, key, action) {
  if (action === "delete" && !confirm(`Delete key ${key.name} (${key.prefix}…)? It stops working for good.`)) return;
  try {
    const path = `/keys/${encodeURIComponent(key.id)}`;
    await api(action === "delete" ? path : `${path}/${action}`, { method: action === "delete" ? "DELETE" : "POST" });
    toast(`Key ${key.name}: ${action}d.`);
    await keysPage(page);
  } catch (error) {
    toast(error.message, true);
  }
}

// ---- the audit log ----------------------------------------------------------------------

export async function auditPage(page, before = null, shown = []) {
  const { data, nextBefore } = await api("/audit", { query: { limit: 50, before } });
  const entries = [...shown, ...data];
  const rows = entries.map((entry) =>
    h(
      "tr",
      { dataset: { action: entry.action } },
      h("td", {}, when(entry.at)),
      h("td.mono", {}, entry.actor),
      h("td.mono", {}, entry.address || "—"),
      h("td", {}, h("span.pill", {}, entry.action)),
      h("td.mono", {}, entry.target || "—"),
      h("td.mono.details", {}, Object.keys(entry.details).length ? JSON.stringify(entry.details) : ""),
    ),
  );
  const more = nextBefore
    ? h("button", { type: "button", onclick: () => auditPage(page, nextBefore, entries) }, "Older entries")
    : null;
  fill(page, 
    h("h1", {}, "Audit log"),
    h("p.hint", {}, "Every admin action, from the console, the admin API or the command line."),
    h("section.card", {}, table(["When", "Who", "From", "What", "Target", "Details"], rows, "No admin actions yet."), more),
  );
}
