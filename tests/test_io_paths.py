"""``tn.save``/``tn.load`` against what can stand at a path, and against hostile dicts.

Symlinks are written through (the link stays a link); directories, devices, FIFOs and
sockets are refused and left as they were; a FIFO never blocks a load; a name as long as
the file system allows saves; names must be str; ``torch.save`` files and other formats
are named on load. After every refusal the old file is byte for byte intact and no
temporary file is left.
"""
import gzip
import json
import os
import pickle
import socket
import stat
import struct
import threading

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file as th_load_file

import tritonnn as tn
import tritonnn.io as tio

OLD = {"x": tn.tensor([1.0, 2.0, 3.0])}
NEW = {"x": tn.zeros(4), "y": tn.tensor([5])}


def entries(folder):
    return sorted(os.listdir(folder))


def no_temp_files(*folders):
    for folder in folders:
        temps = [n for n in os.listdir(folder) if n.endswith(".tmp")]
        assert not temps, f"temporary files left in {folder}: {temps}"


def refused(op, path, why, *args):
    """``op(*args)`` raises a TritonnnError naming the op, ``path`` and ``why``."""
    fn = {"save": tn.save, "load": tn.load}[op]
    with pytest.raises(tn.TritonnnError, match=why) as info:
        fn(*args)
    msg = str(info.value)
    assert msg.startswith(f"{op}:") and repr(str(path)) in msg, msg
    return msg


def finishes(fn, seconds=20.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it has not returned in
    ``seconds``. Returns the exception ``fn`` raised, or None."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as e:        # noqa: BLE001  (handed back to the test)
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    return out.get("error")


# ------------------------------------------------------------------------------------------------
# symlinks
# ------------------------------------------------------------------------------------------------

def test_symlink_chain_is_written_through(tmp_path, monkeypatch):
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    target = real_dir / "model.safetensors"
    tn.save(OLD, target)
    (link_dir / "hop1").symlink_to("../real/model.safetensors")      # relative, other folder
    (link_dir / "hop2").symlink_to(link_dir / "hop1")                 # absolute
    (tmp_path / "entry").symlink_to("links/hop2")
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (renames.append((s, d)), real_replace(s, d)))
    tn.save(NEW, tmp_path / "entry")
    monkeypatch.undo()
    (src, dst), = renames
    assert os.path.dirname(src) == os.path.dirname(dst) == str(real_dir.resolve())
    assert dst == str(target.resolve())
    for link in (tmp_path / "entry", link_dir / "hop2", link_dir / "hop1"):
        assert link.is_symlink(), link
    assert os.readlink(link_dir / "hop1") == "../real/model.safetensors"
    back = tn.load(tmp_path / "entry")
    assert back["x"].tolist() == [0.0] * 4 and back["y"].tolist() == [5]
    assert tn.load(target)["x"].tolist() == [0.0] * 4
    assert entries(real_dir) == ["model.safetensors"]
    no_temp_files(tmp_path, link_dir)


def test_symlink_keeps_the_targets_mode(tmp_path):
    target = tmp_path / "m.safetensors"
    tn.save(OLD, target)
    target.chmod(0o640)
    (tmp_path / "link").symlink_to(target)
    tn.save(NEW, tmp_path / "link")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert (tmp_path / "link").is_symlink()


def test_dangling_symlink_creates_its_target(tmp_path):
    # as torch.save (open(path, "wb")) and safetensors' save_file do
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link"
    link.symlink_to("sub/new.safetensors")
    tn.save(NEW, link)
    assert link.is_symlink()
    assert tn.load(tmp_path / "sub" / "new.safetensors")["y"].tolist() == [5]
    assert entries(tmp_path) == ["link", "sub"] and entries(tmp_path / "sub") == ["new.safetensors"]


def test_dangling_symlink_into_a_missing_folder(tmp_path):
    link = tmp_path / "link"
    link.symlink_to("missing/new.safetensors")
    refused("save", link, r"folder .*missing.* does not exist", NEW, link)
    assert link.is_symlink() and entries(tmp_path) == ["link"]


