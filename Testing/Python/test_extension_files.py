"""Static checks of what only a real Slicer runs: the .ui file, the parameter node, MedFusion.py, the CMake
files and the extension catalog entry (the Slicer ExtensionsIndex rules), and the icons.

No Qt and no Slicer application are needed: files are parsed (XML, Python AST, CMake text, JSON, PNG).
"""

import ast
import glob
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_DIR = os.path.join(ROOT, "MedFusion")
MODULE_PY = os.path.join(MODULE_DIR, "MedFusion.py")
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "MedFusion.ui")
CATALOG_ENTRY = os.path.join(ROOT, "MedFusion.json")

sys.path.insert(0, MODULE_DIR)
from MedFusionModuleLib import options  # noqa: E402

# Slicer/ExtensionsIndex scripts/check_description_files.py, ACCEPTED_EXTENSION_CATEGORIES.
ACCEPTED_CATEGORIES = {
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform", "Conda",
    "Converters", "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter", "FTV Segmentation",
    "Filtering", "Filtering.Morphology", "Filtering.Vesselness", "Holographic Display", "IGT", "Informatics",
    "Netstim", "Neuroimaging", "Nuclear Medicine", "Orthodontics", "Osteotomy Planning", "Otolaryngology",
    "Photogrammetry", "Pipelines", "Planning", "Printing", "Quantification", "Radiotherapy", "Registration",
    "Remote", "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis", "Shape Regression",
    "Shape Visualization", "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging", "Supervisely",
    "Surface Models", "SurfaceLearner", "Tomographic Reconstruction", "Tracking", "Tractography", "Training",
    "Ultrasound", "Utilities", "Vascular Modeling Toolkit", "Virtual Reality", "VisSimTools", "Web System Tools",
    "Wizards",
}
# Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json: property types and enums.
CATALOG_SCHEMA = {
    "required": {"$schema", "category", "scm_url"},
    "properties": {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                   "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int},
    "enums": {"scm_type": {"git", "local"}, "tier": {1, 3, 5}},
}
# Parameter-node fields the widget syncs by hand (no single widget holds their value).
MANUAL_FIELDS = {"additionalVolumes", "method", "methodParameters", "compareMethods"}


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


# --- MedFusion.py -----------------------------------------------------------------------------------------
def _module_ast():
    return ast.parse(_read(MODULE_PY), MODULE_PY)


def _class(tree, name):
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def _parameter_fields():
    """MedFusionParameterNode's fields: name -> (annotation source, default node or None)."""
    cls = _class(_module_ast(), "MedFusionParameterNode")
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list)
    return {stmt.target.id: (ast.unparse(stmt.annotation), stmt.value) for stmt in cls.body
            if isinstance(stmt, ast.AnnAssign)}


def _ui_names_used_in_code():
    names = set()
    for node in ast.walk(_module_ast()):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
            names.add(node.attr)
    return names


def _eval_choices(annotation: str):
    match = re.fullmatch(r"Annotated\[str, Choice\((.*)\)\]", annotation)
    return eval(match.group(1), {"options": options, "list": list}) if match else None  # noqa: S307


def test_module_description():
    tree = _module_ast()
    init = next(f for f in _class(tree, "MedFusion").body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    assigned = {ast.unparse(s.targets[0]): s.value for s in init.body if isinstance(s, ast.Assign)}
    # Translatable texts as in Slicer 5.10's scripted-module template: _() for our strings, translate()
    # with Slicer's own context for the category.
    title = assigned["self.parent.title"]
    assert ast.unparse(title.func) == "_" and ast.literal_eval(title.args[0]) == "MedFusion"
    categories = assigned["self.parent.categories"].elts
    assert [ast.unparse(c.func) for c in categories] == ["translate"]
    assert ast.literal_eval(categories[0].args[0]) == "qSlicerAbstractCoreModule"
    assert {ast.literal_eval(c.args[1]) for c in categories} <= ACCEPTED_CATEGORIES
    contributors = ast.literal_eval(assigned["self.parent.contributors"])
    assert contributors and all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in contributors)   # "Name (Organization)"
    assert ast.unparse(assigned["self.parent.helpText"]).startswith("_(") and \
        "helpText" in ast.unparse(assigned["self.parent.helpText"])
    assert ast.unparse(assigned["self.parent.acknowledgementText"]).startswith("_(")
    source = _read(MODULE_PY)
    assert "from slicer.i18n import tr as _" in source and "from slicer.i18n import translate" in source
    # The module docstring counts its classes right.
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    words = {5: "five", 4: "four", 6: "six"}
    assert f"The {words[len(classes)]} classes" in ast.get_docstring(tree)
    for name in ("MedFusion", "MedFusionParameterNode", "MedFusionWidget", "MedFusionLogic", "MedFusionTest"):
        _class(tree, name)
    bases = {name: [ast.unparse(b) for b in _class(tree, name).bases] for name in
             ("MedFusion", "MedFusionWidget", "MedFusionLogic", "MedFusionTest")}
    assert bases["MedFusion"] == ["ScriptedLoadableModule"]
    assert bases["MedFusionWidget"][0] == "ScriptedLoadableModuleWidget"
    assert bases["MedFusionLogic"] == ["ScriptedLoadableModuleLogic", "MedFusionLogicBase"]
    assert bases["MedFusionTest"] == ["ScriptedLoadableModuleTest"]


