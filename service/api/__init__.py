"""The HTTP API: thin routes (`routes/`), dependencies, body parsing, schemas, errors, auth, middleware."""
