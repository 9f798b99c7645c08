"""safetensors files: atomic ``save`` and a strictly validating ``load``.

The format is an 8-byte little-endian header length, a JSON header mapping
each name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional
``"__metadata__"`` of strings), then the raw little-endian data. Files written
here are read by ``safetensors.torch``/``safetensors.numpy`` and files they
write are read here; bfloat16 and float16 keep their bytes exactly.

``save`` checks every name and value before it touches the disk, then writes a
temporary file beside the target and renames it over the target: the old file
stays whole until the new one is complete. A symlink is written through (the
file it ends at is replaced; the link stays a link, and a dangling link gets its
target created, as ``torch.save`` does); a directory, device, FIFO or socket is
refused, never replaced.

``load`` trusts nothing in the file: it reads only regular files (a FIFO or a
device is refused before it is opened), every header field, offset and size is
checked before any data is read, it never allocates more than the file's own
size, and a file in another format (``torch.save``'s zip or pickle, numpy,
text, ...) is named as such.

A checkpoint may nest (dicts with str or int keys, lists, tuples, numbers, bools, None,
strings around the tensors): its tensors are stored under dotted names
(``model.0.weight``) and the structure around them as JSON in the metadata; see *nested
checkpoints* below. A flat dict of name -> tensor is written exactly as before.
"""
from __future__ import annotations

import json
import math
import os
import stat
import struct
from collections.abc import Mapping

import numpy as np

from . import dtypes as D
from .backends import backend
from .device import as_device
from .errors import TritonnnError
from .tensor import Tensor

MAX_HEADER = 100_000_000        # safetensors' own limit: a longer header no reader accepts


# ------------------------------------------------------------------------------------------------
# paths
# ------------------------------------------------------------------------------------------------