def _top_level_imports(path):
    tree = ast.parse(_read(path), path)
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
    return names


HEAVY = ("MedFusionLib", "torch", "monai", "pywt", "scipy", "skimage", "PIL", "imageio")


@pytest.mark.parametrize("path", [MODULE_PY] + sorted(glob.glob(os.path.join(MODULE_DIR, "MedFusionModuleLib", "*.py"))),
                         ids=os.path.basename)
def test_nothing_heavy_is_imported_when_slicer_loads_the_module(path):
    """Slicer imports MedFusion.py at start-up: the library and its dependencies load only when used."""
    heavy = [n for n in _top_level_imports(path) if n.split(".")[0] in HEAVY]
    assert heavy == []


def test_helper_package_imports_without_the_library():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import MedFusionModuleLib.logic, MedFusionModuleLib.display, MedFusionModuleLib.controls, "
            "MedFusionModuleLib.dependencies, MedFusionModuleLib.options, MedFusionModuleLib.checks, "
            "MedFusionModuleLib.sampledata; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in %r); "
            "print(loaded); sys.exit(1 if loaded else 0)" % (HEAVY,))
    run = subprocess.run([sys.executable, "-c", code, MODULE_DIR], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _interpreters():
    """Working interpreters for Python 3.10-3.12: on PATH, or installed by pyenv."""
    found = {}
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in ("3.10", "3.11", "3.12"):
        candidates = [shutil.which(f"python{version}")]
        candidates += sorted(glob.glob(os.path.join(pyenv, "versions", f"{version}.*", "bin", f"python{version}")))
        for exe in filter(None, candidates):
            try:
                out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                     capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip() == version:
                found[version] = exe
                break
    found.setdefault("%d.%d" % sys.version_info[:2], sys.executable)
    return found


PYTHON_FILES = [MODULE_PY, os.path.join(ROOT, "MedFusion", "Resources", "Scripts", "fuse_batch.py"),
                os.path.join(ROOT, "docs", "make_icon.py"), os.path.join(ROOT, "docs", "make_screenshot.py")] + sorted(glob.glob(os.path.join(MODULE_DIR, "MedFusionModuleLib", "*.py")))


def test_module_code_parses_with_the_python_3_10_grammar():
    for path in PYTHON_FILES:
        ast.parse(_read(path), path, feature_version=(3, 10))


_FOUND = sorted(_interpreters().items())


@pytest.mark.parametrize("version, exe", _FOUND, ids=[version for version, _ in _FOUND])
def test_module_code_compiles_under_each_installed_python(version, exe):
    code = "import sys\nfor p in sys.argv[1:]:\n    compile(open(p, encoding='utf-8').read(), p, 'exec')\n"
    run = subprocess.run([exe, "-c", code, *PYTHON_FILES], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"Python {version}: {run.stderr}"


# --- the .ui file ------------------------------------------------------------------------------------------
def _ui():
    import xml.etree.ElementTree as ElementTree

    return ElementTree.parse(UI_FILE).getroot()


def _widgets(root):
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget, name):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            value = prop[0]
            if value.tag == "stringlist":
                return [s.text for s in value.findall("string")]
            return value.text
    return None


def test_ui_file_is_qt_designer_xml_for_a_mrml_widget():
    root = _ui()
    assert root.tag == "ui" and root.get("version") == "4.0" and root.findtext("class") == "MedFusion"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "MedFusion"
    names = [w.get("name") for w in root.iter("widget")] + [lay.get("name") for lay in root.iter("layout")]
    assert len(names) == len(set(names)), "widget and layout names must be unique"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    custom = {c for c in used if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"custom widgets not declared: {custom - declared}"
    for c in root.iter("customwidget"):
        assert c.findtext("header") == c.findtext("class") + ".h"


def test_every_widget_the_code_names_exists_in_the_ui_file():
    root = _ui()
    names = set(_widgets(root)) | {lay.get("name") for lay in root.iter("layout")}
    missing = _ui_names_used_in_code() - names
    assert not missing, f"MedFusion.py uses self.ui.{sorted(missing)} which the .ui file does not define"


def test_slicer_parameter_names_match_the_parameter_node():
    fields = _parameter_fields()
    connected = {}
    for name, widget in _widgets(_ui()).items():
        parameter = _property(widget, "SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in fields, f"{name}: SlicerParameterName {parameter!r} is not a MedFusionParameterNode field"
        assert parameter not in connected, f"{parameter!r} is connected to two widgets"
        connected[parameter] = widget
        annotation, default = fields[parameter]
        kind = widget.get("class")
        if kind == "qMRMLNodeComboBox":
            assert re.fullmatch(r"vtkMRML\w+Node", annotation), (parameter, annotation)
            assert _property(widget, "nodeTypes") == [annotation]
        elif kind == "QComboBox":
            choices = _eval_choices(annotation)
            assert choices, f"{parameter}: a QComboBox needs Annotated[str, Choice(...)]; got {annotation}"
            assert ast.literal_eval(default) in choices
        elif kind == "QCheckBox":
            assert annotation == "bool"
        elif kind == "ctkSliderWidget":
            lo, hi = re.fullmatch(r"Annotated\[float, WithinRange\((.*), (.*)\)\]", annotation).groups()
            assert float(lo) == float(_property(widget, "minimum")) and float(hi) == float(_property(widget, "maximum"))
        else:
            pytest.fail(f"{name}: no parameter-node connector for {kind}")
    # Every other field is synced by the widget code by hand, and the code really touches it.
    assert set(fields) - set(connected) == MANUAL_FIELDS
    source = _read(MODULE_PY)
    for field in MANUAL_FIELDS:
        assert re.search(rf"_parameterNode\.{field}\s*=", source), f"{field} is never written from the GUI"


def test_choice_fields_offer_exactly_the_panel_options():
    fields = _parameter_fields()
    expected = {"mode": options.MODES, "sliceAxis": options.SLICE_AXES, "colourMode": options.COLOUR_MODES,
                "colourMap": options.COLOUR_MAPS, "colourSpace": options.COLOUR_SPACES, "device": options.DEVICES,
                "register": options.REGISTRATIONS}
    for field, values in expected.items():
        assert _eval_choices(fields[field][0]) == list(values)


def test_registration_choice_is_in_the_inputs_section_and_reaches_the_logic():
    # The combo box sits with the inputs (what is registered onto what), bound to the parameter node, and
    # Apply and Compare pass its value to the logic, which checks it like every other input.
    inputs = next(w for w in _ui().iter("widget") if w.get("name") == "inputsCollapsibleButton")
    combo = next(w for w in inputs.iter("widget") if w.get("name") == "registerComboBox")
    assert combo.get("class") == "QComboBox" and _property(combo, "SlicerParameterName") == "register"
    assert ast.literal_eval(_parameter_fields()["register"][1]) == "none"
    source = _read(MODULE_PY)
    assert source.count("register=node.register") == 3     # checkInputs (tooltip), process, compareMethods
    assert "checkRegistration(" in source


def test_mrml_widgets_receive_the_scene():
    root = _ui()
    connections = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")}
    for name, widget in _widgets(root).items():
        if widget.get("class").startswith("qMRML") and name != "MedFusion":
            assert ("MedFusion", "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") in connections, name


# --- CMake ------------------------------------------------------------------------------------------------
def _strip_comment(line):
    """A CMake line without its comment ('#' outside a quoted argument starts one)."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"' and (index == 0 or line[index - 1] != "\\"):
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def _cmake(path):
    text = _read(os.path.join(ROOT, path))
    code = "\n".join(_strip_comment(line) for line in text.splitlines())
    assert code.count('"') % 2 == 0, f"{path}: unbalanced quotes"
    assert code.count("(") == code.count(")"), f"{path}: unbalanced parentheses"
    return code


def _cmake_set(code, name):
    match = re.search(rf"set\(\s*{name}\s+(.*?)\)", code, re.S)
    return match.group(1).strip() if match else None


def _cmake_call(code, function):
    match = re.search(rf"{function}\((.*?)\)", code, re.S)
    assert match, f"{function}() not found"
    return match.group(1).split()


def test_top_level_cmake_declares_the_extension():
    code = _cmake("CMakeLists.txt")
    # The template's policy range: tested against CMake 3.16.3 up to 3.19.7 behaviour.
    assert re.match(r"cmake_minimum_required\(VERSION 3\.16\.3\.\.\.3\.\d+(\.\d+)? FATAL_ERROR\)", code)
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS\s+"([^"]*)"\)', code).group(1)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors.split(","))
    # As the ExtensionsIndex check reads it: the first project() name is the extension name.
    project = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", code, re.I)[0]
    assert project == os.path.splitext(os.path.basename(CATALOG_ENTRY))[0] == "MedFusion"
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert _cmake_set(code, f"EXTENSION_{key}"), f"EXTENSION_{key} is not set"
    assert _cmake_set(code, "EXTENSION_CATEGORY").strip('"') in ACCEPTED_CATEGORIES
    assert "PyTorch" in _cmake_set(code, "EXTENSION_DEPENDS").strip('"').split()
    icon = re.search(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', code, re.I).group(1)
    assert icon.startswith("https://") and icon.endswith("/main/MedFusion.png")
    screenshots = re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', code, re.I).group(1).split()
    assert screenshots and all(url.startswith("https://") for url in screenshots)
    assert re.search(r"find_package\(\s*Slicer\s+REQUIRED\s*\)", code)
    assert "include(${Slicer_USE_FILE})" in code
    for sub in ("MedFusionLib", "MedFusion"):
        assert re.search(rf"add_subdirectory\(\s*{sub}\s*\)", code)
    assert re.search(r"if\(BUILD_TESTING\)\s*add_subdirectory\(\s*Testing\s*\)", code)
    assert code.index("include(${Slicer_EXTENSION_GENERATE_CONFIG})") < code.index("include(${Slicer_EXTENSION_CPACK})")


def test_module_cmake_lists_every_module_file():
    code = _cmake("MedFusion/CMakeLists.txt")
    module = _cmake_set(code, "MODULE_NAME")
    assert module == "MedFusion"
    scripts = [s.replace("${MODULE_NAME}", module) for s in _cmake_set(code, "MODULE_PYTHON_SCRIPTS").split()]
    resources = [s.replace("${MODULE_NAME}", module) for s in _cmake_set(code, "MODULE_PYTHON_RESOURCES").split()]
    on_disk = {"MedFusion.py"} | {os.path.relpath(p, MODULE_DIR).replace(os.sep, "/")
                                  for p in glob.glob(os.path.join(MODULE_DIR, "MedFusionModuleLib", "*.py"))}
    assert set(scripts) == on_disk
    assert set(resources) == {"Resources/Icons/MedFusion.png", "Resources/Icons/MedFusionHeadPhantom.png",
                              "Resources/UI/MedFusion.ui", "Resources/requirements.txt",
                              "Resources/Scripts/fuse_batch.py"}      # the batch script is installed with the module
    for path in scripts + resources:
        assert os.path.isfile(os.path.join(MODULE_DIR, path)), path
    build = _cmake_call(code, "slicerMacroBuildScriptedModule")
    assert build[:2] == ["NAME", "${MODULE_NAME}"] and "WITH_GENERIC_TESTS" in build
    assert "SCRIPTS" in build and "RESOURCES" in build
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", code, re.S)


def _cmake_glob(code, variable):
    """Emulate file(GLOB_RECURSE <variable> RELATIVE <dir> [CONFIGURE_DEPENDS] patterns...)."""
    match = re.search(rf"file\(GLOB_RECURSE\s+{variable}\s+RELATIVE\s+\$\{{CMAKE_CURRENT_SOURCE_DIR\}}\s+"
                      rf"(?:CONFIGURE_DEPENDS\s+)?(.*?)\)", code, re.S)
    assert match, f"file(GLOB_RECURSE {variable} RELATIVE ...) not found"
    base = os.path.join(ROOT, "MedFusionLib")
    found = set()
    for pattern in match.group(1).split():
        relative = pattern.replace("${CMAKE_CURRENT_SOURCE_DIR}/", "")
        folder, name = os.path.split(relative)
        for path in glob.glob(os.path.join(base, folder, "**", name), recursive=True):
            found.add(os.path.relpath(path, base).replace(os.sep, "/"))
    return found


def test_library_cmake_installs_the_whole_package_beside_the_module():
    code = _cmake("MedFusionLib/CMakeLists.txt")
    assert _cmake_set(code, "MODULE_NAME") == "MedFusionLib"
    scripts = {p for p in _cmake_glob(code, "MODULE_PYTHON_SCRIPTS") if "__pycache__/" not in p}
    assert 'EXCLUDE REGEX "(^|/)__pycache__/"' in code
    base = os.path.join(ROOT, "MedFusionLib")
    package = {os.path.relpath(p, base).replace(os.sep, "/") for p in glob.glob(os.path.join(base, "**", "*.py"), recursive=True)
               if "__pycache__" not in p}
    assert scripts == package
    assert {"__init__.py", "families/__init__.py", "transforms/__init__.py", "bridge.py"} <= scripts
    data = _cmake_glob(code, "MODULE_PYTHON_RESOURCES")
    weights = {os.path.relpath(p, base).replace(os.sep, "/") for ext in ("pt", "json", "npz")
               for p in glob.glob(os.path.join(base, "weights", "**", f"*.{ext}"), recursive=True)}
    assert data == weights
    build = _cmake_call(code, "slicerMacroBuildScriptedModule")
    assert build[:2] == ["NAME", "${MODULE_NAME}"] and "WITH_SUBDIR" in build   # as Slicer's DICOMLib
    # The pip package ships the same data files.
    assert 'MedFusionLib = ["weights/*.pt", "weights/*.json", "weights/*.npz"]' in _read(os.path.join(ROOT, "pyproject.toml"))


def test_testing_cmake_runs_the_batch_script_in_slicer():
    code = _cmake("Testing/CMakeLists.txt")
    call = _cmake_call(code, "slicer_add_python_test")
    script = call[call.index("SCRIPT") + 1]
    assert os.path.isfile(os.path.normpath(os.path.join(ROOT, "Testing", script)))
    assert script.endswith("MedFusion/Resources/Scripts/fuse_batch.py")      # the installed script itself
    assert call[call.index("SLICER_ARGS") + 1] == "--no-main-window"
    assert "--self-test" in call[call.index("SCRIPT_ARGS") + 1:]


# --- the catalog entry --------------------------------------------------------------------------------------
def test_catalog_entry_follows_the_extensions_index_rules():
    entry = json.loads(_read(CATALOG_ENTRY))
    assert CATALOG_SCHEMA["required"] <= set(entry)
    assert set(entry) <= set(CATALOG_SCHEMA["properties"]), "additionalProperties is false in the schema"
    for key, value in entry.items():
        assert isinstance(value, CATALOG_SCHEMA["properties"][key]), key
        if key in CATALOG_SCHEMA["enums"]:
            assert value in CATALOG_SCHEMA["enums"][key], key
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.1.json")
    assert entry["category"] in ACCEPTED_CATEGORIES
    code = _cmake("CMakeLists.txt")
    assert entry["category"] == _cmake_set(code, "EXTENSION_CATEGORY").strip('"')
    assert entry["build_dependencies"] == _cmake_set(code, "EXTENSION_DEPENDS").strip('"').split()
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    url = entry["scm_url"]
    assert url.startswith("https://") and "://" in url
    repository = os.path.splitext(url.rstrip("/").split("/")[-1])[0]
    assert "slicer" in repository.lower()   # the index's repository-name rule
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))


# --- icons -------------------------------------------------------------------------------------------------
def _png_size(path):
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_icons_are_128_pixel_pngs_drawn_by_the_generator():
    from PIL import Image

    spec = importlib.util.spec_from_file_location("make_icon", os.path.join(ROOT, "docs", "make_icon.py"))
    make_icon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_icon)
    drawn = make_icon.render()
    for path in make_icon.OUTPUTS:
        assert _png_size(path) == (128, 128)
        with Image.open(path) as image:
            np.testing.assert_array_equal(np.asarray(image.convert("RGBA")), drawn)
    # Two coloured discs: grey anatomy and hot (red-dominant) function, on a transparent background.
    assert drawn[0, 0, 3] == 0 and drawn[64, 64, 3] == 255
    opaque = drawn[drawn[..., 3] == 255][:, :3].astype(int)
    assert (np.ptp(opaque, axis=1) < 20).mean() > 0.2 and (opaque[:, 0] - opaque[:, 2] > 80).mean() > 0.2


def test_metrics_section_opens_after_apply_and_compare():
    # Slicer template habit: the section holding what a button just produced is expanded by that button.
    tree = _module_ast()
    widget = _class(tree, "MedFusionWidget")
    for name in ("onApplyButton", "onCompareButton"):
        function = next(f for f in widget.body if isinstance(f, ast.FunctionDef) and f.name == name)
        assert "self.ui.resultsCollapsibleButton.collapsed = False" in ast.unparse(function), name
    assert "resultsCollapsibleButton" in _read(UI_FILE)


# --- issue 10: first use ------------------------------------------------------------------------------------
def test_screenshot_named_in_cmake_is_a_png_in_the_repository():
    code = _cmake("CMakeLists.txt")
    urls = re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', code, re.I).group(1).split()
    prefix = "https://raw.githubusercontent.com/medfusion/SlicerMedFusion/main/"
    for url in urls:
        assert url.startswith(prefix), url
        path = os.path.join(ROOT, *url[len(prefix):].split("/"))
        assert os.path.isfile(path), f"EXTENSION_SCREENSHOTURLS names {url}, but {path} does not exist"
        width, height = _png_size(path)
        assert width >= 600 and height >= 200
        from PIL import Image

        with Image.open(path) as image:
            image.verify()                      # a complete, uncorrupted PNG
    # Named for what it is (slice views of a fusion), not a panel capture it is not.
    assert all("panel" not in url.lower() for url in urls)


def _functions(tree):
    """Module-level functions and methods of the module class, by name."""
    found = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for method in _class(tree, "MedFusion").body:
        if isinstance(method, ast.FunctionDef):
            found[f"MedFusion.{method.name}"] = method
    return found


def _startup_code(tree):
    """What runs when Slicer starts: module-level statements, MedFusion.__init__ and everything connected
    to startupCompleted(), with every function of MedFusion.py they call (transitively)."""
    functions = _functions(tree)
    reached, todo = [], [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    todo.append(functions["MedFusion.__init__"])
    seen = set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        reached.append(node)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Call):
                name = ast.unparse(inner.func)
                targets = [name, name.replace("self.", "MedFusion.")]
                if name.endswith(".connect") and inner.args and ast.literal_eval(inner.args[0]) == "startupCompleted()":
                    targets.append(ast.unparse(inner.args[1]).replace("self.", "MedFusion."))
                todo += [functions[t] for t in targets if t in functions]
    return reached


def test_slicer_start_up_imports_nothing_of_the_library():
    tree = _module_ast()
    reached = _startup_code(tree)
    names = {getattr(n, "name", None) for n in reached}
    assert {"__init__", "registerSampleData"} <= names      # the hook is followed
    assert "_registeredMethods" not in names and "_loadLibrary" not in names
    for node in reached:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                modules = [a.name for a in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                modules = [inner.module or ""]
            else:
                continue
            assert not [m for m in modules if m.split(".")[0] in HEAVY], (getattr(node, "name", "<module>"), modules)
    # The hook registers the sample data only; the method list is built by the panel's set-up, which
    # gives the module (not the widget) the full help text.
    widget = _class(tree, "MedFusionWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert "self._loadLibrary()" in ast.unparse(methods["setup"])
    load = ast.unparse(methods["_loadLibrary"])
    assert "_registeredMethods()" in load and "self._setModuleHelpText(options.helpText(specs, families))" in load
    setter = ast.unparse(methods["_setModuleHelpText"])
    assert "slicer.util.getModule(self.moduleName)" in setter and "module.helpText = _(text)" in setter
    assert "self.parent.helpText" not in ast.unparse(widget)      # the widget's parent is not the module


def test_install_button_asks_first_and_cannot_nest():
    tree = _module_ast()
    widget = _class(tree, "MedFusionWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    install = methods["onInstallDependencies"]
    calls = [c for c in ast.walk(install) if isinstance(c, ast.Call) and ast.unparse(c.func) == "self._installSession.run"]
    assert len(calls) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords["ask"] == "dependencies.confirmInstall"
    assert keywords["busy"] == "slicer.util.WaitCursor"
    assert "interactive=False" in keywords["install"]              # the question was asked by the session
    assert keywords["refresh"] == "self._refreshAfterInstall"
    assert "self._loadLibrary()" in ast.unparse(methods["_refreshAfterInstall"])
    # The session drives the Install button.
    assert "InstallSession(lambda enabled: setattr(self.ui.installDependenciesButton, 'enabled', enabled))" in \
        ast.unparse(methods["setup"])
    # Nowhere does a dialog (or an installation that asks) run under the wait cursor.
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and "WaitCursor" in ast.unparse(node.items[0].context_expr):
            body = ast.unparse(node)
            assert "confirm" not in body and "errorDisplay" not in body and "interactive=True" not in body
            assert "ensureDependencies(interactive=False)" in body or "ensureDependencies" not in body


# registerCustomSampleDataSource's keyword arguments (Slicer/Modules/Scripted/SampleData/SampleData.py).
SAMPLE_DATA_KEYWORDS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                        "thumbnailFileName", "loadFileType", "loadFiles", "loadFileProperties", "checksums"}


def test_phantom_is_registered_as_sample_data_at_start_up():
    from MedFusionModuleLib import sampledata

    tree = _module_ast()
    functions = _functions(tree)
    init = ast.unparse(functions["MedFusion.__init__"])
    assert "slicer.app.connect('startupCompleted()', registerSampleData)" in init
    register = ast.unparse(functions["registerSampleData"])
    assert "SampleData.SampleDataLogic.registerCustomSampleDataSource(**sampledata.sampleDataSource(" in register
    assert "loadPhantomSampleData" in register and "'Resources', 'Icons'" in register
    loader = ast.unparse(functions["loadPhantomSampleData"])
    assert "sampledata.loadHeadPhantom(slicer.mrmlScene)" in loader
    arguments = sampledata.sampleDataSource(os.path.join(MODULE_DIR, "Resources", "Icons"), print)
    assert set(arguments) <= SAMPLE_DATA_KEYWORDS
    assert arguments["sampleName"] == "MedFusion head phantom: CT, MRI, PET"
    # SampleDataSource needs equal lengths; nothing is downloaded for a computed data set.
    assert arguments["uris"] == arguments["fileNames"] == arguments["nodeNames"] == []
    assert arguments["customDownloader"] is print
    assert _png_size(arguments["thumbnailFileName"]) == (128, 128)


def test_side_by_side_button_is_wired():
    assert "sideBySideButton" in _widgets(_ui())
    tree = _module_ast()
    widget = _class(tree, "MedFusionWidget")
    methods = {f.name: ast.unparse(f) for f in widget.body if isinstance(f, ast.FunctionDef)}
    assert "self.ui.sideBySideButton.connect('clicked(bool)', self.onSideBySideButton)" in methods["setup"]
    assert "self.logic.checkSideBySide(" in methods["_checkCanApply"]
    assert "self.ui.sideBySideButton.enabled = sideBySideReason is None" in methods["_checkCanApply"]
    handler = methods["onSideBySideButton"]
    assert "self.logic.showSideBySide(" in handler and "slicer.util.resetSliceViews()" in handler


def test_self_test_skips_the_learned_case_instead_of_installing_pytorch():
    tree = _module_ast()
    test = _class(tree, "MedFusionTest")
    methods = {f.name: ast.unparse(f) for f in test.body if isinstance(f, ast.FunctionDef)}
    assert "dependencies.selfTestPlan(testing=slicer.app.testingEnabled())" in methods["_prepare"]
    assert ("dependencies.ensureInstalled(interactive=self.plan.interactive, learned=self.plan.installLearned)"
            in methods["_prepare"])
    assert "ensureDependencies" not in methods["_prepare"]
    learned = next(f for f in test.body if isinstance(f, ast.FunctionDef) and f.name == "test_MedFusionLearned")
    guard = next(s for s in learned.body if isinstance(s, ast.If))
    assert ast.unparse(guard.test) == "not self.plan.runLearned"
    assert isinstance(guard.body[-1], ast.Return) and "self.plan.skipReason" in ast.unparse(guard)
    # The guard comes before any learned method is looked up or run.
    assert learned.body.index(guard) < min(i for i, s in enumerate(learned.body) if "learnedMethods" in ast.unparse(s))
