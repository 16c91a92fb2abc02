"""Fusion methods, one module per family (a package named apart from the function ``MedFusionLib.methods``); each registers itself with :func:`MedFusionLib.registry.register`.

Every module in this package is imported the first time the registry is read, so adding a module here
is all it takes for a new method to appear in the API, the command line and the Slicer panel.
"""
