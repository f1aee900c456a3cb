// The dashboard's page, script and style, compiled into the binary: the node
// serves them itself, with nothing fetched from the internet.
#pragma once

namespace turing::http {

extern const char* const dashboard_html; ///< served at /
extern const char* const dashboard_js;   ///< /dashboard.js
extern const char* const dashboard_css;  ///< /dashboard.css

} // namespace turing::http