def test_symlink_loop(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    refused("save", tmp_path / "a", r"symbolic links", NEW, tmp_path / "a")
    refused("load", tmp_path / "a", r"symbolic links", tmp_path / "a")
    assert entries(tmp_path) == ["a", "b"]


# ------------------------------------------------------------------------------------------------
# what is not a regular file: refused, left in place
# ------------------------------------------------------------------------------------------------

def test_directory_and_a_symlink_to_one(tmp_path):
    folder = tmp_path / "model.safetensors"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(folder)
    for p in (folder, tmp_path / "link"):
        refused("save", p, r"is a directory", NEW, p)
        refused("load", p, r"is a directory", p)
    assert (folder / "keep.txt").read_text() == "keep" and (tmp_path / "link").is_symlink()
    no_temp_files(tmp_path, folder)


def test_fifo_is_refused_by_save_and_never_blocks_load(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    for p in (fifo, tmp_path / "link"):
        err = finishes(lambda: tn.save(NEW, p))
        assert isinstance(err, tn.TritonnnError) and "FIFO" in str(err) and str(p) in str(err)
        err = finishes(lambda: tn.load(p))
        assert isinstance(err, tn.TritonnnError) and "FIFO" in str(err) and str(p) in str(err)
    err = finishes(lambda: tio.load_metadata(fifo))
    assert isinstance(err, tn.TritonnnError) and "FIFO" in str(err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert entries(tmp_path) == ["link", "pipe.safetensors"]


def test_fifo_swapped_in_after_the_check_still_never_blocks(tmp_path, monkeypatch):
    # the stat says "regular file" but a FIFO is there by the time of the open
    fifo = str(tmp_path / "pipe.safetensors")
    os.mkfifo(fifo)
    real_stat = os.stat

    def lying_stat(p, *a, **kw):
        if os.fspath(p) == fifo:
            return os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, 64, 0, 0, 0))
        return real_stat(p, *a, **kw)
    monkeypatch.setattr(os, "stat", lying_stat)
    err = finishes(lambda: tn.load(fifo))
    monkeypatch.undo()
    assert isinstance(err, tn.TritonnnError) and "FIFO" in str(err), err


def test_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        refused("save", path, r"is a socket", NEW, path)
        refused("load", path, r"is a socket", path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    no_temp_files(tmp_path)


@pytest.fixture
def guard_dev(monkeypatch):
    """A regression fails the test instead of replacing a node in /dev (tests may run as root)."""
    real_replace, real_open = os.replace, os.open

    def replace(src, dst, *a, **kw):
        assert not os.path.realpath(dst).startswith("/dev/"), f"would replace {dst}"
        return real_replace(src, dst, *a, **kw)

    def open_(p, flags, *a, **kw):
        assert not (flags & os.O_CREAT and os.path.realpath(p).startswith("/dev/")), p
        return real_open(p, flags, *a, **kw)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("via_link", [False, True])
def test_dev_null_is_refused_and_stays_a_device(tmp_path, guard_dev, via_link):
    if not os.path.exists("/dev/null") or not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("no /dev/null character device here")
    before = os.stat("/dev/null")
    path = tmp_path / "link" if via_link else "/dev/null"
    if via_link:
        path.symlink_to("/dev/null")
    refused("save", path, r"is a character device", NEW, path)
    refused("load", path, r"is a character device", path)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino
    if via_link:
        assert path.is_symlink() and entries(tmp_path) == ["link"]


def test_device_node_in_a_plain_folder(tmp_path):
    node = tmp_path / "null.safetensors"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))    # a second /dev/null
    except (PermissionError, AttributeError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    refused("save", node, r"is a character device", NEW, node)
    refused("load", node, r"is a character device", node)
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert entries(tmp_path) == ["null.safetensors"]


@pytest.mark.parametrize("suffix", ["/", "/."])
def test_path_that_names_a_folder(tmp_path, suffix):
    old = tmp_path / "m.safetensors"
    tn.save(OLD, old)
    before = old.read_bytes()
    for p in (str(old) + suffix, str(tmp_path / "new") + suffix):
        with pytest.raises(tn.TritonnnError, match=r"^save: "):
            tn.save(NEW, p)
    assert old.read_bytes() == before and entries(tmp_path) == ["m.safetensors"]


@pytest.mark.parametrize("op", ["save", "load"])
def test_empty_path(op):
    with pytest.raises(tn.TritonnnError, match=rf"^{op}: path is empty"):
        tn.save(NEW, "") if op == "save" else tn.load("")


# ------------------------------------------------------------------------------------------------
# temporary names
# ------------------------------------------------------------------------------------------------

def _name_max(folder):
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


@pytest.mark.parametrize("char", ["a", "é", "日"])
def test_longest_legal_name_saves_and_loads(tmp_path, monkeypatch, char):
    limit = _name_max(tmp_path)
    stem = ".safetensors"
    width = len(char.encode())
    name = char * ((limit - len(stem)) // width) + "x" * ((limit - len(stem)) % width) + stem
    assert len(name.encode()) == limit
    temps = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (temps.append(s), real_replace(s, d)))
    tn.save(OLD, tmp_path / name)
    tn.save(NEW, tmp_path / name)            # over the old file, too
    monkeypatch.undo()
    assert tn.load(tmp_path / name)["y"].tolist() == [5]
    assert entries(tmp_path) == [name]
    for t in temps:
        base = os.path.basename(t)
        assert len(os.fsencode(base)) <= limit and base.startswith(".") and base.endswith(".tmp")
        base.encode("utf-8")                      # cut at a character boundary
    with pytest.raises(tn.TritonnnError, match=r"save: .*too long"):
        tn.save(OLD, tmp_path / ("a" + name))     # one byte over: the file system's own error
    assert entries(tmp_path) == [name]


def test_temp_name_collision_is_retried(tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    squatter = tmp_path / ".m.safetensors.00000000.tmp"
    squatter.write_bytes(b"someone else's")
    draws = iter([b"\0\0\0\0", b"\0\0\0\0", b"\1\2\3\4"])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    tn.save(NEW, target)
    monkeypatch.undo()
    assert squatter.read_bytes() == b"someone else's"
    assert tn.load(target)["y"].tolist() == [5]
    assert entries(tmp_path) == [squatter.name, "m.safetensors"]


def test_no_free_temp_name_is_a_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    tn.save(OLD, target)
    before = target.read_bytes()
    (tmp_path / ".m.safetensors.00000000.tmp").write_bytes(b"taken")
    monkeypatch.setattr(os, "urandom", lambda n: bytes(n))
    refused("save", target, r"no free temporary file name", NEW, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert entries(tmp_path) == [".m.safetensors.00000000.tmp", "m.safetensors"]


def test_io_does_not_import_tempfile():
    import subprocess
    import sys
    code = "import sys, tritonnn; print('tempfile' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="only root may give a file to another owner")
def test_old_files_owner_and_mode_are_kept(tmp_path):
    target = tmp_path / "m.safetensors"
    tn.save(OLD, target)
    os.chown(target, 12345, 23456)
    target.chmod(0o604)
    tn.save(NEW, target)
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o604)


# ------------------------------------------------------------------------------------------------
# hostile dicts: refused before anything is written, or saved as safetensors would
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def old_file(tmp_path):
    p = tmp_path / "keep.safetensors"
    tn.save(OLD, p)
    return p, p.read_bytes()


# (int keys, lists, None and other plain values are checkpoints now: tests/test_checkpoint.py)
@pytest.mark.parametrize("tensors, why", [
    ({(1, 2): tn.ones(1)}, r"key of type tuple"),
    ({None: tn.ones(1)}, r"key of type NoneType"),
    ({b"w": tn.ones(1)}, r"key of type bytes: b'w'"),
    ({np.str_("a"): tn.ones(1), np.int64(3): tn.ones(1)}, r"key of type numpy.int64"),
    ({"m": {1.5: tn.ones(1)}}, r"key of type float: 1.5 \(in the dict at 'm'\)"),
    ({"__metadata__": tn.ones(1)}, r"'__metadata__' is reserved"),
    ({"bad\ud800": tn.ones(1)}, r"not valid Unicode"),
    ({"w": torch.ones(2)}, r"value for 'w' is a torch.Tensor, not a tritonnn tensor "
                           r"\(convert it with tn.tensor\)"),
    ({"w": np.ones(2)}, r"value for 'w' is a numpy.ndarray, not a tritonnn tensor"),
    ({"m": [1, {"w": np.float32(2)}]}, r"value for 'm.1.w' is a numpy.float32, not a tritonnn "
                                       r"tensor \(convert it with float\(\), int\(\)"),
    ({"w": b"raw"}, r"value for 'w' is a bytes; a checkpoint holds tensors, numbers"),
    ({"w": {1, 2}}, r"value for 'w' is a set"),
    (tn.ones(1), r"expected a dict, list or tuple .*got a single tensor"),
    ("w", r"expected a dict, list or tuple .*got a str"),
])
def test_hostile_dict_is_refused_before_writing(old_file, tensors, why):
    p, before = old_file
    msg = refused("save", p, why, tensors, p)
    assert msg.endswith(f"(nothing written to {str(p)!r})"), msg
    assert p.read_bytes() == before
    assert entries(p.parent) == [p.name]


@pytest.mark.parametrize("metadata, why", [
    ({"epoch": 3}, r"the value for 'epoch' is a int"),
    ({3: "x"}, r"got a key of type int: 3"),
    ({"k": "\udcff"}, r"not valid Unicode"),
    (["x"], r"got list"),
])
def test_bad_metadata_is_refused_before_writing(old_file, metadata, why):
    p, before = old_file
    refused("save", p, r"^save: metadata.*" + why, NEW, p, metadata)
    assert p.read_bytes() == before and entries(p.parent) == [p.name]


def test_odd_but_legal_names_round_trip(tmp_path):
    # safetensors accepts these (a NUL is escaped in the JSON header), so does tn
    tensors = {"": tn.ones(1), "a\0b": tn.tensor([2.0]), "ünï.😀": tn.tensor([3.0]),
               " spaced name ": tn.tensor([4.0]), "a.b.c": tn.tensor([5.0])}
    p = tmp_path / "names.safetensors"
    tn.save(tensors, p)
    back, ref = tn.load(p), np_load_file(str(p))
    assert sorted(back) == sorted(ref) == sorted(tensors)
    for k, t in tensors.items():
        assert back[k].tolist() == t.tolist() == ref[k].tolist()


def test_unusual_tensors_save_as_safetensors_does(tmp_path, device):
    base = tn.arange(12).to(tn.float32).reshape(3, 4).to(device)
    w = tn.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), device=device, requires_grad=True)
    param = tn.nn.Parameter(tn.ones(2, 2, device=device))
    tensors = {"scalar": tn.tensor(2.5, device=device),          # 0-d
               "transposed": base.T,                            # not contiguous
               "column": base[:, 1],                            # strided view
               "grad": w * 2,                                   # has a graph
               "leaf": w, "param": param,                      # require grad
               "same": base, "same_again": base,                 # one tensor under two names
               "empty": tn.zeros(0, 3, device=device)}
    p = tmp_path / "odd.safetensors"
    tn.save(tensors, p)
    back, ref = tn.load(p, device=device), th_load_file(str(p))
    assert sorted(back) == sorted(ref) == sorted(tensors)
    for k, t in tensors.items():
        want = t.detach().numpy()
        got = back[k]
        assert got.shape == t.shape and got.dtype is t.dtype and got.device == device, k
        assert not got.requires_grad, k
        np.testing.assert_array_equal(got.numpy(), want, err_msg=k)
        np.testing.assert_array_equal(ref[k].numpy(), want, err_msg=k)
    assert w.requires_grad and w.grad is None
    back["same"][0, 0] = -1.0                      # two names load as two tensors
    assert back["same_again"][0, 0].item() == 0.0


