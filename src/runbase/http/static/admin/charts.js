// The usage page: figures per day (or hour) drawn by uPlot (vendored: vendor/uPlot.*),
// stacked bars by status, failures by code, generation time percentiles, and per provider.
import { api, fill, field, h, ms, usd } from "./api.js";

const COLORS = {
  succeeded: "#3ccf8e", failed: "#ff6b6b", canceled: "#f5b942", processing: "#35c5e8", pending: "#8c93a6",
};
const PALETTE = ["#7c6cff", "#35c5e8", "#3ccf8e", "#f5b942", "#ff6b6b", "#e86cc4", "#9ad94a", "#c0c6d8"];
const DAY = 86400000;

// What each chart shows, by name, for anyone who reads the page (tests included).
window.runbaseCharts = {};

export async function usagePage(page, choice = null) {
  const { data: accounts } = await api("/accounts");
  const chosen = choice || { days: "30", bucket: "day", groupBy: "", mode: "live", account: "" };
  const option = (value, label, selected) => h("option", { value, selected: value === selected }, label);
  const form = h(
    "form.card.filters#usage-form",
    {},
    field("Range", h("select", { name: "days" }, [["1", "24 hours"], ["7", "7 days"], ["30", "30 days"], ["90", "90 days"]].map(([v, l]) => option(v, l, chosen.days)))),
    field("Buckets", h("select", { name: "bucket" }, option("day", "days", chosen.bucket), option("hour", "hours", chosen.bucket))),
    field("Per", h("select", { name: "groupBy" }, [["", "everything"], ["account", "account"], ["key", "key"], ["model", "model"], ["backend", "engine / provider"]].map(([v, l]) => option(v, l, chosen.groupBy)))),
    field("Keys", h("select", { name: "mode" }, option("live", "live", chosen.mode), option("test", "test", chosen.mode), option("all", "live and test", chosen.mode))),
    field("Account", h("select", { name: "account" }, option("", "all", chosen.account), accounts.map((a) => option(a.id, a.name, chosen.account)))),
    h("button.primary", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const inputs = form.elements;
    const next = Object.fromEntries(["days", "bucket", "groupBy", "mode", "account"].map((n) => [n, inputs[n].value]));
    usagePage(page, next).then(() => (document.body.dataset.ready = "usage"));
  });
  const charts = h("div.charts#charts");
  fill(page, h("h1", {}, "Usage"), form, charts);
  await drawUsage(charts, chosen);
}

async function drawUsage(container, chosen) {
  const span = chosen.bucket === "hour" ? 3600000 : DAY;
  const end = Math.ceil((Date.now() + 1) / span) * span;
  const start = Math.floor((end - Number(chosen.days) * DAY) / span) * span;
  const query = {
    from: new Date(start).toISOString(), to: new Date(end).toISOString(),
    bucket: chosen.bucket, mode: chosen.mode, account: chosen.account,
  };
  const [all, grouped, providers] = await Promise.all([
    api("/usage", { query }),
    chosen.groupBy ? api("/usage", { query: { ...query, groupBy: chosen.groupBy } }) : null,
    api("/usage", { query: { ...query, groupBy: "backend" } }),
  ]);
  const x = all.series[0]
    ? all.series[0].buckets.map((b) => Date.parse(b.start) / 1000)
    : Array.from({ length: Math.round((end - start) / span) }, (_, i) => (start + i * span) / 1000);
  const buckets = all.series[0] ? all.series[0].buckets : x.map(() => null);
  const pick = (fn) => buckets.map((b) => (b ? fn(b) : 0));
  const unit = chosen.bucket === "hour" ? "hour" : "day";

  fill(container, summary(all.total));
  const statuses = ["succeeded", "failed", "canceled", "processing", "pending"];
  chart(container, "runs", `Runs per ${unit}, by status`, x, "stacked",
    statuses.map((s) => ({ label: s, color: COLORS[s], values: pick((b) => b.runs[s]) })), String);
  chart(container, "spend", `Spend per ${unit}`, x, "stacked", [
    { label: "net (succeeded or in flight)", color: "#7c6cff", values: pick((b) => b.netUsd) },
    { label: "refunded (failed or canceled)", color: "#ff6b6b", values: pick((b) => b.refundedUsd) },
  ], usd);
  const codes = [...new Set(buckets.flatMap((b) => (b ? Object.keys(b.failures) : [])))].sort();
  chart(container, "failures", `Failures per ${unit}, by error code`, x, "stacked",
    codes.map((code, i) => ({ label: code, color: PALETTE[(i + 4) % PALETTE.length], values: pick((b) => b.failures[code] || 0) })),
    String, "No failures in this range.");
  chart(container, "timing", "Generation time and queue wait", x, "lines", [
    { label: "generation p50", color: "#3ccf8e", values: pick((b) => b.generationMs.p50) },
    { label: "generation p95", color: "#f5b942", values: pick((b) => b.generationMs.p95) },
    { label: "queue wait p95", color: "#35c5e8", values: pick((b) => b.queueWaitMs.p95), dash: [6, 4] },
  ], ms);
  if (grouped) {
    chart(container, "groups", `Net spend per ${unit}, per ${chosen.groupBy}`, x, "stacked", perGroup(grouped, (b) => b.netUsd), usd);
  }
  if (providers.series.length > 1) {
    chart(container, "providers", `Net spend per ${unit}, per engine / provider`, x, "stacked", perGroup(providers, (b) => b.netUsd), usd);
    chart(container, "provider-times", "Generation time p95, per engine / provider", x, "lines", perGroup(providers, (b) => b.generationMs.p95), ms);
  }
  // Providers whose upstream cost is recorded (compute engines have none): what each one's
  // runs cost upstream, and what is left of their net spend.
  const costed = { ...providers, series: providers.series.filter((s) => s.total.upstreamCostUsd !== null) };
  if (costed.series.length > 1) {
    chart(container, "upstream", `Upstream cost per ${unit}, per provider`, x, "stacked", perGroup(costed, (b) => b.upstreamCostUsd || 0), usd);
    chart(container, "margins", `Margin per ${unit}, per provider (net spend − upstream cost)`, x, "lines", perGroup(costed, (b) => b.marginUsd || 0), usd);
  }
  container.append(providerTable(providers));
}

