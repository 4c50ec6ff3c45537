"""The HTTP edge: server, middleware, request parsing, routes and the OpenAPI document."""
