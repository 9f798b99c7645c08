"""``tn.save`` is atomic: a failed or killed save never damages the file already at the path.

Failures (missing folder, a folder nobody can write, a directory at the path,
a disk that fills up, an error at the final rename) raise a clear
``tn.TritonnnError``, leave the old file byte for byte and leave no temporary
file behind. A writer process killed with SIGKILL at random moments leaves
either the old or the new complete file at the path, never a mix.
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tritonnn as tn

OLD = {"w": tn.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4)), "step": tn.tensor([7])}


def write_old(path):
    tn.save(OLD, path)
    return open(path, "rb").read()


def leftovers(folder, keep):
    return sorted(n for n in os.listdir(folder) if n not in keep)


def test_missing_folder(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "m.safetensors"
    with pytest.raises(tn.TritonnnError, match=r"save: folder .*no/such/dir.* does not exist"):
        tn.save(OLD, target)
    assert not (tmp_path / "no").exists()


def test_parent_is_a_file(tmp_path):
    blocker = tmp_path / "plain_file"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(tn.TritonnnError, match=r"save: folder .*plain_file.* does not exist"):
        tn.save(OLD, blocker / "m.safetensors")
    assert blocker.read_bytes() == b"not a folder"
    assert leftovers(tmp_path, {"plain_file"}) == []


def test_path_is_a_directory(tmp_path):
    target = tmp_path / "model.safetensors"
    target.mkdir()
    (target / "inside.txt").write_text("keep me")
    with pytest.raises(tn.TritonnnError, match=r"save: .*model\.safetensors.* is a directory"):
        tn.save(OLD, target)
    assert (target / "inside.txt").read_text() == "keep me"
    assert leftovers(tmp_path, {"model.safetensors"}) == []


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_folder_that_refuses_files_even_for_root(folder):
    # /proc and /sys refuse new files whoever asks, so this case holds when tests run as root
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} is not mounted here")
    target = os.path.join(folder, "tritonnn_test.safetensors")
    before = set(os.listdir(folder))
    with pytest.raises(tn.TritonnnError, match=rf"save: cannot write to '{folder}'"):
        tn.save(OLD, target)
    assert not os.path.exists(target)
    assert not [n for n in set(os.listdir(folder)) - before if "tritonnn" in n]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores folder permissions (the /proc and /sys cases cover root)")
def test_read_only_folder(tmp_path):
    target = tmp_path / "m.safetensors"
    old = write_old(target)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(tn.TritonnnError, match=r"save: cannot write to"):
            tn.save({"w": tn.zeros(2)}, target)
    finally:
        tmp_path.chmod(0o755)
    assert target.read_bytes() == old
    assert leftovers(tmp_path, {"m.safetensors"}) == []


def test_bad_value_fails_before_touching_the_file(tmp_path):
    target = tmp_path / "m.safetensors"
    old = write_old(target)
    with pytest.raises(tn.TritonnnError, match=r"save: value for 'b.1' is a object"):
        tn.save({"a": tn.ones(3), "b": [1, object()]}, target)     # (a list is fine now)
    assert target.read_bytes() == old
    assert leftovers(tmp_path, {"m.safetensors"}) == []


def test_rename_failure_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "m.safetensors"
    old = write_old(target)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(tn.TritonnnError, match=r"save: writing .*m\.safetensors.* failed: "
                                               r"No space left on device"):
        tn.save({"w": tn.zeros(1000)}, target)
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert leftovers(tmp_path, {"m.safetensors"}) == []


def test_interrupt_mid_write_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    # Ctrl-C during fsync: the KeyboardInterrupt goes through, the temp file does not stay
    target = tmp_path / "m.safetensors"
    old = write_old(target)

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tn.save({"w": tn.zeros(1000)}, target)
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert leftovers(tmp_path, {"m.safetensors"}) == []


DISK_FULL = textwrap.dedent("""
    import resource, signal, sys
    import tritonnn as tn
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    try:
        tn.save({"w": tn.zeros(1 << 20)}, sys.argv[1])    # 4 MiB > the 256 KiB limit
    except tn.TritonnnError as e:
        print("ERROR", e)
    else:
        print("SAVED")
""")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE / SIGXFSZ semantics of Linux")
def test_disk_full_mid_write_keeps_old_file(tmp_path):
    # a file-size limit makes the write fail half way, like a full disk, even for root
    target = tmp_path / "m.safetensors"
    old = write_old(target)
    r = subprocess.run([sys.executable, "-c", DISK_FULL, str(target)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ERROR save: writing"), r.stdout + r.stderr
    assert "m.safetensors" in r.stdout and "too large" in r.stdout.lower()
    assert target.read_bytes() == old
    assert leftovers(tmp_path, {"m.safetensors"}) == []


# ------------------------------------------------------------------------------------------------
# SIGKILL at random moments
# ------------------------------------------------------------------------------------------------

VERSIONS = textwrap.dedent("""
    import numpy as np

    def version(v):
        # three complete state dicts of 4-6 MB that differ in values, sizes and names
        rng = np.random.default_rng(v)
        out = {"layer.weight": rng.standard_normal((512, 512 + 256 * v)).astype(np.float32),
               "layer.bias": np.full(512, v, dtype=np.float32),
               "step": np.array([v], dtype=np.int64)}
        if v == 2:
            out["extra.weight"] = rng.standard_normal((256, 1024)).astype(np.float32)
        return out
""")

WRITER = VERSIONS + textwrap.dedent("""
    import sys
    import tritonnn as tn
    path, first = sys.argv[1], int(sys.argv[2])
    states = [{k: tn.from_numpy(a) for k, a in version(v).items()} for v in range(3)]
    print("ready", flush=True)
    i = first
    while True:
        tn.save(states[i % 3], path)
        i += 1
""")


def _versions():
    ns = {}
    exec(VERSIONS, ns)
    return [ns["version"](v) for v in range(3)]


def _which_version(path, versions):
    got = tn.load(path)
    for v, want in enumerate(versions):
        if sorted(got) == sorted(want) and all(
                got[k].shape == want[k].shape and np.array_equal(got[k].numpy(), want[k])
                for k in want):
            return v
    raise AssertionError(f"{path} holds none of the complete versions: "
                         f"{ {k: t.shape for k, t in got.items()} }")


@pytest.mark.slow
def test_sigkill_during_save_leaves_a_complete_file(tmp_path):
    versions = _versions()
    target = str(tmp_path / "model.safetensors")
    tn.save({k: tn.from_numpy(a) for k, a in versions[0].items()}, target)
    rnd = random.Random(1234)
    seen, mid_write, k = [], 0, 0
    # 15 kills; a few more (at most 10) only if none of them hit a save half way
    while k < 15 or (mid_write == 0 and k < 25):
        n_tmp = len(leftovers(tmp_path, {"model.safetensors"}))
        proc = subprocess.Popen([sys.executable, "-c", WRITER, target, str(k)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rnd.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        seen.append(_which_version(target, versions))
        mid_write += len(leftovers(tmp_path, {"model.safetensors"})) > n_tmp
        k += 1
    # the writer really ran (the file went through several versions) and was caught mid-write
    assert len(set(seen)) >= 2 and mid_write >= 1, (seen, mid_write)
    # what a kill mid-write leaves are hidden temp files, never the target itself
    others = leftovers(tmp_path, {"model.safetensors"})
    assert len(others) == mid_write
    assert all(n.startswith(".model.safetensors.") and n.endswith(".tmp") for n in others), others
    for n in others:
        assert not os.path.samefile(tmp_path / n, target)
    assert _which_version(target, versions) == seen[-1]