function perGroup(report, value) {
  return report.series.map((series, i) => ({
    label: series.label, color: PALETTE[i % PALETTE.length], values: series.buckets.map(value),
  }));
}

function summary(total) {
  const card = (label, text, name) => h("div.stat", { dataset: { stat: name } }, h("span", {}, label), h("strong", {}, text));
  return h(
    "section.stats#usage-summary",
    { dataset: { net: total.netUsd, runs: total.totalRuns } },
    card("Runs", total.totalRuns, "runs"),
    card("Charged", usd(total.chargedUsd), "charged"),
    card("Refunded", usd(total.refundedUsd), "refunded"),
    card("Net spend", usd(total.netUsd), "net"),
    ...(total.upstreamCostUsd === null ? [] : [
      card("Upstream cost", usd(total.upstreamCostUsd), "upstream"),
      card("Margin", usd(total.marginUsd), "margin"),
    ]),
    card("Failed", total.runs.failed, "failed"),
    card("Generation p50 / p95", `${ms(total.generationMs.p50)} / ${ms(total.generationMs.p95)}`, "generation"),
    card("Queue wait p95", ms(total.queueWaitMs.p95), "queue"),
  );
}

function providerTable(report) {
  const rows = report.series.map((series) => {
    const t = series.total;
    return h("tr", { dataset: { group: series.group, upstream: t.upstreamCostUsd ?? "", margin: t.marginUsd ?? "" } }, h("td", {}, series.label), h("td.num", {}, t.totalRuns), h("td.num", {}, usd(t.netUsd)),
      h("td.num", {}, usd(t.upstreamCostUsd)), h("td.num", {}, usd(t.marginUsd)), h("td.num", {}, ms(t.generationMs.p95)));
  });
  return h("section.card.wide", {}, h("h2", {}, "Per engine / provider"),
    rows.length ? h("table.grid", {}, h("thead", {}, h("tr", {}, ["Engine", "Runs", "Net spend", "Upstream cost", "Margin", "Generation p95"].map((t, i) => h(i ? "th.num" : "th", {}, t)))), h("tbody", {}, rows))
      : h("p.empty", {}, "No runs in this range."),
    h("p.hint", {}, "Upstream cost and margin appear where the provider's cost is recorded (—: not recorded)."));
}

// One uPlot chart. "stacked" draws bars of cumulative sums, tallest first, so each series
// shows as its own band; the legend and the hover read the series' own values.
function chart(container, name, title, x, kind, series, format, empty = null) {
  window.runbaseCharts[name] = { x, series: Object.fromEntries(series.map((s) => [s.label, s.values])) };
  const box = h("section.card.chart", { dataset: { chart: name } }, h("h2", {}, title));
  container.append(box);
  const hasData = series.some((s) => s.values.some((v) => v));
  if (!series.length || (empty && !hasData)) {
    box.append(h("p.empty", {}, empty || "Nothing to show."));
    return;
  }
  const stacked = kind === "stacked";
  const shown = stacked ? cumulative(series).reverse() : series;
  const data = [x, ...shown.map((s) => s.values)];
  const bars = stacked ? uPlot.paths.bars({ size: [0.7, 48], gap: 1 }) : undefined;
  const raw = stacked ? [...series].reverse() : series;
  const options = {
    width: Math.max(300, box.clientWidth - 38),
    height: 220,
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { stroke: "#8c93a6", grid: { stroke: "#262b38" }, ticks: { stroke: "#262b38" } },
      { stroke: "#8c93a6", grid: { stroke: "#262b38" }, ticks: { stroke: "#262b38" }, size: 70, values: (u, ticks) => ticks.map((t) => format(t)) },
    ],
    series: [
      { value: (u, v) => (v === null ? "—" : uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}")(uPlot.tzDate(new Date(v * 1000), "Etc/UTC"))) },
      ...shown.map((s, i) => ({
        label: s.label,
        stroke: s.color,
        fill: stacked ? s.color : undefined,
        width: stacked ? 0 : 2,
        dash: s.dash,
        paths: bars,
        points: { show: !stacked },
        spanGaps: true,
        value: (u, v, seriesIndex, index) => {
          const own = raw[i].values[index];
          return own === null || own === undefined ? "—" : format(own);
        },
      })),
    ],
  };
  box.append(h("div.plot"));
  new uPlot(options, data, box.lastChild);
}

function cumulative(series) {
  const sums = series[0].values.map(() => 0);
  return series.map((s) => ({
    ...s,
    values: s.values.map((v, i) => (sums[i] += v || 0)),
  }));
}
