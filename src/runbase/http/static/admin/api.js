// The admin API client and small DOM helpers shared by every page.
// The token lives in sessionStorage (this tab only) and travels only in the Authorization
// header of calls to this server's /admin/api/: never in a URL.

const TOKEN = "runbase.adminToken";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN, value);
  else sessionStorage.removeItem(TOKEN);
}

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.fields = error.fields || {};
  }
}

// Calls /admin/api{path}; answers the JSON body, or throws ApiError with the envelope's fields.
export async function api(path, { method = "GET", body, query } = {}) {
  const url = new URL("/admin/api" + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new ApiError(response.status, data.error || {});
    if (response.status === 401) document.dispatchEvent(new CustomEvent("signed-out"));
    throw error;
  }
  return data;
}

// h("tag.class#id", {attr: value, onclick: fn}, ...children): text children are always
// text nodes, so content from the API (prompts, names, logs) can never become markup.
export function h(spec, attributes = {}, ...children) {
  const [head, id] = spec.split("#");
  const [tag, ...classes] = head.split(".");
  const element = document.createElement(tag || "div");
  if (id) element.id = id;
  if (classes.length) element.className = classes.join(" ");
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// element.replaceChildren(...), leaving out null, undefined and false (absent parts).
export function fill(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function usd(micros) {
  if (micros === null || micros === undefined) return "—";
  const value = micros / 1e6;
  const digits = Math.abs(value) >= 100 ? 2 : Math.abs(value) >= 1 ? 4 : 6;
  return "$" + value.toFixed(digits).replace(/0+$/, "").replace(/\.$/, "");
}

export function when(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  return value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${value} ms`;
}

export function toast(message, isError = false) {
  const element = document.getElementById("toast");
  element.textContent = message;
  element.classList.toggle("bad", isError);
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (element.hidden = true), 4000);
}

// Shows an ApiError on a form: the message, and each invalid field marked.
export function showError(form, error) {
  form.querySelectorAll(".invalid").forEach((input) => input.classList.remove("invalid"));
  const box = form.querySelector(".error");
  box.textContent = error.message;
  box.hidden = false;
  for (const name of Object.keys(error.fields || {})) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (input) input.classList.add("invalid");
  }
}

export function clearError(form) {
  const box = form.querySelector(".error");
  if (box) box.hidden = true;
  form.querySelectorAll(".invalid").forEach((input) => input.classList.remove("invalid"));
}

export function field(label, input, hint) {
  return h("label.field", {}, h("span", {}, label), input, hint ? h("small.hint", {}, hint) : null);
}

export function table(headings, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p.empty", {}, empty);
  return h(
    "table.grid",
    {},
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    h("tbody", {}, rows),
  );
}
