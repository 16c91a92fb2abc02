"""Volume files of the Slicer bridge: reading a file into a volume node and writing a node to a file,
through Slicer's storage nodes.

Part of :mod:`MedFusionLib.bridge` (which re-exports :func:`load_volume`, :func:`save_volume` and
:data:`NIFTI_FUSED_DESCRIPTION`). Here: the choice of storage node (NRRD or the ITK-based archetype one),
reading as a vector volume first and a scalar volume second (as Slicer's "Add data"), the capture of the
readers' and writers' messages (VTK observers and C-level standard error) into our own error messages,
atomic saving through a staging folder, and the NIfTI ``descrip`` mark of fused volumes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import List, Optional

import slicer
import vtk

from .bridge_nodes import _SCALAR_CLASS, _VECTOR_CLASS, FUSED_ATTRIBUTE, _describe
from .errors import FusionInputError


class _ErrorCollector:
    """Collects VTK error/warning messages of one object instead of printing them.

    A VTK object with an observer for ErrorEvent/WarningEvent passes its messages to the observer rather
    than to the output window, so failed read attempts stay quiet and their reasons can go into our
    exception message."""

    def __init__(self, vtk_object):
        self.messages: List[str] = []
        self._object = vtk_object
        self._tags = [vtk_object.AddObserver(event, self._collect)
                      for event in (vtk.vtkCommand.ErrorEvent, vtk.vtkCommand.WarningEvent)]

    @vtk.calldata_type(vtk.VTK_STRING)
    def _collect(self, caller, event, message):
        # Keep the last line without its "vtkClass (0x...): Class::Method:" prefixes; the first lines are
        # "ERROR: In file.cxx, line N" boilerplate.
        text = (message or "").strip().splitlines()
        if text:
            line = text[-1].split("): ", 1)[-1].strip()
            self.messages.append(re.sub(r"^(\w+::\w+:\s*)+", "", line))

    def close(self) -> None:
        for tag in self._tags:
            self._object.RemoveObserver(tag)

    def summary(self) -> str:
        # "Failed to read/write node ..." only repeats that it failed; the other messages say why.
        useful = [m for m in self.messages if m and not m.startswith(("Failed to read node", "Failed to write node"))]
        return "; ".join(dict.fromkeys(useful or self.messages)) or "no details given"


class _CapturedStderr:
    """Redirects the process's C-level standard error (fd 2) into a temporary file while it is open.

    Slicer's readers print through teem (``[nrrd] ...``), ITK and VTK's logger straight to fd 2, past any
    observer; around a read that output is caught here and folded into our own message instead. fd 2 is
    process-wide: whatever another thread prints during the read is caught too (and dropped on success,
    like the failed read attempts' noise)."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        import sys

        try:
            sys.stderr.flush()
        finally:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()

    def summary(self) -> str:
        """The reader's own reasons, one line each: the deepest teem line, VTK/ITK error texts."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", getattr(self, "text", ""))
        reasons, nrrd = [], None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[nrrd]"):
                nrrd = line[len("[nrrd]"):].strip()
            elif "ERR|" in line or "WARN|" in line:
                message = line.split("|", 1)[1].strip()
                message = message.split("): ", 1)[-1].strip()
                if message and "returned failure for request" not in message:
                    reasons.append(re.sub(r"^(\w+::\w+:\s*)+", "", message))
            elif line.startswith(("ITK", "Description:")):
                reasons.append(line)
        if nrrd:
            reasons.append(nrrd)
        return "; ".join(dict.fromkeys(r for r in reasons if r))


def _storage_node_class(path: str) -> str:
    # NRRD files go through Slicer's NRRD storage node (it keeps 'kinds', measurement frame and the RAS
    # space exactly); every other format through the ITK-based archetype storage node.
    if path.lower().endswith((".nrrd", ".nhdr")):
        return "vtkMRMLNRRDStorageNode"
    return "vtkMRMLVolumeArchetypeStorageNode"


def _default_name(path: str) -> str:
    name = os.path.basename(path)
    lower = name.lower()
    for suffix in (".nii.gz", ".gipl.gz"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0] or name


def _drop_alpha(node) -> None:
    """Turn an RGBA vector volume (e.g. a PNG with transparency) into RGB; fusion takes RGB only."""
    extract = vtk.vtkImageExtractComponents()
    extract.SetInputData(node.GetImageData())
    extract.SetComponents(0, 1, 2)
    extract.Update()
    rgb = vtk.vtkImageData()
    rgb.DeepCopy(extract.GetOutput())
    node.SetAndObserveImageData(rgb)


def load_volume(path, scene, name: Optional[str] = None):
    """Read a volume file into a new node of ``scene`` through Slicer's storage nodes.

    Geometry (origin, spacing, axis directions) comes from the file as Slicer reads it (LPS files are
    converted to RAS). Like Slicer's "Add data", the file is tried as an RGB/vector volume first and as a
    scalar volume second, so a colour image becomes a vtkMRMLVectorVolumeNode and a grey one a
    vtkMRMLScalarVolumeNode; an RGBA image loses its alpha channel. 2-D images load as single-slice
    volumes.

    Parameters
    ----------
    path : str or os.PathLike
        NRRD (``.nrrd``, ``.nhdr``), NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) and the
        other formats Slicer's volume archetype storage node reads. Note: ``slicer-core`` (Slicer's
        libraries outside the application) has no ITK reader for PNG, JPEG, TIFF or BMP; inside Slicer
        those load too.
    scene : vtkMRMLScene
        Scene to add the node (with a display and a storage node) to; see :func:`new_scene`.
    name : str, optional
        Node name; default: the file name without extension, made unique in the scene.

    Returns
    -------
    vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        The new node.

    Raises
    ------
    FusionInputError
        The file does not exist, is not a file, or cannot be read as a volume (the message gives the
        reader's reasons). Nothing is added to the scene then.
    """
    path = os.fspath(path)
    if not isinstance(scene, slicer.vtkMRMLScene):
        raise FusionInputError(f"scene must be a vtkMRMLScene; got {type(scene).__name__}")
    if not os.path.exists(path):
        raise FusionInputError(f"cannot load {path!r}: no such file")
    if not os.path.isfile(path):
        raise FusionInputError(f"cannot load {path!r}: not a file")
    if not os.access(path, os.R_OK):
        raise FusionInputError(f"cannot load {path!r}: permission denied")
    absolute = os.path.abspath(path)
    from . import memory

    memory.check_read(path)     # a header claiming a huge volume is refused before the reader allocates it
    reasons = []
    # Vector first, as Slicer's volumes logic does: reading a colour NRRD as a scalar volume "succeeds"
    # with a 3-component image in a scalar node; the vector readers refuse single-component files.
    for class_name in (_VECTOR_CLASS, _SCALAR_CLASS):
        # Read into nodes outside the scene, so that a failed attempt leaves nothing behind.
        node = scene.CreateNodeByClass(class_name)
        node.UnRegister(None)
        storage = scene.CreateNodeByClass(_storage_node_class(absolute))
        storage.UnRegister(None)
        storage.SetFileName(absolute)
        errors = _ErrorCollector(storage)
        try:
            with _CapturedStderr() as noise:
                ok = storage.ReadData(node)
        finally:
            errors.close()
        printed = noise.summary()
        if ok and node.GetImageData() is not None and not (printed and class_name == _SCALAR_CLASS
                                                            and "ERR|" in noise.text):
            break
        said = errors.summary() if errors.messages else ""
        reasons.append(f"as {class_name[7:]}: " + ("; ".join(r for r in (said, printed) if r) or "no details given"))
    else:
        raise FusionInputError(
            f"cannot load {path!r} as a volume ({' | '.join(reasons)}). Readable formats: NRRD, NIfTI, "
            f"MetaImage and the others Slicer's volume IO reads (slicer-core cannot read PNG/JPEG/TIFF/BMP)")
    image = node.GetImageData()
    if node.IsA(_VECTOR_CLASS) and image.GetNumberOfScalarComponents() == 4 \
            and image.GetScalarType() == vtk.VTK_UNSIGNED_CHAR:
        _drop_alpha(node)
    node.SetName(name if name is not None else scene.GetUniqueNameByString(_default_name(path)))
    storage = scene.AddNode(storage)
    node = scene.AddNode(node)
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


#: NIfTI's 80-byte description field of fused volumes (NRRD carries the node attributes instead).
NIFTI_FUSED_DESCRIPTION = "MedFusion fused image: display only, not for quantitative measurement"


def _set_nifti_description(path: str, text: str) -> None:
    """Write ``text`` into the ``descrip`` field of a NIfTI-1 (offset 148) or NIfTI-2 (offset 240) file,
    gzip-compressed or not."""
    import gzip
    import struct

    packed = path.lower().endswith(".gz")
    with (gzip.open(path, "rb") if packed else open(path, "rb")) as fh:
        content = bytearray(fh.read())
    size = struct.unpack("<i", content[:4])[0]
    if size not in (348, 540):
        size = struct.unpack(">i", content[:4])[0]
    offset = {348: 148, 540: 240}.get(size)
    if offset is None:
        raise FusionInputError(f"{path!r} does not look like a NIfTI file: cannot set its description")
    content[offset:offset + 80] = text.encode("ascii")[:79].ljust(80, b"\0")
    with (gzip.open(path, "wb") if packed else open(path, "wb")) as fh:
        fh.write(bytes(content))


def save_volume(node, path) -> None:
    """Write a volume node to a file through Slicer's storage nodes, atomically.

    The file is first written into a temporary folder beside ``path`` and then moved into place with
    :func:`os.replace`, so on any error no partial file is left at ``path`` (and an existing file there is
    kept). Formats with a separate data file (``.nhdr``, ``.mhd``) move their data file first, header
    last. The node's local geometry is written (a parent transform is not applied), as Slicer does. The
    node is not modified: it does not get a storage node. Slicer's NRRD writer stores the node's
    attributes as header key/value lines, so a fused volume (:func:`mark_fused`) written as NRRD says
    ``MedFusion.FusedImage:=MedFusion fused image: for display, not for quantitative measurement`` with its
    method, parameters and provenance; as NIfTI, its ``descrip`` field says
    :data:`NIFTI_FUSED_DESCRIPTION`.

    Parameters
    ----------
    node : vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode
        Volume with image data.
    path : str or os.PathLike
        Target file; its extension picks the format (``.nrrd``, ``.nhdr``, ``.nii``, ``.nii.gz``,
        ``.mha``, ``.mhd``, or another format Slicer's volume IO writes). Its folder must exist.

    Raises
    ------
    FusionInputError
        ``node`` is not a volume with image data, the folder does not exist or is not writable, or
        the format cannot be written (the message gives the writer's reasons).
    """
    if not isinstance(node, slicer.vtkMRMLVolumeNode) or node.GetImageData() is None:
        raise FusionInputError(f"save_volume needs a volume node with image data; got {_describe(node)}")
    path = os.path.abspath(os.fspath(path))
    folder, file_name = os.path.split(path)
    if not os.path.isdir(folder):
        raise FusionInputError(f"cannot save {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise FusionInputError(f"cannot save {path!r}: it is a folder")
    try:
        staging = tempfile.mkdtemp(prefix=f".{file_name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise FusionInputError(f"cannot save {path!r}: folder is not writable ({error.strerror})") from error
    try:
        storage = getattr(slicer, _storage_node_class(path))()
        storage.SetFileName(os.path.join(staging, file_name))
        errors = _ErrorCollector(storage)
        try:
            with _CapturedStderr() as noise:    # the writers print to fd 2 too (e.g. on a full disk)
                ok = storage.WriteData(node)
        finally:
            errors.close()
        written = os.path.join(staging, file_name)
        if not ok or not os.path.isfile(written) or "ERR|" in noise.text:
            said = errors.summary() if errors.messages else ""
            details = ("; ".join(r for r in (said, noise.summary()) if r) or "no details given")
            details = details.replace(staging + os.sep, "").replace(staging, folder)
            raise FusionInputError(
                f"cannot save {path!r}: Slicer's volume IO could not write it ({details}). Writable formats: "
                f"NRRD, NIfTI, MetaImage and the others Slicer's volume IO writes")
        if node.GetAttribute(FUSED_ATTRIBUTE) and file_name.lower().endswith((".nii", ".nii.gz")):
            try:
                _set_nifti_description(written, NIFTI_FUSED_DESCRIPTION)
            except (EOFError, ValueError) as error:
                # ITK's NIfTI writer reports success on a full disk and leaves a truncated file.
                raise FusionInputError(f"cannot save {path!r}: the file written is incomplete ({error}); is the "
                                       f"disk full?") from None
        # Detached headers name their data file relative to themselves, so every file keeps its name.
        others = sorted(f for f in os.listdir(staging)
                        if f != file_name and os.path.isfile(os.path.join(staging, f)))
        for other in others:
            os.replace(os.path.join(staging, other), os.path.join(folder, other))
        os.replace(written, path)
    except OSError as error:
        raise FusionInputError(f"cannot save {path!r}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
