"""Geopreview imports: add-layer, delete-one-layer, delete-layers; jobs on ``geo_q``."""
