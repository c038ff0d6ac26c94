"""The composition package: the one place that knows every slice.

It builds the process's :class:`core.registry.Registry` from each slice's ``register`` function
(:mod:`app.slices`) and assembles from it the API (:mod:`app.factory`), the command line (:mod:`app.cli`,
with ``serve`` and ``run`` from :mod:`app.serve`) and the workers. Slices and ``core`` never import it.
"""
