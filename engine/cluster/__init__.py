"""The cluster engine: Ray Serve deployments (serve_app, needs Ray) and the bot's HTTP client (client, Ray-free)."""
