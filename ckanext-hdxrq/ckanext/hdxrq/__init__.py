"""CKAN extension for hdxrq: geopreview imports, dataset change events and a map view."""
