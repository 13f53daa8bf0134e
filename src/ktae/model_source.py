"""What a ``--model`` argument points at, the same for every command: a local folder, a local GGUF file, or a
Hugging Face Hub id; and errors that say which was tried.

    source = resolve_model_source("runs/x/final")     # ValueError: no such local folder, not a Hub id either
    source = resolve_model_source("SmolLM2-135M-Instruct.Q4_1.gguf")   # kind "gguf": folder "." + file name
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["ModelSource", "resolve_model_source", "explain_load_error"]

# Hub repo ids: "name" or "owner/name" (letters, digits, '-', '_', '.'), as huggingface_hub validates them.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``--model``.

    ``kind``: ``"folder"`` (a local Hugging Face folder), ``"gguf"`` (a local ``.gguf`` file, or a GGUF file name
    inside a folder or Hub repo) or ``"hub"`` (a Hub id). ``name`` is what ``from_pretrained`` gets (the folder,
    the GGUF file's folder, or the Hub id); ``gguf_file`` the GGUF file name ('' otherwise); ``given`` the
    argument as the user wrote it.
    """

    kind: str
    name: str
    gguf_file: str
    given: str

    @property
    def label(self) -> str:
        """A short name for tables and folders: the folder's or file's name, or the Hub id's last part."""
        base = self.gguf_file or os.path.basename(os.path.normpath(self.name)) or self.name
        return base[: -len(".gguf")] if base.lower().endswith(".gguf") else base


def resolve_model_source(model: str, gguf_file: str = "", option: str = "--model") -> ModelSource:
    """Decide what ``model`` is, without loading anything.

    Args:
        model: a local folder, a ``.gguf`` file, or a Hub id.
        gguf_file: a GGUF file name inside ``model`` (a folder or Hub repo), '' for none.
        option: the option's name for messages.

    Raises:
        ValueError: a ``.gguf`` path that does not exist, a file that is not a GGUF file, a folder without a
            model in it, or a path that is not a folder here and cannot be a Hub id (the message says both).
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"{option}: expected a local folder, a .gguf file or a Hub id, got {model!r}")
    path = os.path.expanduser(model)
    if gguf_file:
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, gguf_file)):
            raise ValueError(f"{option}: no GGUF file {gguf_file!r} in folder {model!r}")
        return ModelSource("gguf", path if os.path.isdir(path) else model, gguf_file, model)
    if path.lower().endswith(".gguf"):
        if not os.path.isfile(path):
            raise ValueError(f"{option}: no such GGUF file {model!r}")
        return ModelSource("gguf", os.path.dirname(os.path.abspath(path)), os.path.basename(path), model)
    if os.path.isdir(path):
        names = os.listdir(path)
        if "config.json" not in names:
            ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
            hint = f"; it holds {ggufs[0]!r}: give that file" if ggufs else ""
            raise ValueError(f"{option}: folder {model!r} holds no model (no config.json){hint}")
        return ModelSource("folder", path, "", model)
    if os.path.isfile(path):
        raise ValueError(f"{option}: {model!r} is a file, but not a .gguf file; give a model folder, a .gguf file "
                         "or a Hub id")
    if not _HUB_ID.match(model):
        raise ValueError(
            f"{option}: there is no folder {model!r} (looked in {os.getcwd()}), and it cannot be a Hugging Face "
            "Hub id either (those are 'name' or 'owner/name'); check the path"
        )
    return ModelSource("hub", model, "", model)


def explain_load_error(source: ModelSource, error: BaseException, option: str = "--model") -> ValueError:
    """A ValueError for a failed ``from_pretrained``: for a Hub id, that no local folder of that name exists and
    what the Hub said."""
    if source.kind == "hub":
        return ValueError(
            f"{option} {source.given!r}: there is no local folder of that name, so it was tried as a Hugging Face "
            f"Hub id, which failed: {error}"
        )
    return ValueError(f"{option} {source.given!r}: could not load the model: {error}")
