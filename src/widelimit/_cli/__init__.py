"""Command-line sub-commands, one module per area; each exposes ``register(app)``.

``widelimit.cli`` is the entry point: it creates the typer app and calls every
``register``.  Commands parse arguments, call the public API and print; they
never compute anything themselves.
"""
