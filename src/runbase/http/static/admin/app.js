// The console's shell: sign-in, navigation between pages (#/accounts ...), sign-out.
import { api, fill, h, setToken, token } from "./api.js";
import { accountsPage, auditPage, keysPage } from "./pages.js";
import { runsPage } from "./runs.js";
import { usagePage } from "./charts.js";

const PAGES = { accounts: accountsPage, keys: keysPage, usage: usagePage, runs: runsPage, audit: auditPage };

function show(signedIn) {
  document.getElementById("signin").hidden = signedIn;
  document.getElementById("shell").hidden = !signedIn;
}

async function route() {
  if (!token()) return show(false);
  show(true);
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "accounts";
  const render = PAGES[name] || PAGES.accounts;
  document.querySelectorAll("#nav a").forEach((link) => {
    link.classList.toggle("active", link.dataset.page === name);
  });
  const page = document.getElementById("page");
  fill(page, h("p.hint", {}, "Loading…"));
  page.dataset.page = name;
  delete document.body.dataset.ready;
  try {
    await render(page);
  } catch (error) {
    fill(page, h("p.error", {}, error.message));
  }
  document.body.dataset.ready = name;
}

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const message = document.getElementById("signin-error");
  setToken(input.value.trim());
  try {
    await api("/accounts");
    input.value = "";
    message.hidden = true;
    if (!location.hash) location.hash = "#/accounts";
    await route();
  } catch (error) {
    setToken(null);
    message.textContent = error.status === 401 ? "That is not the admin token." : error.message;
    message.hidden = false;
  }
});

document.getElementById("signout").addEventListener("click", () => {
  setToken(null);
  route();
});

document.addEventListener("signed-out", () => {
  setToken(null);
  show(false);
});

window.addEventListener("hashchange", route);
window.addEventListener("load", async () => {
  await route();
  if (!token()) document.body.dataset.ready = "signin";
});