def _fspath(op, path):
    """``path`` as a str, or a clear error for what cannot be a file name."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TritonnnError(f"{op}: path must be a str or os.PathLike, got "
                            f"{type(path).__name__}") from None
    if not path:
        raise TritonnnError(f"{op}: path is empty")
    if "\0" in path:
        raise TritonnnError(f"{op}: path {path!r} contains a NUL character")
    return path


def _kind(mode):
    """What a non-regular file is, in words."""
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _save_target(path):
    """The file ``save`` replaces (symlinks resolved) and its stat, None when it is new.

    Refuses, naming ``path``, anything but a regular file or a free name in an existing folder.
    """
    target = os.path.realpath(path)
    linked = os.path.islink(path) and target != os.path.abspath(path)   # a loop stays unresolved
    shown = f"{path!r} (a symlink to {target!r})" if linked else repr(path)
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:           # a symlink loop, a folder we may not enter, a name too long
        raise TritonnnError(f"save: cannot write {shown}: {e.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise TritonnnError(f"save: {shown} is a directory, not a file")
    if os.path.basename(path) in ("", ".", ".."):     # "dir/" must not become a file "dir"
        raise TritonnnError(f"save: path {path!r} names a folder, not a file")
    if st is None:
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            raise TritonnnError(f"save: folder {folder!r} for {shown} does not exist")
    elif not stat.S_ISREG(st.st_mode):
        raise TritonnnError(f"save: {shown} is {_kind(st.st_mode)}; tn.save writes regular "
                            f"files only and never replaces a device, FIFO or socket")
    return target, st


_TEMP_SUFFIX = len(".") + 8 + len(".tmp")      # "." + 8 random hex digits + ".tmp"


def _create_temp(folder, name, path, mode):
    """A new, empty file ``.<name>.<random>.tmp`` in ``folder`` with ``mode`` (less the
    umask, as ``open`` applies it): (fd, its path).

    ``name`` is cut (at a character boundary) so the temporary name stays within the
    folder's limit on name length, whatever the length of ``name``.
    """
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if limit is None or limit <= 0:
        limit = 255
    raw = os.fsencode(name)
    keep = max(min(len(raw), limit - 1 - _TEMP_SUFFIX), 0)
    while 0 < keep < len(raw) and raw[keep] & 0xC0 == 0x80:    # not inside a UTF-8 character
        keep -= 1
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, os.fsdecode(b"." + raw[:keep] + b"." +
                                               os.urandom(4).hex().encode() + b".tmp"))
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise TritonnnError(f"save: cannot write to {folder!r} (saving {path!r}): "
                                f"{e.strerror}") from None
    raise TritonnnError(f"save: cannot write to {folder!r} (saving {path!r}): no free "
                        f"temporary file name")


def _open_regular(op, path):
    """``path`` opened for reading, and its size; anything but a regular file is refused.

    The type is checked with ``stat`` before opening, so a FIFO or a device is never opened
    (opening a FIFO blocks until a writer comes); the open itself is non-blocking and checked
    again, in case the file was swapped in between.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise TritonnnError(f"{op}: cannot open {path!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TritonnnError(f"{op}: {path!r} is {_kind(st.st_mode)}, not a safetensors file")
    nonblock = getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise TritonnnError(f"{op}: cannot open {path!r}: {e.strerror}") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise TritonnnError(f"{op}: {path!r} is {_kind(st.st_mode)}, not a safetensors file")
    if nonblock:
        os.set_blocking(fd, True)
    return f, st.st_size


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------

def _typename(x):
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _short(x, width=60):
    try:
        r = repr(x)
    except Exception:                  # noqa: BLE001  (a hostile key's repr may raise anything)
        return f"<{_typename(x)}>"
    return r if len(r) <= width else r[:width - 3] + "..."


def _utf8(s):
    """Whether ``s`` can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tensor_bytes(t):
    a = np.ascontiguousarray(t.detach()._backend.to_numpy(t._data))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return D.SAFETENSORS_NAME[t.dtype], list(t.shape), a


def save(obj, path, metadata=None):
    """Write ``obj`` to ``path`` atomically: a crash never leaves a half file.

    ``obj`` is a dict of name -> tensor (a ``state_dict``), or a checkpoint that nests
    dicts (str or int keys), lists and tuples of tensors, numbers, bools, None and strings;
    see *nested checkpoints* below. ``metadata`` (str -> str) goes into the header.
    A symlink at ``path`` is written through: the file it finally points at is replaced (a
    dangling link gets its target created, as ``torch.save`` does) and the link stays.
    """
    path = _fspath("save", path)
    try:
        tensors, structure = _contents(obj, metadata)
    except _Refused as e:
        raise TritonnnError(f"save: {e} (nothing written to {path!r})") from None
    target, old = _save_target(path)
    header, arrays, offset = {}, [], 0
    if metadata or structure:
        header["__metadata__"] = dict(metadata or {})
        if structure:
            header["__metadata__"][STRUCTURE_KEY] = structure
    for name in sorted(tensors):
        dt, shape, a = _tensor_bytes(tensors[name])
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)                      # data starts 8-byte aligned
    if len(hdr) > MAX_HEADER:
        raise TritonnnError(f"save: the header for {path!r} ({len(tensors)} names) would take "
                            f"{len(hdr)} bytes, over the {MAX_HEADER}-byte limit of safetensors "
                            f"readers")
    folder = os.path.dirname(target)
    # a new file gets what open() gives (0o666 less the umask, applied by the kernel: reading
    # the umask would change it for every thread for a moment); a replaced one keeps its mode
    fd, tmp = _create_temp(folder, os.path.basename(target), path, 0o666 if old is None else 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            if old is not None:
                _copy_owner_and_mode(f.fileno(), old)
            f.write(struct.pack("<Q", len(hdr)))
            f.write(hdr)
            for a in arrays:
                f.write(memoryview(a.reshape(-1).view(np.uint8)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
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


def _copy_owner_and_mode(fd, old):
    """Give the new file the old one's mode (and owner, where allowed)."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (old.st_uid, old.st_gid) and hasattr(os, "fchown"):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except OSError:           # only root may give a file away: the saver keeps it
            pass
    os.fchmod(fd, old.st_mode & 0o7777)


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------

def _bad(op, path, why):
    return TritonnnError(f"{op}: {path!r} is not a valid safetensors file: {why}")


_FROM_TORCH = ("load it with torch.load, convert the tensors with tn.tensor and write them "
               "with tn.save")
# pickle protocol 2, then the long int torch.save writes first: 0x1950a86a20f9469cfc6c
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
_MAGIC = (    # (leading bytes, what the file looks like)
    (b"\x93NUMPY", "a numpy .npy file; load it with numpy.load, convert it with tn.tensor"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5?)"),
    (b"GGUF", "a GGUF file (llama.cpp)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
)


def _foreign_format(lead):
    """What the file starting with ``lead`` is, when it is a known other format, else None."""
    if lead.startswith(b"PK\x03\x04"):
        name_len = int.from_bytes(lead[26:28], "little")
        first = lead[30:30 + name_len]
        if first.endswith(b".pkl"):
            return ("this looks like a torch.save file (a zip archive with a pickle inside); "
                    + _FROM_TORCH)
        if first.endswith(b".npy"):
            return "this looks like a numpy .npz archive; load it with numpy.load"
        return "this looks like a zip archive"
    if lead.startswith(_LEGACY_TORCH_MAGIC):
        return f"this looks like a torch.save file (the legacy pickle format); {_FROM_TORCH}"
    if len(lead) >= 2 and lead[0] == 0x80 and 2 <= lead[1] <= 5:
        return ("this looks like a Python pickle (pickle.dump, or an old torch.save); if "
                "torch.save wrote it, " + _FROM_TORCH)
    for magic, what in _MAGIC:
        if lead.startswith(magic):
            return f"this looks like {what}"
    return _text_format(lead)


def _text_format(lead):
    """"a text file" when ``lead`` reads as printable UTF-8, else None."""
    try:
        text = lead.decode("utf-8")
    except UnicodeDecodeError as e:          # a character cut at the end of ``lead`` is text too
        text = lead[:e.start].decode("utf-8") if e.start >= len(lead) - 3 else None
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        return f"this looks like a text file (it starts with {_short(text[:40], 48)})"
    return None


def read_header(path, f, size, op="load"):
    """The validated header dict and the data section's start; raises naming ``op`` and ``path``."""
    if size == 0:
        raise _bad(op, path, "the file is empty (0 bytes)")
    lead = f.read(512)
    # A JSON header starts "{" (perhaps after blanks): such a file is taken for safetensors,
    # broken or not, even where its length bytes happen to spell another format's magic.
    foreign = not (len(lead) > 8 and lead[8] in b"{ \t\n\r") and _foreign_format(lead)
    if foreign:
        raise _bad(op, path, foreign)
    if size < 8:
        raise _bad(op, path, f"file is {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", lead[:8])
    if n > MAX_HEADER:      # text has no 0 byte, so its "length" is always far over the limit
        raise _bad(op, path, _text_format(lead) or
                   f"header length {n} exceeds the {MAX_HEADER}-byte limit")
    if n > size - 8:
        raise _bad(op, path, f"header length {n} runs past the end of the {size}-byte file")
    f.seek(8)
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _bad(op, path, "header is not valid UTF-8 JSON") from None
    except RecursionError:
        raise _bad(op, path, "header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise _bad(op, path, f"header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise _bad(op, path, "__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(op, path, f"entry {name!r} must have exactly dtype, shape and "
                                 f"data_offsets")
        dt = D.FROM_SAFETENSORS.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dt is None:
            raise _bad(op, path, f"entry {name!r} has unsupported dtype {info['dtype']!r}")
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise _bad(op, path, f"entry {name!r} has invalid shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)
                and 0 <= offs[0] <= offs[1] <= data_len):
            raise _bad(op, path, f"entry {name!r} has data_offsets {offs!r} outside the "
                                 f"{data_len}-byte data section")
        count = 1
        for s in shape:
            count *= s
        if count * dt.itemsize != offs[1] - offs[0]:
            raise _bad(op, path, f"entry {name!r}: shape {shape} of {dt} needs "
                                 f"{count * dt.itemsize} bytes but data_offsets span "
                                 f"{offs[1] - offs[0]}")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            what = "overlaps the previous tensor" if start < pos else f"leaves a gap at byte {pos}"
            raise _bad(op, path, f"entry {name!r} {what}")
        pos = end
    if pos != data_len:
        raise _bad(op, path, f"tensors cover {pos} bytes of the {data_len}-byte data section")
    return header, meta, 8 + n


def load(path, device="cpu"):
    """A dict name -> tensor from a safetensors file, on ``device``; for a nested checkpoint,
    the structure ``save`` was given (int keys, tuples, numbers, ... as they were)."""
    path = _fspath("load", path)
    dev = as_device(device)
    f, size = _open_regular("load", path)
    with f:
        header, meta, base = read_header(path, f, size)
        root = _structure(path, meta, header)         # checked before any tensor is read
        B = backend(dev)
        out = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            dt = D.FROM_SAFETENSORS[info["dtype"]]
            start, end = info["data_offsets"]
            a = np.empty(end - start, dtype=np.uint8)
            f.seek(base + start)
            if f.readinto(memoryview(a)) != end - start:
                raise _bad("load", path, f"file ended inside entry {name!r}")
            arr = a.view(dt.np).reshape(info["shape"])
            buf = arr if dev.type == "cpu" else B.from_numpy(arr, dt)
            out[name] = Tensor._make(buf, dt, dev, B)
    if root is not None:
        return _build(root, out)
    return dict((k, out[k]) for k in header)


def load_metadata(path):
    """The ``__metadata__`` dict of a safetensors file, as given to ``save`` (empty when it
    has none; a nested checkpoint's structure is left out)."""
    path = _fspath("load_metadata", path)
    f, size = _open_regular("load_metadata", path)
    with f:
        _, meta, _ = read_header(path, f, size, "load_metadata")
    meta = dict(meta or {})
    meta.pop(STRUCTURE_KEY, None)
    return meta


# ------------------------------------------------------------------------------------------------
# nested checkpoints: the structure around the tensors, as JSON in the metadata
# ------------------------------------------------------------------------------------------------
#
# A flat dict of str -> tensor is written as it always was. Anything else (dicts with str or
# int keys, lists, tuples, numbers, bools, None and strings, nested) is split in two: each
# tensor goes into the file under the dotted path of keys that leads to it
# ("model.0.weight", "optim.state.0.exp_avg"), and the structure, as JSON text, into the
# header's ``__metadata__`` under STRUCTURE_KEY (safetensors' metadata maps str to str):
#
#   {"version": 1, "root": NODE}
#   NODE = null | true | false | an int | a finite float | a str
#        | [NODE, ...]                         a list
#        | {"tuple": [NODE, ...]}
#        | {"dict": [[KEY, NODE], ...]}        KEY a str or an int, in the dict's order
#        | {"tensor": NAME}                    the tensor stored under NAME
#        | {"float": "0x7ff8000000000000"}     a NaN or an infinity: its 64 bits, in hex
#
# The structure names each tensor, so a name is never parsed back into keys; two paths that
# would give one name (a key "a.b" beside a key "a" holding "b") are refused on save. A finite
# float is written by ``repr`` (the shortest text that reads back to the same bits, -0.0
# included); ints keep any size Python's own int <-> str conversion allows.

STRUCTURE_KEY = "tritonnn.structure"
STRUCTURE_VERSION = 1
MAX_DEPTH = 64            # containers inside containers, on save and on load


class _Refused(Exception):
    """Why ``save`` cannot write what it was given (it adds the path)."""


_KINDS = "tensors, numbers, bools, None, strings, lists, tuples and dicts"


def _located(path):
    return "the top level" if not path else repr(".".join(map(str, path)))


def _value_problem(x, path):
    """Why ``x`` (at ``path``) cannot go into a checkpoint."""
    t = _typename(x)
    if not path:
        what = "a single tensor (save {'name': t})" if isinstance(x, Tensor) else f"a {t}"
        return f"expected a dict, list or tuple (a state_dict or a checkpoint), got {what}"
    if type(x).__module__.split(".")[0] in ("numpy", "torch"):
        scalar = isinstance(x, np.generic)
        hint = "convert it with float(), int() or bool()" if scalar else \
            "convert it with tn.tensor"
        return f"value for {_located(path)} is a {t}, not a tritonnn tensor ({hint})"
    return f"value for {_located(path)} is a {t}; a checkpoint holds {_KINDS}"


def _key(k, path):
    """A dict key as written: str and int (and their subclasses) kept, anything else refused."""
    if isinstance(k, str):
        if not _utf8(k):
            raise _Refused(f"key {k!r} in {_located(path)} is not valid Unicode (names are UTF-8)")
        return str(k)
    if isinstance(k, int) and not isinstance(k, bool):
        return int(k)
    raise _Refused(f"keys must be str or int, got a key of type {_typename(k)}: {_short(k)} "
                   f"(in the dict at {_located(path)})")


def _encode(x, path, tensors, open_containers):
    """The JSON node of ``x`` (at ``path``, a list of keys); tensors go into ``tensors``."""
    if isinstance(x, Tensor):
        name = ".".join(map(str, path))
        if name == "__metadata__":
            raise _Refused("the name '__metadata__' is reserved for the metadata; pass "
                           "metadata=... instead")
        if not _utf8(name):
            raise _Refused(f"tensor name {name!r} is not valid Unicode (safetensors names are "
                           f"UTF-8)")
        if name in tensors:
            raise _Refused(f"two tensors would both be stored under the name {name!r} (a key "
                           f"with a '.' beside nested keys that spell the same path, or a str "
                           f"and an int key that read alike); rename one of them")
        tensors[name] = x
        return {"tensor": name}
    if x is None or isinstance(x, bool):
        return None if x is None else bool(x)
    if isinstance(x, int):
        x = int(x)
        try:
            str(x)
        except ValueError:        # over Python's limit on int <-> str conversion
            raise _Refused(f"the int at {_located(path)} has too many digits to write "
                           f"({x.bit_length()} bits)") from None
        return x
    if isinstance(x, float):
        x = float(x)
        if math.isfinite(x):
            return x
        return {"float": "0x%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]}
    if isinstance(x, str):
        if not _utf8(x):
            raise _Refused(f"the string at {_located(path)} is not valid Unicode")
        return str(x)
    if not isinstance(x, (Mapping, list, tuple)):
        raise _Refused(_value_problem(x, path))
    if id(x) in open_containers:
        raise _Refused(f"the {_typename(x)} at {_located(path)} contains itself")
    if len(path) >= MAX_DEPTH:
        raise _Refused(f"containers nest deeper than {MAX_DEPTH} levels at {_located(path)}")
    open_containers.add(id(x))
    if isinstance(x, Mapping):
        pairs = []
        for k, v in x.items():
            k = _key(k, path)
            pairs.append([k, _encode(v, path + [k], tensors, open_containers)])
        node = {"dict": pairs}
    else:
        items = [_encode(v, path + [i], tensors, open_containers) for i, v in enumerate(x)]
        node = items if isinstance(x, list) else {"tuple": items}
    open_containers.discard(id(x))
    return node


def _is_flat(obj):
    """A dict of str -> tensor: written exactly as before nested checkpoints existed."""
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _contents(obj, metadata):
    """``(name -> tensor, structure JSON text or None)`` for ``obj``; raises ``_Refused``
    when ``obj`` or ``metadata`` (str -> str) cannot be saved."""
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise _Refused(f"metadata must be a dict of str -> str, got {_typename(metadata)}")
        for k, v in metadata.items():
            if not isinstance(k, str):
                raise _Refused(f"metadata must map str to str; got a key of type "
                               f"{_typename(k)}: {_short(k)}")
            if not isinstance(v, str):
                raise _Refused(f"metadata must map str to str; the value for {k!r} is a "
                               f"{_typename(v)}")
            if not (_utf8(k) and _utf8(v)):
                raise _Refused(f"metadata {k!r}: {v!r} is not valid Unicode")
            if k == STRUCTURE_KEY:
                raise _Refused(f"the metadata key {STRUCTURE_KEY!r} is reserved for the "
                               f"checkpoint's structure")
    if not isinstance(obj, (Mapping, list, tuple)):
        raise _Refused(_value_problem(obj, []))
    tensors = {}
    root = _encode(obj, [], tensors, set())
    if _is_flat(obj):
        return tensors, None
    text = json.dumps({"version": STRUCTURE_VERSION, "root": root}, separators=(",", ":"),
                      allow_nan=False)
    return tensors, text


def _structure(path, meta, header):
    """The checked root node of a nested checkpoint's structure, None for a flat file.

    Checked before any tensor is read: valid JSON of the documented form, no deeper than
    MAX_DEPTH, every key a str or an int (none twice in one dict), and every tensor of the
    file named exactly once.
    """
    if not meta or STRUCTURE_KEY not in meta:
        return None
    where = f"its checkpoint structure (__metadata__[{STRUCTURE_KEY!r}])"
    try:
        doc = json.loads(meta[STRUCTURE_KEY])
    except RecursionError:
        raise _bad("load", path, f"{where} is nested too deeply") from None
    except ValueError:
        raise _bad("load", path, f"{where} is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"version", "root"}:
        raise _bad("load", path, f"{where} must be a JSON object with exactly 'version' and "
                                 f"'root'")
    if doc["version"] != STRUCTURE_VERSION or type(doc["version"]) is not int:
        raise _bad("load", path, f"{where} has version {_short(doc['version'])}; this tritonnn "
                                 f"reads version {STRUCTURE_VERSION} (a newer tritonnn wrote it?)")
    named = set()

    def fail(why):
        raise _bad("load", path, where + why)

    def shown(at):
        return "the root" + "".join(f"[{k!r}]" for k in at)

    def check(node, at):
        """``at``: the keys and indices leading to ``node`` (for errors, and its depth)."""
        if node is None or isinstance(node, (bool, int, float, str)):
            if isinstance(node, float) and not math.isfinite(node):
                fail(f": a NaN or infinity at {shown(at)} must be written as "
                     f"{{'float': '0x...'}}")
            return
        tag, body = next(iter(node.items())) if isinstance(node, dict) and len(node) == 1 \
            else (None, None)
        if tag == "tensor":
            if not isinstance(body, str) or body not in header:
                fail(f" refers to a tensor {_short(body)} that the file does not hold")
            if body in named:
                fail(f" refers to the tensor {body!r} twice")
            named.add(body)
            return
        if tag == "float":
            if not (isinstance(body, str) and len(body) == 18 and body[:2] == "0x" and
                    all(c in "0123456789abcdef" for c in body[2:])):
                fail(f": the float at {shown(at)} must be '0x' and 16 lowercase hex digits, "
                     f"got {_short(body)}")
            return
        if len(at) >= MAX_DEPTH:
            fail(f" nests containers deeper than {MAX_DEPTH} levels")
        if isinstance(node, list) or (tag == "tuple" and isinstance(body, list)):
            for i, v in enumerate(node if tag is None else body):
                check(v, at + (i,))
        elif tag == "dict" and isinstance(body, list):
            keys = set()
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    fail(f": each item of the dict at {shown(at)} must be a [key, value] pair")
                k = pair[0]
                if not (isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool))):
                    fail(f": the dict at {shown(at)} has a key {_short(k)}; keys are str or int")
                if k in keys:
                    fail(f": the dict at {shown(at)} has the key {_short(k)} twice")
                keys.add(k)
                check(pair[1], at + (k,))
        else:
            fail(f": the object at {shown(at)} must have exactly one of the keys 'tuple', "
                 f"'dict', 'tensor', 'float' (a list for 'tuple' and 'dict')")

    check(doc["root"], ())
    unnamed = [n for n in header if n not in named]
    if unnamed:
        raise _bad("load", path, f"{where} does not place the tensor(s) "
                                 f"{', '.join(map(repr, unnamed[:5]))}"
                                 f"{' ...' if len(unnamed) > 5 else ''}")
    return doc["root"]


def _build(node, tensors):
    """The Python object of a checked structure node, with the loaded ``tensors`` in place."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_build(v, tensors) for v in node]
    (tag, body), = node.items()
    if tag == "tensor":
        return tensors[body]
    if tag == "float":
        return struct.unpack("<d", struct.pack("<Q", int(body, 16)))[0]
    if tag == "tuple":
        return tuple(_build(v, tensors) for v in body)
    return {k: _build(v, tensors) for k, v in body}
