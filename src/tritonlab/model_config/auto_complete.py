"""Does Triton's auto-complete have anything to add to a repository? If not, the server can start without it.

With auto-complete on (Triton's default), loading a python-backend model first starts a stub of its own only to ask
``model.py`` for ``auto_complete_config``, and the python backend then waits a fixed second before it stops that stub
(``StubLauncher::UpdateHealth`` sleeps 1 s): every python model load costs about 1.3 s more. For a model whose
``config.pbtxt`` names the python backend and whose code defines no ``auto_complete_config``, that stub returns the
configuration unchanged, so ``--disable-auto-complete-config`` serves exactly the same configuration, sooner.
Anything else (another backend, whose auto-complete reads the model file; a missing or unreadable config; a model
with ``auto_complete_config``) keeps auto-complete on. A test loads the shipped repositories both ways and compares
the configurations Triton reports.
"""

from __future__ import annotations

from pathlib import Path

from tritonlab.model_config.validate import read_config


def adds_nothing(repository: str | Path) -> bool:
    """True if every model in ``repository`` is an ensemble or a python-backend model with a readable config.pbtxt
    and no ``auto_complete_config`` in its code; False if in doubt."""
    try:
        models = [p for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith(".")]
        for model in models:
            config = read_config(model)
            if config is None:
                return False  # Triton will say what is wrong, with auto-complete on as usual
            if config.platform == "ensemble" and not config.backend:
                continue
            if config.backend != "python" or config.platform:
                return False
            for code in model.rglob("*.py"):
                if "auto_complete_config" in code.read_text(errors="replace"):
                    return False
    except OSError:
        return False
    return bool(models)
