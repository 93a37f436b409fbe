"""Runs inside the sandbox: execute the run's cells, then export the model as data.

This file is copied into the sandbox and run there with the sandbox's Python; it must
not import the grader. Everything it writes goes to the scratch folder and is only
ever read back by the grader as data (JSON, HDF5 weights), with size caps: a student
who rewrites these files in their cell gains nothing the grader believes.

usage: python inside.py CONFIG_JSON [MODULE,MODULE...]

It is a zygote: it imports the modules named (the assignment's own imports, TensorFlow:
seconds of CPU) once, and then makes one child per run, on the grader's word, over its
stdin and stdout, a line at a time (two runs may be under way at once, each on a slot
of its own: a disk mounted at /slots/SLOT, the run's /scratch, /tmp and /dev/shm):

    zygote: ready                  (imported; waiting)
    grader: fork SLOT              zygote: forked PID  (the child waits, in the zygote's cgroup)
    grader: go PID                 (the grader has moved the child into the run's own cgroup
                                    and written the slot's job.json; or `drop PID`: not needed)
                                   zygote: exit PID CODE  (whenever a child ends; CODE negative:
                                                           killed by that signal)

The zygote never runs a line of a submission and never reads what a run wrote; it is
not dumpable, so a run of the same user cannot trace it, read its memory or open its
files through /proc. The child, before the cells, moves into namespaces of its own
(user, PID, mount, IPC, network, UTS) with its slot's disk as /scratch, /tmp and
/dev/shm and every slot hidden; its run is process 1 of a PID namespace that holds
nothing else, so it can see and signal no process of the zygote's, and whatever it
starts dies with it. It then drops every capability, sets its CPU-time and file-size
limits, and runs the job.
"""

import collections
import importlib
import io
import json
import os
import sys
import time
import traceback
import types


class CappedText(io.TextIOBase):
    """A text stream that keeps the first and last `cap` characters and counts the rest.

    Constant work per write (the tail is a queue of pieces), so a flood of output
    costs time, not memory."""

    def __init__(self, cap):
        self.cap, self.head, self.head_size, self.total = cap, [], 0, 0
        self.tail, self.tail_size = collections.deque(), 0

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        written = len(text)
        self.total += written
        if self.head_size < self.cap:
            piece = text[: self.cap - self.head_size]
            self.head.append(piece)
            self.head_size += len(piece)
            text = text[len(piece):]
        if text:
            self.tail.append(text[-self.cap:])
            self.tail_size += len(self.tail[-1])
            while self.tail and self.tail_size - len(self.tail[0]) >= self.cap:
                self.tail_size -= len(self.tail.popleft())
        return written

    def value(self):
        head, tail = "".join(self.head), "".join(self.tail)[-self.cap:]
        dropped = self.total - len(head) - len(tail)
        if dropped > 0:
            return head + f"\n[... {dropped} characters cut ...]\n" + tail
        return head + tail


def error_line(error):
    """The line of the cell where `error` happened (1-based), or None."""
    if isinstance(error, SyntaxError) and str(error.filename or "").startswith("<ipython-input-"):
        return error.lineno
    line = None
    for frame, number in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename.startswith("<ipython-input-"):
            line = number
    return line


EXPORTED = ("log.json", "export.json", "model.json", "compile.json", "model.weights.h5")


def rewrite(fd, data):
    """Make the file open at `fd` hold `data` (bytes), whatever it held before."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass  # closed or replaced by the run's own code: what the grader reads then shows it


def write_json(fd, value):
    rewrite(fd, json.dumps(value).encode())


def open_channels(place, cells):
    """The files the run reports through, opened by the zygote's child before the run
    exists, in the slot's export/ folder, which the run cannot see (its mounts show the
    slot's scratch/, tmp/, shm/ and keras/ only): what is in them went through these
    descriptors. One witness file per cell, which the runner writes once, when the cell
    has ended, and then closes: the cells before the student's first are sealed before
    any of the student's code runs. Returns ({name: fd}, [witness fd per cell])."""
    folder = os.path.join(place, "export")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    files = {name: os.open(os.path.join(folder, name), flags, 0o600) for name in EXPORTED}
    witness = [os.open(os.path.join(folder, f"witness-{index}"), flags, 0o600) for index in range(cells)]
    return files, witness


