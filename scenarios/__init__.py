"""The bundled drills (`maildrill scenarios` lists them), shipped as package data.

A package, not a plain folder, so the YAML files travel in the wheel and
`loadtest.bundled` finds them with importlib.resources wherever maildrill is installed,
checkout or site-packages alike. The files themselves are the product: see README.md here.
"""
