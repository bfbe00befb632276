"""Minimal stand-ins for the ComfyUI modules the node pack imports, registered in ``sys.modules``.

They implement only what the pack calls: ``folder_paths`` over real folders,
``comfy.utils`` (``ProgressBar``, ``load_torch_file``), ``comfy.sd``
(``load_lora_for_models``, recorded), ``comfy.model_management`` (the cancel
flag) and enough of ``comfy_api.latest`` (``io``, ``ui``, ``ComfyExtension``)
to build and run V3 nodes. Each fake records its calls for assertions.
"""

import os
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LORA_ENDINGS = (".safetensors", ".pt", ".ckpt", ".bin", ".pth")


class FakeComfy:
    """The fake modules of one test, with the state they record.

    Attributes
    ----------
    roots : list of str
        The ``loras`` folders ``folder_paths`` reports.
    user_dir : str
    progress : list of (int, int)
        Every ``ProgressBar.update_absolute`` call as ``(value, total)``.
    lora_calls : list of dict
        Every ``load_lora_for_models`` call.
    interrupted : bool
        The cancel flag; set it to simulate the user pressing Cancel.
    """

    def __init__(self, roots, user_dir):
        self.roots = [str(root) for root in roots]
        self.user_dir = str(user_dir)
        self.progress = []
        self.lora_calls = []
        self.interrupted = False
        self.modules = self._build()

    # folder_paths ------------------------------------------------------------

    def _filename_list(self, folder):
        assert folder == "loras", folder
        names = set()
        for root in self.roots:
            for parent, _, files in os.walk(root):
                for name in files:
                    if name.lower().endswith(LORA_ENDINGS):
                        names.add(os.path.relpath(os.path.join(parent, name), root))
        return sorted(names)

    def _full_path(self, folder, name):
        for root in self.roots:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                return path
        return None

    def _folder_paths(self):
        module = types.ModuleType("folder_paths")
        module.get_folder_paths = lambda folder: list(self.roots)
        module.get_filename_list = self._filename_list
        module.get_full_path = self._full_path
        module.get_user_directory = lambda: self.user_dir
        return module

    # comfy.* -------------------------------------------------------------------

    def _comfy(self):
        fake = self

        class InterruptProcessingException(Exception):
            pass

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                fake.progress.append((value, total or self.total))
                if fake.interrupted:
                    fake.interrupted = False
                    raise InterruptProcessingException()

        def load_torch_file(path, safe_load=False):
            from safetensors.torch import load_file

            return load_file(path)

        def load_lora_for_models(model, clip, lora, strength_model, strength_clip):
            fake.lora_calls.append({"model": model, "clip": clip, "keys": sorted(lora),
                                    "strength_model": strength_model, "strength_clip": strength_clip})
            return ("patched", model), (("patched", clip) if clip is not None else None)

        def processing_interrupted():
            return fake.interrupted

        def throw_exception_if_processing_interrupted():
            if fake.interrupted:
                fake.interrupted = False
                raise InterruptProcessingException()

        comfy = types.ModuleType("comfy")
        comfy.__path__ = []
        utils = types.ModuleType("comfy.utils")
        utils.ProgressBar = ProgressBar
        utils.load_torch_file = load_torch_file
        sd = types.ModuleType("comfy.sd")
        sd.load_lora_for_models = load_lora_for_models
        management = types.ModuleType("comfy.model_management")
        management.InterruptProcessingException = InterruptProcessingException
        management.processing_interrupted = processing_interrupted
        management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        comfy.utils, comfy.sd, comfy.model_management = utils, sd, management
        return {"comfy": comfy, "comfy.utils": utils, "comfy.sd": sd, "comfy.model_management": management}

    # comfy_api.latest ------------------------------------------------------------

    def _comfy_api(self):
        io = types.ModuleType("comfy_api.latest.io")
        ui = types.ModuleType("comfy_api.latest.ui")

        class Socket:
            def __init__(self, id=None, **options):
                self.id = id
                self.options = options

        def socket_type(io_type):
            input_class = type("Input", (Socket,), {"io_type": io_type})
            output_class = type("Output", (Socket,), {"io_type": io_type})
            return type(io_type, (), {"Input": input_class, "Output": output_class, "io_type": io_type})

        for name, io_type in [("Combo", "COMBO"), ("Int", "INT"), ("Float", "FLOAT"), ("Boolean", "BOOLEAN"),
                              ("String", "STRING"), ("Image", "IMAGE"), ("Model", "MODEL"), ("Clip", "CLIP")]:
            setattr(io, name, socket_type(io_type))

        class Schema:
            def __init__(self, **fields):
                self.__dict__.update(fields)

        class ComfyNode:
            pass

        class NodeOutput:
            def __init__(self, *args, ui=None):
                self.args = args
                self.ui = ui

        io.Schema, io.ComfyNode, io.NodeOutput = Schema, ComfyNode, NodeOutput

        class PreviewText:
            def __init__(self, value):
                self.value = value

            def as_dict(self):
                return {"text": (self.value,)}

        class PreviewImage:
            def __init__(self, image, cls=None):
                self.shape = tuple(image.shape)

            def as_dict(self):
                return {"images": [{"shape": self.shape}]}

        ui.PreviewText, ui.PreviewImage = PreviewText, PreviewImage

        class ComfyExtension:
            pass

        package = types.ModuleType("comfy_api")
        package.__path__ = []
        latest = types.ModuleType("comfy_api.latest")
        latest.io, latest.ui, latest.ComfyExtension = io, ui, ComfyExtension
        package.latest = latest
        return {"comfy_api": package, "comfy_api.latest": latest}

    def _build(self):
        return {"folder_paths": self._folder_paths(), **self._comfy(), **self._comfy_api()}


def install(monkeypatch, roots, user_dir, v3=True):
    """Register fake ComfyUI modules for one test and return the :class:`FakeComfy`.

    The pack's ``nodes`` modules are dropped from ``sys.modules`` before and
    (through ``monkeypatch``) after the test, so each test imports them
    against its own fakes. With ``v3=False`` no ``comfy_api`` is installed,
    as on ComfyUI versions before the V3 API.
    """
    fake = FakeComfy(roots, user_dir)
    for name, module in fake.modules.items():
        if not v3 and name.startswith("comfy_api"):
            monkeypatch.setitem(sys.modules, name, None)
            continue
        monkeypatch.setitem(sys.modules, name, module)
    for name in list(sys.modules):
        if name == "nodes" or name.startswith("nodes."):
            monkeypatch.delitem(sys.modules, name)
    return fake


def make_library(folder, styles=3, runs=2):
    """Write ``styles × runs`` small SD1.5 LoRAs into ``folder/style<i>/run<j>.safetensors``.

    Files of one style share their up factors, so each file's nearest
    neighbour is the other run of its style. Returns the ComfyUI names.
    """
    from library_files import write_lora

    names = []
    for style in range(styles):
        (Path(folder) / f"style{style}").mkdir(parents=True, exist_ok=True)
        for run in range(runs):
            name = f"style{style}/run{run}.safetensors"
            write_lora(Path(folder) / name, style_seed=100 + style, run_seed=1000 + 10 * style + run)
            names.append(name)
    return names
