"""Reading a model file's bytes with one-line errors, for every importer (ONNX, TFLite)."""

from __future__ import annotations

from pathlib import Path

from stowage.errors import ModelError


def read_model_bytes(p: Path, kind: str) -> bytes:
    """The bytes of model file ``p``; ``kind`` (``"an .onnx"``, ``"a .tflite"``) names what a
    directory given by mistake should have been."""
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelError(f"model path is a directory, not {kind} file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror}") from None
    if not data:
        raise ModelError(f"model file is empty: {p}")
    return data


__all__ = ["read_model_bytes"]
