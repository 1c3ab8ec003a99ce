// Starts Swagger UI on /docs from the vendored bundle; a file rather than an inline script, so
// the page runs under a Content-Security-Policy without 'unsafe-inline' scripts.
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // No badge from the public validator service: the docs must not call out of the network.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
