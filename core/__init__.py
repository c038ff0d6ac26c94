"""Shared plumbing: settings, connections, errors, the CKAN client, PostGIS access, the app factory."""