def test_header_over_the_readers_limit_is_refused(old_file, monkeypatch):
    p, before = old_file
    monkeypatch.setattr(tio, "MAX_HEADER", 4096)
    tensors = {f"layer.{i}.weight": tn.zeros(1) for i in range(200)}
    with pytest.raises(tn.TritonnnError, match=r"^save: the header for .* over the 4096-byte"):
        tn.save(tensors, p)
    assert p.read_bytes() == before and entries(p.parent) == [p.name]


# ------------------------------------------------------------------------------------------------
# other formats, named on load
# ------------------------------------------------------------------------------------------------

def _torch_zip(p):
    torch.save({"w": torch.ones(2, 2)}, p)


def _torch_legacy(p):
    torch.save({"w": torch.ones(2, 2)}, p, _use_new_zipfile_serialization=False)


def _torch_module_zip(p):
    torch.save(torch.nn.Linear(3, 2).state_dict(), p)


FOREIGN = {
    "torch_zip.pt": (_torch_zip, r"torch\.save file \(a zip archive.*torch\.load.*tn\.save"),
    "torch_module.pth": (_torch_module_zip, r"torch\.save file \(a zip archive"),
    "torch_legacy.pt": (_torch_legacy, r"torch\.save file \(the legacy pickle format\).*"
                                       r"torch\.load"),
    "pickle5.pkl": (lambda p: p.write_bytes(pickle.dumps({"w": [1.0]}, protocol=5)),
                    r"Python pickle.*torch\.load"),
    "pickle2.pkl": (lambda p: p.write_bytes(pickle.dumps([1, 2], protocol=2)), r"Python pickle"),
    "array.npy": (lambda p: np.save(p, np.ones(3)), r"numpy \.npy file"),
    "arrays.npz": (lambda p: np.savez(p, x=np.ones(3)), r"numpy \.npz archive"),
    "plain.zip": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(200)), r"a zip archive"),
    "weights.h5": (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100)), r"HDF5"),
    "model.gguf": (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(100)), r"GGUF"),
    "blob.gz": (lambda p: p.write_bytes(gzip.compress(b"x" * 100)), r"gzip"),
    "notes.txt": (lambda p: p.write_text("hello world, this is text\n"),
                  r"text file \(it starts with 'hello world"),
    "config.json": (lambda p: p.write_text(json.dumps({"hidden": 64})), r"text file"),
    "short.txt": (lambda p: p.write_text("hi"), r"text file"),
    "unicode.txt": (lambda p: p.write_text("日本語のテキスト" * 40), r"text file"),
    "empty.safetensors": (lambda p: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_other_formats_are_named(tmp_path, name):
    make, why = FOREIGN[name]
    p = tmp_path / name
    make(p)
    refused("load", p, r"is not a valid safetensors file: .*" + why, p)
    with pytest.raises(tn.TritonnnError, match=r"^load_metadata: .*" + why):
        tio.load_metadata(p)


def test_real_safetensors_whose_length_spells_a_pickle_still_loads(tmp_path):
    # header length 640 = 0x280: the file starts b"\x80\x02", as a protocol-2 pickle does
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    raw = json.dumps({"w": entry}).encode()
    raw += b" " * (640 - len(raw))
    p = tmp_path / "looks_like_pickle.safetensors"
    p.write_bytes(struct.pack("<Q", 640) + raw + np.array([1.5, -2.0], np.float32).tobytes())
    assert p.read_bytes()[:2] == b"\x80\x02"
    assert tn.load(p)["w"].tolist() == [1.5, -2.0]
    assert np_load_file(str(p))["w"].tolist() == [1.5, -2.0]
    p.write_bytes(p.read_bytes()[:-1])        # and broken, it is a broken safetensors file
    refused("load", p, r"outside the 7-byte data section", p)
