// The dashboard's HTML skeleton: sections that dashboard.js fills from
// /api/status every 2 s.
#include "http/dashboard_assets.hpp"

namespace turing::http {

const char* const dashboard_html = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>turing</title>
<link rel="stylesheet" href="/dashboard.css">
</head>
<body>
<header>
  <h1>turing</h1>
  <span id="node"></span>
  <span id="database"></span>
  <span id="updated" class="muted">connecting…</span>
</header>
<main>
  <section class="wide">
    <h2>Pipeline</h2>
    <div id="graph"><svg id="pipeline" role="img" aria-label="pipeline graph"></svg></div>
  </section>
  <section>
    <h2>Runs</h2>
    <div id="runs"></div>
  </section>
  <section>
    <h2>Models</h2>
    <table id="models"><thead><tr><th>model</th><th>in flight / limit</th><th>calls/min</th><th>errors/min</th><th>state</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Latency per stage</h2>
    <table id="latency"><thead><tr><th>stage</th><th>p50</th><th>p95</th><th>p95 history</th><th>fail rate</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Nodes</h2>
    <table id="nodes"><thead><tr><th>node</th><th>state</th><th>running</th><th>seen</th><th>failed stages</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="wide">
    <h2>Dead letters <span id="dead-count" class="muted"></span></h2>
    <table id="dead"><thead><tr><th>when</th><th>stage</th><th>run</th><th>key</th><th>reason</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
)html";

} // namespace turing::http
