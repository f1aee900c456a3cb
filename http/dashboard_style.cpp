// The dashboard's style sheet.
#include "http/dashboard_assets.hpp"

namespace turing::http {

const char* const dashboard_css = R"css(
:root { --bg: #f6f7f9; --fg: #1d232b; --muted: #6b7480; --box: #ffffff; --line: #c9ced6;
        --ok: #2e7d32; --warn: #b26a00; --bad: #c62828; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; gap: 1.2em; align-items: baseline; padding: .6em 1.2em;
         background: var(--fg); color: #fff; }
header h1 { margin: 0; font-size: 1.3em; }
header .muted { color: #aab3bf; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; padding: 1em; }
section { background: var(--box); border: 1px solid var(--line); border-radius: 6px; padding: .6em .9em; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1em; margin: 0 0 .5em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2em .5em; border-bottom: 1px solid #eceef1; font-variant-numeric: tabular-nums; }
th { color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); }
.bad { color: var(--bad); font-weight: 600; }
.ok { color: var(--ok); }
#graph { overflow-x: auto; }
#pipeline { display: block; width: 100%; height: auto; }
svg .stage rect { fill: #fff; stroke: var(--accent); stroke-width: 1.5; }
svg .stage.failed rect { stroke: var(--bad); fill: #fdecea; }
svg .sink rect { fill: #eef5ee; stroke: var(--ok); }
svg .dead-sink rect { fill: #fdecea; stroke: var(--bad); }
svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
svg text.title { font-weight: 700; font-size: 13px; }
svg text.counts { fill: var(--muted); font-size: 11px; }
svg path.edge { fill: none; stroke: #8a94a3; stroke-width: 1.3; }
svg text.edge-label { font-size: 10px; fill: var(--muted); }
.run { margin-bottom: .6em; }
.bar { height: 12px; background: #e4e7ec; border-radius: 6px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); }
.run.done .bar > div { background: var(--ok); }
.reason { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
svg.spark { width: 120px; height: 22px; }
svg.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.3; }
)css";

} // namespace turing::http
