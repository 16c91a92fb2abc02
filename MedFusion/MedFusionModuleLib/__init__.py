"""Everything of the MedFusion Slicer module that does not need Qt or the Slicer application.

``MedFusion/MedFusion.py`` is the scripted module Slicer loads (module, parameter node, widget, logic,
self-test). It is kept thin: the work happens here, in modules that need only Slicer's MRML libraries
(``slicer-core`` outside Slicer), so that they run unchanged in the Slicer panel, in Slicer's batch mode,
in plain Python, and under pytest.

- :mod:`.options`: the choices the panel offers (processing mode, slice axis, colour, device) and the
  help text built from the method registry;
- :mod:`.controls`: a method parameter (``MedFusionLib.Param``) turned into the description of a Qt
  control, and the method parameters stored in the parameter node;
- :mod:`.logic`: :class:`~.logic.MedFusionLogicBase`, the module logic (fusion through the library's
  bridge, input checks, metrics, method comparison);
- :mod:`.display`: result display with MRML only (slice composite nodes, colour nodes, the side-by-side
  comparison layout, table nodes);
- :mod:`.dependencies`: the Python packages the library needs, checked and installed only on request
  (the panel's install session, the self-test's install plan);
- :mod:`.sampledata` and :mod:`.checks`: synthetic phantom volumes (also Slicer sample data) and the
  checks the self-test, the batch script and pytest apply to a fused volume.

Nothing here imports ``MedFusionLib`` at import time: the library's own dependencies (SciPy,
PyWavelets, scikit-image, MONAI, PyTorch) may not be installed yet when Slicer starts.
"""
