"""safetensors files: atomic ``save`` and a strictly validating ``load``.

The format is an 8-byte little-endian header length, a JSON header mapping
each name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional
``"__metadata__"`` of strings), then the raw little-endian data. Files written
here are read by ``safetensors.torch``/``safetensors.numpy`` and files they
write are read here; bfloat16 and float16 keep their bytes exactly.

``load`` trusts nothing in the file: every header field, offset and size is
checked before any data is read, and it never allocates more than the file's
own size.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np

from . import dtypes as D
from .backends import backend
from .device import as_device
from .errors import TritonnnError
from .tensor import Tensor

MAX_HEADER = 100 * 1024 * 1024


def _fspath(op, path):
    """``path`` as a str, or a clear error for what cannot be a file name."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TritonnnError(f"{op}: path must be a str or os.PathLike, got "
                            f"{type(path).__name__}") from None
    if "\0" in path:
        raise TritonnnError(f"{op}: path {path!r} contains a NUL character")
    return path


def _tensor_bytes(name, t):
    if not isinstance(t, Tensor):
        raise TritonnnError(f"save: value for {name!r} is a {type(t).__name__}, not a tensor")
    a = np.ascontiguousarray(t.detach()._backend.to_numpy(t._data))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return D.SAFETENSORS_NAME[t.dtype], list(t.shape), a


def save(tensors, path, metadata=None):
    """Write a name -> tensor dict to ``path`` atomically: a crash never leaves a half file."""
    path = _fspath("save", path)
    if not isinstance(tensors, dict):
        raise TritonnnError(f"save: expected a dict of name -> tensor, got {type(tensors).__name__}")
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TritonnnError("save: metadata must be a dict of str -> str")
    header, arrays, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise TritonnnError(f"save: invalid tensor name {name!r}")
        dt, shape, a = _tensor_bytes(name, tensors[name])
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)                      # data starts 8-byte aligned
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise TritonnnError(f"save: {path!r} is a directory")
    if not os.path.isdir(folder):
        raise TritonnnError(f"save: folder {folder!r} for {path!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise TritonnnError(f"save: cannot write to {folder!r}: {e.strerror}") from None
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)))
            f.write(hdr)
            for a in arrays:
                f.write(memoryview(a.reshape(-1).view(np.uint8)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise TritonnnError(f"save: writing {path!r} failed: {e.strerror or e}") from None
        raise
    try:   # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _file_mode(path):
    """The mode the saved file gets: the old file's, else what ``open()`` would give (umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _bad(path, why):
    return TritonnnError(f"load: {path!r} is not a valid safetensors file: {why}")


def read_header(path, f, size):
    """The validated header dict and the data section's start; raises naming ``path``."""
    if size < 8:
        raise _bad(path, f"file is {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER:
        raise _bad(path, f"header length {n} exceeds the {MAX_HEADER}-byte limit")
    if n > size - 8:
        raise _bad(path, f"header length {n} runs past the end of the {size}-byte file")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad(path, "header is not valid UTF-8 JSON") from None
    except RecursionError:
        raise _bad(path, "header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise _bad(path, f"header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise _bad(path, "__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(path, f"entry {name!r} must have exactly dtype, shape and data_offsets")
        dt = D.FROM_SAFETENSORS.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dt is None:
            raise _bad(path, f"entry {name!r} has unsupported dtype {info['dtype']!r}")
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise _bad(path, f"entry {name!r} has invalid shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1] <= data_len):
            raise _bad(path, f"entry {name!r} has data_offsets {offs!r} outside the "
                             f"{data_len}-byte data section")
        count = 1
        for s in shape:
            count *= s
        if count * dt.itemsize != offs[1] - offs[0]:
            raise _bad(path, f"entry {name!r}: shape {shape} of {dt} needs {count * dt.itemsize} "
                             f"bytes but data_offsets span {offs[1] - offs[0]}")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            what = "overlaps the previous tensor" if start < pos else f"leaves a gap at byte {pos}"
            raise _bad(path, f"entry {name!r} {what}")
        pos = end
    if pos != data_len:
        raise _bad(path, f"tensors cover {pos} bytes of the {data_len}-byte data section")
    return header, meta, 8 + n


def load(path, device="cpu"):
    """A dict name -> tensor from a safetensors file, on ``device``."""
    path = _fspath("load", path)
    dev = as_device(device)
    if os.path.isdir(path):
        raise TritonnnError(f"load: {path!r} is a directory, not a safetensors file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TritonnnError(f"load: cannot open {path!r}: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        header, _meta, base = read_header(path, f, size)
        B = backend(dev)
        out = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dt = D.FROM_SAFETENSORS[info["dtype"]]
            start, end = info["data_offsets"]
            a = np.empty(end - start, dtype=np.uint8)
            f.seek(base + start)
            if f.readinto(memoryview(a)) != end - start:
                raise _bad(path, f"file ended inside entry {name!r}")
            arr = a.view(dt.np).reshape(info["shape"])
            buf = arr if dev.type == "cpu" else B.from_numpy(arr, dt)
            out[name] = Tensor._make(buf, dt, dev, B)
    return dict((k, out[k]) for k in header)


def load_metadata(path):
    """The ``__metadata__`` dict of a safetensors file (empty when it has none)."""
    path = _fspath("load_metadata", path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TritonnnError(f"load_metadata: cannot open {path!r}: {e.strerror}") from None
    with f:
        _, meta, _ = read_header(path, f, os.fstat(f.fileno()).st_size)
    return meta or {}
