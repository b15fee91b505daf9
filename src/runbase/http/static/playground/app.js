// runbase playground: a browser client of the runs API, with nothing from the network
// but this server. The key lives in localStorage and is sent only to /api/v1 on this
// origin. Prices come from /playground/catalog.json, which the server builds from the
// same function that charges runs, and, once a key is given, from the server's estimate.
"use strict";

const KEY_STORAGE = "runbase.apiKey";
const MAX_IMAGE_BYTES = 30 * 1024 * 1024;
const FIRST_POLL_MS = 500;
const MAX_POLL_MS = 2000;

const $ = (selector) => document.querySelector(selector);
const state = {
  model: null, // the catalog entry of the model the form edits
  images: [null, null], // data: URIs of the first and last frame
  imageNames: [null, null],
  imageSizes: [null, null], // {width, height, uri} of each frame
  keptRatio: null, // {uri, ratio}: the user chose to crop this first frame to this ratio
  tab: "curl",
  quotes: new Map(), // the server's estimates, by priceKey
  quoteTimer: null,
  running: false,
  timer: null,
};

// ---- helpers ------------------------------------------------------------------------

function formatUsd(micros) {
  // "$0.096423": whole micro-dollars, trailing zeros dropped (as the CLI prints them).
  return "$" + (micros / 1e6).toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function radioValue(name) {
  const checked = document.querySelector(`input[name="${name}"]:checked`);
  return checked ? checked.value : null;
}

function buildSegmented(container, name, values, selected, label) {
  container.replaceChildren();
  for (const value of values) {
    const id = `${name}-${value.replace(/\W/g, "_")}`;
    const input = Object.assign(document.createElement("input"), {
      type: "radio", name, value, id, checked: value === selected,
    });
    const text = Object.assign(document.createElement("label"), {
      htmlFor: id, textContent: label ? label(value) : value,
    });
    input.addEventListener("change", refresh);
    container.append(input, text);
  }
}

// ---- the form -------------------------------------------------------------------------

function currentInput() {
  const input = {
    prompt: $("#prompt").value,
    aspect_ratio: radioValue("ratio"),
    resolution: radioValue("resolution"),
    duration: radioValue("duration"),
    generate_audio: $("#audio").checked,
  };
  const images = state.images.filter(Boolean);
  if (images.length) input.image_urls = images;
  return input;
}

function priceKey(input) {
  // What the price depends on (the form always names a ratio, so images do not count).
  const audio = input.generate_audio ? "audio" : "silent";
  return `${input.resolution}|${input.aspect_ratio}|${input.duration}|${audio}`;
}

function showPrice(micros, source) {
  const price = $("#price");
  price.textContent = formatUsd(micros);
  price.dataset.source = source;
  price.title = source === "server" ? "Quoted by POST /api/v1/runs/estimate" : "From the price table";
}

function refresh() {
  if (!state.model) return;
  const input = currentInput();
  const [width, height] = state.model.sizes[input.resolution][input.aspect_ratio];
  const frames = state.model.fps * Number(input.duration) + 1;
  const quote = state.quotes.get(priceKey(input));
  if (quote !== undefined) showPrice(quote, "server");
  else showPrice(state.model.prices[priceKey(input)], "catalog");
  $("#price-detail").textContent =
    `${width}×${height} · ${frames} frames · ${input.generate_audio ? "with audio" : "silent"}`;
  $("#prompt-count").textContent = String(input.prompt.length);
  if ($("#video").hidden) showFrame(width, height, frames);
  renderRatioNotice();
  renderSnippet();
  scheduleQuote(input);
}

// The table gives a price at once, with or without a key. With a key, the server's own
// estimate (POST /api/v1/runs/estimate: no charge) replaces it, once per combination of
// options, so typing a prompt spends none of the key's rate limit. A server without the
// endpoint, or a key it refuses, leaves the table's price.
function scheduleQuote(input) {
  const key = priceKey(input);
  if (!$("#api-key").value.trim() || state.quotes.has(key)) return;
  clearTimeout(state.quoteTimer);
  state.quoteTimer = setTimeout(() => fetchQuote(input, key), 400);
}

async function fetchQuote(input, key) {
  const body = {
    model: state.model.id,
    input: {
      prompt: input.prompt.trim() || "price", // the price does not depend on the prompt
      aspect_ratio: input.aspect_ratio,
      resolution: input.resolution,
      duration: input.duration,
      generate_audio: input.generate_audio,
    },
  };
  try {
    const response = await fetch("/api/v1/runs/estimate", {
      method: "POST",
      headers: { Authorization: `Bearer ${$("#api-key").value.trim()}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) return;
    const { costUsd } = await response.json();
    if (!Number.isInteger(costUsd)) return;
    state.quotes.set(key, costUsd);
    if (priceKey(currentInput()) === key) showPrice(costUsd, "server");
  } catch {
    // No answer: the table's price stays.
  }
}

function showFrame(width, height, frames) {
  // The empty stage takes the shape of the video the form describes.
  const frame = $("#frame");
  const stage = $("#stage").getBoundingClientRect();
  const scale = Math.min((stage.width * 0.86) / width, (stage.height * 0.8) / height);
  frame.style.width = `${Math.round(width * scale)}px`;
  frame.style.height = `${Math.round(height * scale)}px`;
  $("#frame-size").textContent = `${width} × ${height} · 24 fps · ${frames} frames`;
}

// ---- the first frame against the chosen aspect ratio (ratio.js) ----------------------

function currentRatioAdvice() {
  const first = state.images[0] ? state.imageSizes[0] : null;
  return ratioAdvice(first, radioValue("ratio"), state.model.aspectRatios, state.keptRatio);
}

function renderRatioNotice() {
  const advice = currentRatioAdvice();
  const notice = $("#ratio-notice");
  notice.hidden = !advice;
  if (!advice) {
    notice.classList.remove("attention");
    return;
  }
  $("#ratio-notice-text").textContent = advice.text;
  $("#ratio-use").textContent = `Use ${advice.nearest}`;
  $("#ratio-use").dataset.ratio = advice.nearest;
  $("#ratio-keep").textContent = `Keep ${radioValue("ratio")} and crop`;
}

function setupRatioNotice() {
  $("#ratio-use").addEventListener("click", () => {
    const ratio = $("#ratio-use").dataset.ratio;
    document.querySelector(`input[name="ratio"][value="${ratio}"]`).checked = true;
    hideError();
    refresh();
  });
  $("#ratio-keep").addEventListener("click", () => {
    state.keptRatio = { uri: state.images[0], ratio: radioValue("ratio") };
    hideError();
    refresh();
  });
}

// ---- images: drag and drop, or click, into data: URIs ---------------------------------

function setupDrops() {
  for (const drop of document.querySelectorAll(".drop")) {
    const slot = Number(drop.dataset.slot);
    const file = drop.querySelector("input[type=file]");
    const open = () => { if (!drop.classList.contains("disabled")) file.click(); };
    drop.addEventListener("click", (event) => { if (!event.target.closest(".remove")) open(); });
    drop.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
    });
    file.addEventListener("change", () => { if (file.files[0]) loadImage(slot, file.files[0]); file.value = ""; });
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      if (!drop.classList.contains("disabled")) drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const dropped = event.dataTransfer.files[0];
      if (dropped && !drop.classList.contains("disabled")) loadImage(slot, dropped);
    });
    drop.querySelector(".remove").addEventListener("click", () => removeImage(slot));
  }
  renderDrops();
}

function loadImage(slot, file) {
  if (!file.type.startsWith("image/")) return showError("That file is not an image.");
  if (file.size > MAX_IMAGE_BYTES) return showError("Images must be under 30 MB.");
  const reader = new FileReader();
  reader.onload = () => {
    // Its size is known before it counts, so the ratio check never misses a frame.
    const uri = reader.result;
    const probe = new Image();
    probe.onload = () => {
      state.images[slot] = uri;
      state.imageNames[slot] = file.name;
      state.imageSizes[slot] = { width: probe.naturalWidth, height: probe.naturalHeight, uri };
      hideError();
      renderDrops();
      refresh();
    };
    probe.onerror = () => showError("That image cannot be read.");
    probe.src = uri;
  };
  reader.readAsDataURL(file);
}

function removeImage(slot) {
  if (slot === 0) {
    // The last frame alone would be read as a first frame: move it up instead.
    state.images = [state.images[1], null];
    state.imageNames = [state.imageNames[1], null];
    state.imageSizes = [state.imageSizes[1], null];
  } else {
    state.images[1] = null;
    state.imageNames[1] = null;
    state.imageSizes[1] = null;
  }
  renderDrops();
  refresh();
}

function renderDrops() {
  for (const drop of document.querySelectorAll(".drop")) {
    const slot = Number(drop.dataset.slot);
    const uri = state.images[slot];
    const img = drop.querySelector("img");
    img.hidden = !uri;
    if (uri) img.src = uri; else img.removeAttribute("src");
    drop.classList.toggle("filled", Boolean(uri));
    drop.querySelector(".remove").hidden = !uri;
    if (slot === 1) {
      drop.classList.toggle("disabled", !state.images[0]);
      drop.querySelector(".drop-text span").textContent =
        state.images[0] ? "drop an image or click" : "needs a first frame";
    }
  }
}

// ---- the API key ----------------------------------------------------------------------

function setupKey() {
  const field = $("#api-key");
  field.value = localStorage.getItem(KEY_STORAGE) || "";
  field.addEventListener("input", () => {
    const key = field.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    state.quotes.clear(); // quotes belong to the key that asked
    refresh();
  });
  $("#toggle-key").addEventListener("click", () => {
    field.type = field.type === "password" ? "text" : "password";
    $("#toggle-key").textContent = field.type === "password" ? "Show" : "Hide";
  });
  $("#forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    field.value = "";
  });
}

// ---- talking to the API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function callApi(method, path, body) {
  const key = $("#api-key").value.trim();
  for (let attempt = 0; ; attempt++) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (error) {
      // No answer: only a GET may be sent again; a POST may have created a run.
      if (method === "GET" && attempt < 5) { await sleep(500 * 2 ** attempt); continue; }
      throw new ApiError("connection_failed", "The server did not answer.");
    }
    const data = await response.json().catch(() => ({}));
    if (response.ok) return { data, headers: response.headers };
    const error = data.error || {};
    if (error.code === "RATE_LIMITED" && attempt < 5) {
      await sleep(1000 * Number(response.headers.get("Retry-After") || 2 ** attempt));
      continue;
    }
    throw new ApiError(error.code || `http_${response.status}`, error.message || response.statusText);
  }
}

function pollDelay(previous, headers) {
  // Back off from 0.5 s to 2 s, and stretch further when the key's budget runs low.
  let delay = previous ? Math.min(MAX_POLL_MS, previous * 1.5) : FIRST_POLL_MS;
  const remaining = Number(headers.get("X-RateLimit-Remaining"));
  const reset = Number(headers.get("X-RateLimit-Reset"));
  if (headers.has("X-RateLimit-Remaining") && headers.has("X-RateLimit-Reset")) {
    delay = Math.max(delay, (reset * 1000) / Math.max(remaining, 0.5));
  }
  return delay;
}

async function generate(event) {
  event.preventDefault();
  if (state.running) return;
  hideError();
  if (!$("#api-key").value.trim()) return showError("Paste an API key first (runbase serve prints one on first start).");
  if (!$("#prompt").value.trim()) return showError("Write a prompt first.");
  if (currentRatioAdvice()) {
    // Nothing is charged until the user has said how the first frame should fit.
    $("#ratio-notice").classList.add("attention");
    return showError("The first frame does not fit the chosen aspect ratio: choose above.");
  }
  state.running = true;
  $("#run").disabled = true;
  resetResult();
  const started = performance.now();
  state.timer = setInterval(() => {
    $("#elapsed").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 100);
  try {
    let { data: run, headers } = await callApi("POST", "/api/v1/runs", {
      model: state.model.id, input: currentInput(),
    });
    let delay = 0;
    showRun(run);
    while (run.status === "pending" || run.status === "processing") {
      delay = pollDelay(delay, headers);
      await sleep(delay);
      ({ data: run, headers } = await callApi("GET", `/api/v1/runs/${encodeURIComponent(run.id)}`));
      showRun(run);
    }
  } catch (error) {
    setStatus("failed", "error");
    showError(error.message, error.code);
  } finally {
    clearInterval(state.timer);
    state.running = false;
    $("#run").disabled = false;
  }
}

// ---- showing a run --------------------------------------------------------------------

function setStatus(status, label) {
  const pill = $("#status");
  pill.className = `status ${status}`;
  pill.textContent = label || status;
}

function resetResult() {
  const video = $("#video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  video.hidden = true;
  $("#frame").hidden = false;
  $("#download").hidden = true;
  $("#video-meta").textContent = "";
  $("#run-id").textContent = "";
  $("#status-detail").textContent = "";
  $("#progress-bar").style.width = "0";
  $("#progress").classList.remove("waiting", "done");
  setStatus("pending", "creating");
  refresh();
}

function showRun(run) {
  setStatus(run.status);
  $("#run-id").textContent = run.id;
  const progress = $("#progress");
  progress.classList.toggle("waiting", run.status === "pending");
  progress.classList.toggle("done", run.status === "succeeded" || run.status === "failed");
  const fraction = run.status === "succeeded" ? 1 : run.status === "processing" ? run.progress || 0 : 0;
  $("#progress-bar").style.width = run.status === "pending" ? "" : `${Math.round(fraction * 100)}%`;
  const logs = run.logs || [];
  const detail = {
    pending: `queued · ${formatUsd(run.costUsd)} charged`,
    processing: `${Math.round(fraction * 100)}% · ${logs.length ? logs[logs.length - 1] : run.backend || "rendering"}`,
    succeeded: `done · ${formatUsd(run.costUsd)}${run.backend ? ` · ${run.backend} engine` : ""}`,
    failed: run.error ? `${run.error.code}: ${run.error.message} (refunded)` : "failed (refunded)",
  }[run.status];
  $("#status-detail").textContent = detail || "";
  if (run.status === "succeeded" && run.output && run.output.urls.length) showVideo(run);
  if (run.status === "failed" && run.error) showError(run.error.message, run.error.code);
}

function showVideo(run) {
  const url = run.output.urls[0];
  const video = $("#video");
  $("#frame").hidden = true;
  video.hidden = false;
  video.src = url;
  video.addEventListener("loadedmetadata", () => {
    $("#video-meta").textContent =
      `${video.videoWidth}×${video.videoHeight} · ${video.duration.toFixed(2)} s`;
  }, { once: true });
  const link = $("#download");
  link.href = url;
  link.download = `${run.id}.mp4`;
  link.hidden = false;
}

function showError(message, code) {
  const box = $("#form-error");
  box.replaceChildren();
  if (code) {
    const tag = document.createElement("code");
    tag.textContent = code;
    box.append(tag, " ");
  }
  box.append(message);
  box.hidden = false;
}

function hideError() {
  $("#form-error").hidden = true;
}

// ---- equivalent code ------------------------------------------------------------------

function snippetInput() {
  // Data URIs are long; the snippets name the file instead of pasting it.
  const input = currentInput();
  if (input.image_urls) {
    input.image_urls = input.image_urls.map((uri, index) =>
      `data:${uri.slice(5, uri.indexOf(";"))};base64,… (${state.imageNames[index] || "image"})`);
  }
  return input;
}

function curlSnippet() {
  const body = JSON.stringify({ model: state.model.id, input: snippetInput() }, null, 2);
  const quoted = body.replace(/'/g, "'\\''"); // safe inside a single-quoted shell word
  return [
    `curl -s ${location.origin}/api/v1/runs \\`,
    `  -H "Authorization: Bearer $RUNBASE_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${quoted}'`,
    "",
    "# then poll until status is succeeded or failed:",
    `curl -s ${location.origin}/api/v1/runs/RUN_ID -H "Authorization: Bearer $RUNBASE_API_KEY"`,
  ].join("\n");
}

function pyString(text) {
  // JSON's escapes are valid Python; prefer single quotes when the text has double ones.
  const json = JSON.stringify(text);
  if (!text.includes('"') || text.includes("'")) return json;
  return `'${json.slice(1, -1).replace(/\\"/g, '"')}'`;
}

function pythonSnippet() {
  const input = currentInput();
  const py = (value) => (typeof value === "boolean" ? (value ? "True" : "False") : pyString(value));
  const lines = [
    `        ${py(input.prompt)},`,
    `        aspect_ratio=${py(input.aspect_ratio)},`,
    `        resolution=${py(input.resolution)},`,
    `        duration=${py(input.duration)},`,
    `        generate_audio=${py(input.generate_audio)},`,
  ];
  const names = state.imageNames.filter((_, index) => state.images[index]);
  if (names.length) {
    const files = names.map((name) => `encode_image(${py(name || "image.png")})`).join(", ");
    lines.push(`        image_urls=(${files}${names.length === 1 ? "," : ""}),`);
  }
  const imports = names.length ? "Runbase, SeedanceInput, encode_image" : "Runbase, SeedanceInput";
  return [
    `from runbase.client import ${imports}`,
    "",
    `client = Runbase(base_url=${py(location.origin)})  # key from RUNBASE_API_KEY`,
    "run = client.run(",
    `    ${py(state.model.id)},`,
    "    SeedanceInput(",
    ...lines,
    "    ),",
    ")",
    `run.download("video.mp4")`,
  ].join("\n");
}

function renderSnippet() {
  $("#snippet").textContent = state.tab === "curl" ? curlSnippet() : pythonSnippet();
}

function setupSnippets() {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => {
      state.tab = tab.dataset.tab;
      for (const other of document.querySelectorAll("[role=tab]")) {
        other.setAttribute("aria-selected", String(other === tab));
      }
      renderSnippet();
    });
  }
  $("#copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("#snippet").textContent);
      $("#copy").textContent = "Copied";
    } catch {
      $("#copy").textContent = "Select and copy";
    }
    setTimeout(() => { $("#copy").textContent = "Copy"; }, 1500);
  });
}

// ---- start ----------------------------------------------------------------------------

async function start() {
  setupKey();
  setupDrops();
  setupSnippets();
  setupRatioNotice();
  const response = await fetch("/playground/catalog.json");
  const catalog = await response.json();
  state.model = catalog.models[0];
  const defaults = state.model.defaults;
  $("#model-name").textContent = state.model.id;
  $("#prompt").maxLength = state.model.maxPromptChars;
  $("#prompt-max").textContent = String(state.model.maxPromptChars);
  buildSegmented($("#ratio"), "ratio", state.model.aspectRatios, defaults.aspect_ratio);
  buildSegmented($("#resolution"), "resolution", state.model.resolutions, defaults.resolution);
  buildSegmented($("#duration"), "duration", state.model.durations, defaults.duration, (s) => `${s} s`);
  $("#audio").checked = defaults.generate_audio;
  $("#audio").addEventListener("change", refresh);
  $("#prompt").addEventListener("input", refresh);
  $("#run-form").addEventListener("submit", generate);
  window.addEventListener("resize", refresh);
  refresh();
  document.body.dataset.ready = "true"; // for tests and scripts: the form is usable
}

start().catch((error) => showError(`The playground could not start: ${error.message}`));