def seal(witness, index, entry):
    """The runner's record of how cell `index` ended, written once; the descriptor is then closed."""
    fd, witness[index] = witness[index], -1
    if fd < 0:
        return
    record = {"key": entry["key"], "status": entry["status"]}
    if entry.get("error"):
        record["error"] = entry["error"]["name"]
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    except OSError:
        pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


class Progress:
    """The progress file the grader watches, held open from the start: a cell that
    replaces it (with a pipe, a link) cannot make the runner block on it or write elsewhere."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)

    def started(self, key):
        try:
            os.write(self.fd, (json.dumps({"cell": key, "started": time.time()}) + "\n").encode())
        except OSError:
            pass  # the cell closed it: the grader's per-run clock still counts


def run_cells(shell, job, files, witness, progress):
    log = []
    for index, cell in enumerate(job["cells"]):
        progress.started(cell["key"])
        stdout, stderr = CappedText(job["output_chars"]), CappedText(job["output_chars"])
        tracebacks = []
        shell._showtraceback = lambda etype, value, stb: tracebacks.append(shell.InteractiveTB.stb2text(stb))
        # IPython names the cell by its run number ("Cell In[5]"), which means nothing to
        # the student: name it by the assignment's cell instead.
        number = shell.execution_count
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        started = time.time()
        try:
            result = shell.run_cell(cell["source"], store_history=True, silent=False)
        finally:
            sys.stdout, sys.stderr = saved
        error = result.error_before_exec or result.error_in_exec
        entry = {
            "key": cell["key"],
            "role": cell["role"],
            "status": "error" if error is not None else "ok",
            "seconds": round(time.time() - started, 3),
            "stdout": stdout.value(),
            "stderr": stderr.value(),
        }
        if error is not None:
            entry["error"] = {
                "name": type(error).__name__,
                "message": (error.msg if isinstance(error, SyntaxError) else str(error))[:2000],
                "line": error_line(error),
                "traceback": "\n".join(tracebacks).replace(f"Cell In[{number}]", f"Cell {cell['key']!r}")[-8000:],
            }
        log.append(entry)
        seal(witness, index, entry)
        write_json(files["log.json"], log)
    return log


def export(namespace, files, job, seen):
    """Write what the answer defined as data: a model, or a sample of a dataset. `seen`:
    what the runner saw of the run just before (see integrity)."""
    name = job.get("answer", "model")
    value = namespace.get(name)
    if value is None:
        write_json(files["export.json"], {"found": False, "problem": f"no variable named `{name}` after the answer cells ran", **seen})
    elif job.get("kind") == "dataset":
        export_dataset(value, name, files, job.get("sample", SAMPLE), seen, job.get("count_limit", 0))
    else:
        export_model(value, name, files, job.get("input_shape"), seen, namespace)


SAMPLE = 24  # elements of a dataset exported
PARTS = 16  # parts of an element exported


def export_dataset(dataset, name, files, count, seen, limit=0):
    """Write a sample of what the dataset yields, as data: each element's parts with their
    dtype, shape, a hash of their bytes, (strings, small arrays) their values, (pictures)
    their thumbnails; and how many elements it has (counted up to `limit` when its
    cardinality is not known)."""
    import hashlib

    tf = sys.modules.get("tensorflow")  # not imported by the run: the value cannot be a dataset

    facts = {"found": True, **seen}
    if tf is None or not isinstance(dataset, tf.data.Dataset):
        facts["problem"] = f"`{name}` is a {type(dataset).__name__}, not a tf.data.Dataset"
        write_json(files["export.json"], facts)
        return

    def describe(value):
        if not isinstance(value, tf.Tensor):  # a ragged or sparse tensor, a dict, a nested tuple: its kind
            shape = getattr(value, "shape", None)
            return {"kind": type(value).__name__, "dtype": str(getattr(getattr(value, "dtype", None), "name", "")),
                    "shape": None if getattr(shape, "rank", None) is None else [None if d is None else int(d) for d in shape]}
        shape = [int(d) for d in value.shape]
        serialized = tf.io.serialize_tensor(value).numpy()  # dtype, shape and content: equal tensors, equal hashes
        part = {"dtype": value.dtype.name, "shape": shape, "sha256": hashlib.sha256(serialized).hexdigest()}
        if value.dtype == tf.string:  # a scalar's numpy() is bytes, not an array
            items = tf.reshape(value, [-1])[:16].numpy().tolist()
            part["value"] = [item.decode("utf-8", errors="replace")[:200] for item in items]
        elif value.shape.num_elements() <= 16:
            part["value"] = tf.reshape(value, [-1]).numpy().tolist()
        elif len(shape) == 3 and 1 <= shape[-1] <= 4 and shape[0] and shape[1] and (value.dtype.is_integer or value.dtype.is_floating):
            # a picture: its thumbnail (its pixels averaged on an 8x8 grid, as the grader's
            # reference.data.thumbnail does), so that another JPEG decoder's pixels are known
            small = tf.image.resize(tf.cast(value, tf.float32), [8, 8], method="area")
            part["thumb"] = [round(float(v), 2) for v in tf.reshape(small, [-1]).numpy()]
        return part

    facts["element_spec"] = str(dataset.element_spec)[:2000]
    facts["cardinality"] = int(dataset.cardinality().numpy())  # -1: infinite, -2: not known
    if limit and facts["cardinality"] == -2:  # not known (a filter): counted, up to one more than the data's files
        try:
            facts["counted"] = sum(1 for _ in dataset.take(limit))
        except Exception as error:  # the student's pipeline may fail when iterated: said below
            facts["count_problem"] = f"{type(error).__name__}: {str(error)[:300]}"
    elements = []
    try:
        for element in dataset.take(count):
            elements.append(element if isinstance(element, (tuple, list)) else (element,))
    except Exception as error:  # the student's pipeline may fail when iterated
        facts["problem"] = f"`{name}` fails when it is read: {type(error).__name__}: {str(error)[:500]}"
    else:  # describing them is the runner's own work: its failure is not the student's
        facts["sample"] = [[describe(part) for part in parts[:PARTS]] for parts in elements]
    write_json(files["export.json"], facts)


def export_model(model, name, files, input_shape=None, seen=None, namespace=None):
    """Write the model as data: Keras config JSON, compile config, weights (HDF5), each
    made by Keras' own functions as they were before the run (not as the run may have
    patched them, on the class or on the model); and the notebook's names of the
    distribution strategy its variables were made under. A model not built yet (no layer
    knows its input's shape) is built for `input_shape`."""
    facts = {"found": True, **(seen or {})}
    keras = sys.modules.get("keras")  # not imported by the run: the value cannot be a Keras model

    if keras is None or not isinstance(model, keras.Model):
        facts["problem"] = f"`{name}` is a {type(model).__name__}, not a Keras model"
    else:
        facts["layers"] = len(model.layers)
        facts["built"] = bool(model.built)
        facts["scopes"] = strategy_names(model, namespace or {})
        if not model.built and input_shape and model.layers:
            try:
                model.build((None, *input_shape))
            except Exception as error:  # the student's layers may not fit the lab's images
                facts["build_problem"] = f"{type(error).__name__}: {error}"
        try:
            rewrite(files["model.json"], keras.Model.to_json(model).encode())
        except Exception as error:  # the student's model may not serialize
            facts["problem"] = f"the model cannot be saved as a Keras config: {type(error).__name__}: {error}"
        try:
            write_json(files["compile.json"], keras.Model.get_compile_config(model) if model.compiled else None)
        except Exception as error:
            facts["compile_problem"] = f"{type(error).__name__}: {error}"
        if model.built and model.weights:
            try:
                rewrite(files["model.weights.h5"], saved_weights(model))
            except Exception as error:
                facts["weights_problem"] = f"{type(error).__name__}: {error}"
    write_json(files["export.json"], facts)


def saved_weights(model):
    """The bytes of the model's weights file as model.save_weights writes it, made in memory
    (no path the run could reach in between)."""
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    return buffer.getvalue()


# --- the export's integrity ---------------------------------------------------------------
#
# The export is written by a child the runner forks once the cells have ended: it has one
# thread (threads the cells started do not exist in it), it puts back every function of
# Keras' and of this runner as they were before the run (a cell may have replaced or
# rewritten them), and it writes through the descriptors opened before the run. What it
# saw of the run before it put them back (threads alive, functions replaced, methods set
# on the model itself) goes into export.json for the grader to show, not to believe.

class _Runner:
    """This runner's own functions, by their globals: run as a script, it is __main__ only
    until IPython puts the cells' namespace there (sys.modules cannot find it then)."""

    def __init__(self, functions):
        self.functions = functions


_RUNNER = _Runner(globals())


def _held(owner):
    """What an owner of noted functions holds, by name."""
    return owner.functions if isinstance(owner, _Runner) else vars(owner)


def _name_of(owner):
    return "runner" if isinstance(owner, _Runner) else getattr(owner, "__name__", "?")


_PRISTINE = []  # (owner, name, function, its code), as the zygote found them
_OWNED = {}  # id(owner) -> the names of the functions it held then


def capture():
    """Note every function of Keras' layers, models and saving, and of this runner (in the zygote, before any run)."""
    owners = []
    try:
        if "tensorflow" in sys.modules or "keras" in sys.modules:  # the lab's cells use it: the run will
            import keras
            from keras.src.saving import saving_lib, serialization_lib
        else:
            keras = None
    except Exception:  # a Keras that cannot be imported here: nothing of it to guard
        keras = None
    if keras is not None:
        owners = [keras.Model, keras.Sequential, keras.layers.Layer, saving_lib, serialization_lib, saving_lib.H5IOStore]
        owners += [kind for kind in vars(keras.layers).values() if isinstance(kind, type)]
        owners += [kind for kind in keras.Model.__mro__ if kind is not object]
    for owner in dict.fromkeys([*owners, _RUNNER]):
        names = []
        for name, value in list(_held(owner).items()):
            if isinstance(value, types.FunctionType):
                _PRISTINE.append((owner, name, value, value.__code__))
                names.append(name)
        _OWNED[id(owner)] = (owner, frozenset(names))


def integrity(namespace, answer):
    """What the run did to the runner and to Keras, as seen just before the export: names of
    functions replaced or rewritten, functions added to Keras' classes, methods set on the
    answer itself, and the Python threads still alive besides this one."""
    changed = []
    for owner, name, function, code in _PRISTINE:
        if _held(owner).get(name) is not function or function.__code__ is not code:
            changed.append(f"{_name_of(owner)}.{name}")
    for owner, names in _OWNED.values():
        if isinstance(owner, type):
            changed += [f"{owner.__name__}.{name}" for name, value in list(vars(owner).items())
                        if isinstance(value, types.FunctionType) and name not in names]
    value = namespace.get(answer)
    methods = {name for _, name, _, _ in _PRISTINE}
    on_answer = sorted(name for name, held in getattr(value, "__dict__", {}).items() if name in methods and _foreign(held)) \
        if value is not None else []
    import threading

    return {"integrity": {"replaced": sorted(set(changed))[:50], "on_answer": on_answer[:50],
                          "threads": threading.active_count() - 1}}


def _await_stillness(seconds=10.0):
    """In the export child: wait until every other process of the run (its threads too) is
    stopped by the watcher outside, so that nothing writes after the export has."""
    deadline = time.monotonic() + seconds
    me = str(os.getpid())
    while time.monotonic() < deadline:
        moving = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/stat") as handle:
                        state = handle.read().rsplit(")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                moving = moving or state not in ("T", "t", "Z", "X")
        if not moving:
            return
        time.sleep(0.002)


def _foreign(value):
    """Whether `value` is a function the run wrote (Keras sets wrappers of its own on its objects)."""
    function = getattr(value, "__func__", value)
    code = getattr(function, "__code__", None) or getattr(getattr(type(value), "__call__", None), "__code__", None)
    return code is not None and not any(part in code.co_filename for part in ("/keras/", "/tensorflow/"))


def restore():
    """Put every noted function back as it was, and take away functions added to Keras' classes."""
    for owner, names in _OWNED.values():
        if isinstance(owner, type):
            for name, value in list(vars(owner).items()):
                if isinstance(value, types.FunctionType) and name not in names:
                    delattr(owner, name)
    for owner, name, function, code in _PRISTINE:
        try:
            function.__code__ = code
        except ValueError:  # its closure was made for this code: it cannot have been changed for another
            pass
        if isinstance(owner, _Runner):
            owner.functions[name] = function
        else:
            setattr(owner, name, function)


def export_apart(namespace, files, job, watcher=-1, seen=None):
    """The export, by a child forked for it (see above); returns once it has ended. With a
    `watcher` (the zygote's child, outside the run), the run is stopped meanwhile and killed
    once the export has ended: this returns only without one (no sandbox). `seen`: what
    `integrity` found before the runner's functions were put back."""
    seen = seen if seen is not None else integrity(namespace, job.get("answer", "model"))
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if watcher >= 0:
                _await_stillness()
            restore()
            value = namespace.get(job.get("answer", "model"))
            if value is not None and hasattr(value, "__dict__"):
                for name in seen["integrity"]["on_answer"]:
                    value.__dict__.pop(name, None)  # a method set on the model itself: Keras' own is used
            export(namespace, files, job, seen)
            code = 0
        except BaseException:
            write_json(files["export.json"], {"found": False, "problem": traceback.format_exc(limit=3)[-2000:], **seen})
        finally:
            os._exit(code)
    if watcher >= 0:
        try:
            os.write(watcher, f"{child}\n".encode())
        except OSError:
            pass  # the run closed it: the export goes on without the run being stopped
    os.waitpid(child, 0)


def strategy_names(model, namespace):
    """The notebook's variables that hold the distribution strategy whose scope the model
    was made in ([] if it was made outside every strategy's scope the notebook names)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return []
    try:
        made_in = getattr(model, "_distribute_strategy", None)  # Keras keeps the strategy it was made in
        if made_in is None:
            return []
        return sorted(key for key, value in namespace.items()
                      if isinstance(key, str) and isinstance(value, tf.distribute.Strategy) and value is made_in)[:8]
    except Exception:  # the notebook's namespace is the student's: whatever it holds, say nothing
        return []


def warm_up(modules):
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # a name that is not a module (`from a import function`), or a broken one:
            pass  # the cell that imports it meets the same error in its own time


def run_job(shell, job, channels):
    files, witness = channels[:2]
    watcher = channels[2] if len(channels) > 2 else -1
    progress = Progress(os.path.join(job["out"], "progress"))
    run_cells(shell, job, files, witness, progress)
    progress.started("(export)")
    try:
        seen = integrity(shell.user_ns, job.get("answer", "model"))  # what the cells changed, before it is undone
        restore()  # the cells may have rewritten the runner's own functions, export_apart among them
        export_apart(shell.user_ns, files, job, watcher, seen)
    except Exception:
        write_json(files["export.json"], {"found": False, "problem": traceback.format_exc(limit=3)[-2000:]})


# --- the zygote ----------------------------------------------------------------------------

_PR_SET_DUMPABLE, _PR_CAPBSET_DROP = 4, 24
_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_CAPABILITY_VERSION_3 = 0x20080522


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        ctypes, _ = _libc()
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 2, 4, 8, 32, 4096, 16384


def _mount(source, target, kind, flags, options):
    _, libc = _libc()
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    _check(libc.mount(encode(source), encode(target), encode(kind), flags, encode(options)), f"mount {target}")


def _isolate(slot, slots):
    """Move into new user, PID, mount, IPC, network (its loopback up) and UTS namespaces (the
    next child is process 1 of the new PID namespace, which mounts its own /proc), with the
    slot's disk as /scratch, /tmp, /dev/shm and /keras, and every slot hidden. Run in the child, before any of the run's code."""
    _, libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    # A process that is not dumpable cannot write its own id maps (its /proc files are root's).
    _check(libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWPID | _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWNET | _CLONE_NEWUTS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    _loopback_up()
    place = os.path.join(slots, str(slot))
    # Keras' folder is the slot's too (it caches there), with the run's own copy of the
    # pretrained weights (the grader's, made before `go`) in models/, read-only.
    models = os.path.join(place, "keras", "models")
    _mount(models, models, None, _MS_BIND, None)
    _mount(None, models, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    for name, target in (("scratch", "/scratch"), ("tmp", "/tmp"), ("shm", "/dev/shm"), ("keras", "/keras")):
        _mount(os.path.join(place, name), target, None, _MS_BIND | _MS_REC, None)
    _mount("tmpfs", slots, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=0")


# The kernel counts namespaces and inotify objects per user, across nested user namespaces:
# every sandbox's user is the same outside, so a run that made thousands would leave none
# for the run beside it (found in a security review). The run may make none, and few of these.
_RUN_LIMITS = {**{f"max_{kind}_namespaces": 0 for kind in ("user", "pid", "mnt", "ipc", "net", "uts", "cgroup", "time")},
               "max_inotify_instances": 16, "max_inotify_watches": 4096, "max_fanotify_groups": 0, "max_fanotify_marks": 0}


def _cap_namespaces():
    """Set the run's own user namespace's limits (_RUN_LIMITS): they bind it and everything below it."""
    for name, value in _RUN_LIMITS.items():
        try:
            with open(f"/proc/sys/user/{name}", "w") as handle:
                handle.write(str(value))
        except FileNotFoundError:
            pass  # this kernel does not count that


def _loopback_up():
    """The new network namespace's loopback, up (its only interface), as in the sandbox before."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as handle:
        flags = struct.unpack("16sH", fcntl.ioctl(handle, 0x8913, struct.pack("16sH", b"lo", 0))[:18])[1]  # SIOCGIFFLAGS
        fcntl.ioctl(handle, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _drop_capabilities():
    """No capability left, in any set (the new user namespace gave this process all of them)."""
    ctypes, libc = _libc()
    for number in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, number, 0, 0, 0) != 0 and ctypes.get_errno() == 1:  # EPERM
            raise OSError(1, "cannot drop capabilities from the bounding set")
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    with open("/proc/self/status") as handle:
        status = handle.read()
    for line in status.splitlines():
        if line.startswith(("CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:")) and int(line.split()[1], 16):
            raise OSError(1, f"a capability is left: {line}")


def _child(shell, config, go, slot, theirs):
    """The forked child: wait for the grader's word, isolate, run the job. Never returns.
    `theirs`: the zygote's descriptors of other children (closed here at once)."""
    import resource

    code = 70
    try:
        os.setsid()  # a group of its own: a signal to "its group" (kill 0) reaches no other run, nor the zygote
        for fd in theirs:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the zygote's conversation with the grader is not the run's
        os.dup2(devnull, 1)
        os.close(devnull)
        signal_default()
        if os.read(go, 16) != b"go":
            os._exit(0)  # not needed after all
        os.close(go)
        # The run's stderr, its job and the files it reports through: the slot's, opened while the slots can still be seen.
        place = os.path.join(config["slots"], str(slot))
        stderr = os.open(os.path.join(place, "stderr.txt"), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        os.dup2(stderr, 2)
        os.close(stderr)
        with open(os.path.join(place, "scratch", "job.json")) as handle:
            job = json.load(handle)
        channels = open_channels(place, len(job["cells"]))
        # the watcher's own record of the export (see _watch_run), for the grader only
        record = os.open(os.path.join(place, "export", "watcher"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        _, libc = _libc()
        if config["isolate"]:
            _isolate(slot, config["slots"])
            scratch = "/scratch"
            # This process stays outside the run's PID namespace, where the run could see it
            # in /proc: not dumpable (the run is, for its own tools' sake: it is alone there).
            _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
            told, tell = os.pipe()
            run = os.fork()
            if run:
                os.close(tell)
                # what the run's report files are: the export's descriptors must still name them when it writes
                files = {fd: _identity(fd) for fd in channels[0].values()}
                for fd in (*channels[0].values(), *channels[1]):
                    os.close(fd)
                _end_like(_watch_run(run, told, record, files))
            os.close(told)
            os.close(record)
            channels = (*channels, tell)
            os.setsid()
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
            _cap_namespaces()
            _drop_capabilities()
        else:  # no sandbox (the instructor said so): the slot's folders by their own paths
            scratch = os.path.join(place, "scratch")
            os.environ.update(HOME=scratch, TMPDIR=os.path.join(place, "tmp"), MPLCONFIGDIR=os.path.join(scratch, ".matplotlib"),
                              KERAS_HOME=os.path.join(place, "keras"))
            os.close(record)  # no watcher without a sandbox: the grader believes the export as it is
        _check(libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_seconds"], config["cpu_seconds"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"], config["file_bytes"]))
        os.chdir(scratch)
        run_job(shell, job, channels)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything is written; skip the interpreter's teardown (with TensorFlow loaded it takes seconds).
        os._exit(code)


def _identity(fd):
    found = os.fstat(fd)
    return found.st_dev, found.st_ino


def _replaced(pid, files):
    """The descriptors of the run's process `pid` that no longer name the report file they
    were opened on (pointed at another file, or closed), as a list of numbers."""
    replaced = []
    for fd, identity in files.items():
        try:
            found = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            replaced.append(fd)
            continue
        if (found.st_dev, found.st_ino) != identity:
            replaced.append(fd)
    return replaced


def _watch_run(run, told, record=-1, files=None):
    """Wait for the run (in the zygote's child, outside the run's namespaces); returns its
    wait status. When the run says its export has begun (a line with the export child's
    id, on `told`), every process of the run but that child is stopped, and once the child
    has ended the run is killed and counts as ended well: nothing the cells left running
    (a thread, a process) acts between the export and the run's end. A run that says so
    early, or names another process, only stops itself (see SECURITY.md).

    The run mounted its own /proc where this process looks (they share a mount namespace):
    its processes are found and signalled there, through their /proc folders, by their ids
    in the run's namespace. What happened goes into `record`, a file of the slot's that only
    this process holds: "export" once the run was stopped for its export ("tampered" if the
    export's descriptors no longer name the report files they were opened on), else "closed" (the
    run closed its end of `told` first: it is killed then, as a run that tampered with the
    runner) or "ended" (the run ended without exporting). The grader believes an export
    only after "export"."""
    import select
    import signal

    alive = os.pidfd_open(run)
    heard = b""
    while True:
        ready, _, _ = select.select([alive, told], [], [])
        if alive in ready:
            _note(record, "ended")
            return os.waitpid(run, 0)[1]
        piece = os.read(told, 64)
        if not piece:  # the run closed the runner's end before the export: nothing it reports now is the runner's
            _note(record, "closed")
            os.kill(run, signal.SIGKILL)
            return os.waitpid(run, 0)[1]
        heard += piece
        if b"\n" not in heard:
            continue
        exporter = heard.split(b"\n", 1)[0].decode(errors="replace").strip()
        # the export writes through the descriptors the runner opened before the cells: a run
        # that pointed them at other files (having written its own report into them first)
        # is not believed. They are read now, while the export child still waits for the rest
        # of the run to be stopped (only it changes its own descriptors, and it goes on only
        # once the run is still): read after the stop, an honest export may already have ended,
        # its descriptors gone with it, on a machine slow to wake this process
        found = "tampered" if exporter.isdigit() and _replaced(exporter, files or {}) else "export"
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid != exporter:
                _signal(pid, signal.SIGSTOP)
        _note(record, found)
        while exporter.isdigit() and exporter != "1" and _running(exporter):
            time.sleep(0.002)
        os.kill(run, signal.SIGKILL)  # process 1 of the run's namespace: everything in it goes
        os.waitpid(run, 0)
        return 0


def _note(record, word):
    if record >= 0:
        try:
            os.write(record, f"{word}\n".encode())
        except OSError:
            pass


def _signal(pid, number):
    """Send `number` to the run's process `pid` (its id in the run's namespace)."""
    import signal

    try:
        folder = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        signal.pidfd_send_signal(folder, number)
    except OSError:
        pass
    finally:
        os.close(folder)


def _running(pid):
    """Whether the run's process `pid` exists and has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _end_like(status):
    """Exit as the run ended: with its code, or killed by its signal (the zygote reports it)."""
    import signal

    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP: their action is the default already
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def signal_default():
    """The signal handling of a fresh interpreter (the zygote ignores Ctrl-C)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


def zygote(config_json, modules=""):
    import select
    import signal

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = json.loads(config_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Config()
    settings.HistoryManager.enabled = False  # no database, no thread: In and Out are kept in memory
    shell = InteractiveShell.instance(config=settings, colors="NoColor")
    shell.InteractiveTB.set_mode(mode="Plain")
    warm_up([name for name in modules.split(",") if name])
    capture()
    _, libc = _libc()
    _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    commands = os.fdopen(0, "rb", buffering=0)
    answers = os.fdopen(1, "wb", buffering=0)

    def say(text):
        answers.write(f"{text}\n".encode())

    say("ready")
    told = {}  # child -> the pipe end that gives it its word
    watched = {}  # pidfd -> child, for each child alive
    heard = b""
    while True:
        readable, _, _ = select.select([commands.fileno(), *watched], [], [])
        for fd in readable:
            if fd in watched:  # a child ended
                child = watched.pop(fd)
                os.close(fd)
                _, status = os.waitpid(child, 0)
                if child in told:
                    os.close(told.pop(child))
                say(f"exit {child} {os.waitstatus_to_exitcode(status)}")
                continue
            piece = commands.read(4096)
            if not piece:
                raise SystemExit(0)  # the grader closed the conversation: the children die with the sandbox
            heard += piece
            while b"\n" in heard:
                line, _, heard = heard.partition(b"\n")
                word, _, rest = line.decode().strip().partition(" ")
                if word == "fork":
                    go, tell = os.pipe()
                    theirs = [tell, *told.values(), *watched]
                    child = os.fork()
                    if child == 0:
                        _child(shell, config, go, int(rest), theirs)
                    os.close(go)
                    told[child] = tell
                    watched[os.pidfd_open(child)] = child
                    say(f"forked {child}")
                elif word in ("go", "drop") and rest.isdigit() and int(rest) in told:
                    tell = told.pop(int(rest))
                    if word == "go":
                        os.write(tell, b"go")
                    os.close(tell)


if __name__ == "__main__":
    zygote(*sys.argv[1:3])
