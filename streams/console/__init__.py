"""The web console: static ES modules in ``web/`` and the routes that serve them."""
