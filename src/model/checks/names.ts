// Names that become rendered file names and must not meet: the internal domain beside
// the reverse zones, and one HelmChart file per chart.
import type { Checker } from "./context.js";

export function checkRenderedNames(c: Checker): void {
  const { spec, err } = c;
  if (/(^|\.)arpa$/.test(spec.domain)) err("domain", `${spec.domain} is a reverse-DNS name`, "use the internal domain, such as microcloud.lan");
  const charts = new Map<string, string>();
  for (const [svc, chart] of Object.entries(spec.services)) {
    if (!chart.enabled || !("chart" in chart)) continue;
    const other = charts.get(chart.chart);
    if (other) err(`services.${svc}.chart`, `chart ${chart.chart} is also installed by services.${other}`, "each service needs its own chart (its HelmChart is named after it)");
    charts.set(chart.chart, svc);
  }
}
