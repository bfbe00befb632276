"""Install the Python packages LoRA Embedding needs into the host's environment.

Stable Diffusion WebUI (AUTOMATIC1111 and Forge) runs an extension's
``install.py`` at every start, from the WebUI folder, with its ``launch``
module importable; it ignores ``requirements.txt``. ComfyUI-Manager installs
``requirements.txt`` itself and then runs this file from the pack's folder.

Every package named in ``requirements.txt`` that is not installed yet is
installed with WebUI's ``launch.run_pip`` when it exists, else with
``python -m pip``. Installed packages are never upgraded, and torch,
torchvision and torchaudio are never installed: the host brings its own
build, and pip would otherwise download a multi-GB CUDA build.
"""

import importlib.metadata
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile

logger = logging.getLogger("lora_embedding.install")

REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")

NEVER_INSTALLED = {"torch", "torchvision", "torchaudio"}

# Import names of distributions whose name differs from the module they provide.
IMPORT_NAMES = {"scikit-learn": "sklearn", "pillow": "PIL", "pyyaml": "yaml", "opencv-python": "cv2"}

# Packages whose installed version a new install must keep, so that pip
# resolves new packages around the host's numpy and torch.
PINNED_WHEN_PRESENT = ("numpy", "torch", "torchvision", "torchaudio")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def read_requirements(path=REQUIREMENTS):
    """Return ``[(distribution name, requirement line)]`` from a requirements file.

    Comments, blank lines and pip options (lines starting with ``-``) are skipped.
    """
    requirements = []
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = _NAME.match(line)
            if match:
                requirements.append((match.group(1).lower().replace("_", "-"), line))
    return requirements


def _host_launch_module():
    try:
        import launch
    except ImportError:
        return None
    return launch if hasattr(launch, "run_pip") else None


def is_installed(name, launch=None):
    """Return True when distribution ``name`` is installed or its module can be imported."""
    if launch is not None and hasattr(launch, "is_installed") and launch.is_installed(name):
        return True
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    module = IMPORT_NAMES.get(name, name.replace("-", "_"))
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _constraints_file():
    """Write the installed versions of numpy and torch as pip constraints; return the file path."""
    lines = []
    for name in PINNED_WHEN_PRESENT:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    handle = tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="lora-embedding-constraints-", delete=False)
    with handle:
        handle.write("\n".join(lines) + "\n")
    return handle.name


def install(requirement, constraints, launch=None):
    """Install one requirement line with WebUI's ``run_pip`` or ``python -m pip``."""
    if launch is not None:
        launch.run_pip(f'install "{requirement}" -c "{constraints}"', f"{requirement} for LoRA Embedding")
        return
    subprocess.run([sys.executable, "-m", "pip", "install", requirement, "-c", constraints], check=True)


def missing_requirements(path=REQUIREMENTS, launch=None):
    """Return the requirement lines of ``path`` that need installing, without torch."""
    return [line for name, line in read_requirements(path)
            if name not in NEVER_INSTALLED and not is_installed(name, launch)]


def main():
    """Install what is missing; return 0, or 1 when an install failed."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    launch = _host_launch_module()
    missing = missing_requirements(REQUIREMENTS, launch)
    if not missing:
        return 0

    constraints = _constraints_file()
    status = 0
    try:
        for requirement in missing:
            logger.info("installing %s", requirement)
            try:
                install(requirement, constraints, launch)
            except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
                logger.error("installing %s failed: %s; install it by hand into this Python (%s)",
                             requirement, exc, sys.executable)
                status = 1
    finally:
        os.unlink(constraints)
    return status


if __name__ == "__main__":
    sys.exit(main())
