"""The alerts worker: it tells a person, through apprise, what the service would otherwise only log."""
