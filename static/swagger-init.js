// Starts Swagger UI on /docs. A static file, not an inline <script>, so the page runs under
// a Content-Security-Policy without 'unsafe-inline' for scripts (app/hardening.py). The
// settings come from the page's <script type="application/json" id="swagger-config">.
"use strict";
(function () {
  var cfg = {};
  try { cfg = JSON.parse(document.getElementById("swagger-config").textContent || "{}"); } catch (e) { cfg = {}; }
  cfg.dom_id = "#swagger-ui";
  cfg.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  window.ui = SwaggerUIBundle(cfg);
})();
