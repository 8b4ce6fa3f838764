"""The cluster engine: the bot's HTTP client (client, transport, waiting; Ray-free) and the
Ray Serve application (serve_app, ingress, workers)."""
