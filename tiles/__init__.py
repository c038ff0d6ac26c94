"""Vector tiles (``/gis/...``, postile-compatible) and the map preview (``/preview/<layer_id>``)."""
