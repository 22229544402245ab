# The warm zygote of one sandbox worker (embedded in ilf-sandbox, started once per worker).
#
# Processes:   Rust worker --pipes-- Z --fork--> I (pid 1 of the worker's pid namespace) --fork per job--> G
#   Z  was set up (before exec) so that its children start a new pid namespace; forks I and waits.
#   I  the request loop and the trusted monitor: reads one request from fd 0, forks the job, enforces
#      the wall deadline with SIGKILL, then SIGKILLs every other process of the namespace
#      (kill(-1) from its init), so nothing the job spawned outlives it; answers on fd 1. As the
#      namespace's init it cannot be killed from inside, and it holds no test expectations.
#   G  the job: drops capabilities, sets rlimits, runs the program, the setup, then evaluates each
#      expression the trusted side asked for and writes one record per expression to fd 3.
# G never receives expected values: the Rust side keeps them and compares, so nothing G writes can
# turn into a pass unless it carries the right value.
import builtins
import gc
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

# Modules programs commonly import, loaded once here so jobs do not pay for them.
for _name in (
    "math", "re", "collections", "itertools", "heapq", "bisect", "functools", "operator",
    "string", "cmath", "copy", "random", "array", "datetime", "fractions", "numbers",
    "statistics", "typing", "decimal", "linecache", "struct", "sys",
):
    try:
        __import__(_name)
    except ImportError:
        pass

import linecache  # noqa: E402
import numbers  # noqa: E402



def _exit(code=None):
    raise SystemExit(code)


# `-S` skips `site`, which is what defines exit() and quit(); programs may call them.
builtins.exit = builtins.quit = _exit

PR_CAPBSET_DROP = 24
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
CFG = json.loads(sys.argv[1])
TMP = CFG["tmp"]
DEVNULL = os.open("/dev/null", os.O_RDWR)


def _read_exact(fd, n):
    chunks = []
    while n > 0:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _read_request():
    line = b""
    while not line.endswith(b"\n"):
        b = os.read(0, 1)
        if not b:
            return None
        line += b
    body = _read_exact(0, int(line))
    return None if body is None else json.loads(body)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _clean_tmp():
    for entry in os.listdir(TMP):
        path = os.path.join(TMP, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


# Built once, so that a job drops its capabilities with a single call.
_CAP_HEADER = _CapHeader(0x20080522, 0)
_CAP_DATA = (ctypes.c_uint32 * 6)()
_capset = _libc.capset
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def _keep_only_cleanup_capabilities():
    """For I, once: no capability but those needed to clean any file a job left in its directory.

    The bounding set goes too, so no exec can regain anything."""
    for cap in range(64):
        if cap not in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    keep = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH) | (1 << CAP_FOWNER)
    data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)
    if _capset(ctypes.byref(_CAP_HEADER), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _drop_capabilities():
    # Root keeps no capability: rlimits cannot be raised again; with no_new_privs, no exec regains any.
    if _capset(ctypes.byref(_CAP_HEADER), _CAP_DATA) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _set_limits(req):
    cpu = int(req["cpu_s"])
    # SIGXCPU at the limit; SIGKILL a second later for a job that ignores it.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (req["memory_bytes"], req["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (req["file_bytes"], req["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# ---- the job side (G) -------------------------------------------------------------------------

_MAX_DEPTH = 64


class _Unserializable(Exception):
    pass


def _serializer(max_items, max_chars):
    # Built from references taken before the program runs; the program can still tamper with
    # them, which only changes what it reports, never what it is compared against.
    _type, _len, _id, _set, _bytes, _complex, _getattr = type, len, id, set, bytes, complex, getattr
    str_str, float_float, complex_real, complex_imag = str.__str__, float.__float__, complex.real.__get__, complex.imag.__get__
    INF, NINF = float("inf"), float("-inf")
    int_bit_length, int_int, _ValueError = int.bit_length, int.__int__, ValueError
    T_bool, T_int, T_float, T_complex, T_str, T_bytes = bool, int, float, complex, str, bytes
    T_bytearray, T_list, T_tuple, T_dict, T_set, T_frozenset = bytearray, list, tuple, dict, set, frozenset
    int_repr, float_repr, str_repr, bytes_repr = int.__repr__, float.__repr__, str.__repr__, bytes.__repr__
    _int, _float, _isinstance = int, float, isinstance
    dict_items, list_iter, tuple_iter = dict.items, list.__iter__, tuple.__iter__
    set_iter, fset_iter = set.__iter__, frozenset.__iter__
    Integral, Real, Complex = numbers.Integral, numbers.Real, numbers.Complex
    budget = [0]

    def fl(x):
        if x != x:
            return "float('nan')"
        if x == INF or x == NINF:
            return "float('inf')" if x > 0 else "float('-inf')"
        return float_repr(x)

    def ser(v, depth, seen):
        budget[0] += 1
        if budget[0] > max_items:
            raise _Unserializable("more than %d items" % max_items)
        if depth > _MAX_DEPTH:
            raise _Unserializable("nested deeper than %d" % _MAX_DEPTH)
        if v is None:
            return "None"
        if v is True:
            return "True"
        if v is False:
            return "False"
        t = _type(v)
        if _isinstance(v, T_bool):
            return "True" if v else "False"
        if _isinstance(v, T_int):
            bits = int_bit_length(v)
            if bits > 200000:
                raise _Unserializable("an int of %d bits" % bits)
            try:
                return int_repr(int_int(v))
            except _ValueError:
                raise _Unserializable("an int too large to print")
        if _isinstance(v, T_float):
            return fl(float_float(v))
        if _isinstance(v, T_complex):
            return "complex(%s, %s)" % (fl(complex_real(v)), fl(complex_imag(v)))
        if _isinstance(v, (T_str, T_bytes, T_bytearray)):
            n = _len(v)
            budget[0] += n // 16
            if n > max_chars:
                raise _Unserializable("a %s of %d characters" % (t.__name__, n))
            if _isinstance(v, T_str):
                return str_repr(str_str(v))
            return bytes_repr(_bytes(v))
        if _isinstance(v, (T_list, T_tuple, T_dict, T_set, T_frozenset)):
            if _id(v) in seen:
                raise _Unserializable("a container that contains itself")
            seen.add(_id(v))
            try:
                if _isinstance(v, T_list):
                    return "[" + ", ".join([ser(x, depth + 1, seen) for x in list_iter(v)]) + "]"
                if _isinstance(v, T_tuple):
                    items = [ser(x, depth + 1, seen) for x in tuple_iter(v)]
                    return "(" + ", ".join(items) + ("," if _len(items) == 1 else "") + ")"
                if _isinstance(v, T_dict):
                    return "{" + ", ".join(
                        [ser(k, depth + 1, seen) + ": " + ser(x, depth + 1, seen) for k, x in dict_items(v)]
                    ) + "}"
                if _isinstance(v, T_frozenset):
                    return "frozenset([" + ", ".join([ser(x, depth + 1, seen) for x in fset_iter(v)]) + "])"
                items = [ser(x, depth + 1, seen) for x in set_iter(v)]
                return "set([" + ", ".join(items) + "])"
            finally:
                seen.discard(_id(v))
        # Numbers from other libraries compare with literals by value in Python; keep that.
        if _isinstance(v, Integral):
            return int_repr(_int(v))
        if _isinstance(v, Real):
            return fl(_float(v))
        if _isinstance(v, Complex):
            c = _complex(v)
            return "complex(%s, %s)" % (fl(c.real), fl(c.imag))
        raise _Unserializable("an object of type %s" % _getattr(t, "__name__", "?"))

    def serialize(v):
        budget[0] = 0
        return ser(v, 0, _set())

    return serialize


# Built once per worker from untouched builtins; every job inherits it.
_SERIALIZE = _serializer(CFG["max_items"], CFG["output_bytes"] // 4)


# The harness below may run after the program patched builtins or modules; it uses only these
# references, taken now. (A program that breaks the harness anyway only earns an error: verdicts
# are decided on the trusted side.)
_str, _type, _isinstance, _len, _enc = str, type, isinstance, len, json.encoder.encode_basestring_ascii
_BaseException, _SyntaxError, _extract_tb = BaseException, SyntaxError, traceback.extract_tb


def _clean_text(s, limit):
    try:
        s = _str(s)
    except _BaseException:
        s = "<unprintable>"
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s if _len(s) <= limit else s[:limit] + "..."


def _json_error(kind, message, lines=()):
    return '{"type": %s, "message": %s, "traceback": [%s]}' % (
        _enc(_clean_text(kind, 200)), _enc(_clean_text(message, 2000)), ", ".join([_enc(x) for x in lines])
    )


def _error_info(exc, filenames):
    try:
        kind = _type(exc).__name__
    except _BaseException:
        kind = "?"
    lines = []
    try:
        for frame in _extract_tb(exc.__traceback__, limit=64):
            if frame.filename in filenames:
                text = "line %d, in %s" % (frame.lineno, frame.name)
                if frame.line:
                    text += ": " + frame.line.strip()
                lines.append(_clean_text(text, 500))
        if _isinstance(exc, _SyntaxError) and exc.filename in filenames:
            lines.append(_clean_text("line %s: %s" % (exc.lineno, (exc.text or "").strip()), 500))
    except _BaseException:
        pass
    return _json_error(kind, exc, lines[-20:])


def _job(req, result_fd, _compile=compile, _exec=exec, _eval=eval, _enumerate=enumerate,
         _memoryview=memoryview, _exit=os._exit, _write=os.write):
    def emit(line):
        data = (line + "\n").encode("utf-8", "backslashreplace")
        view = _memoryview(data)
        while view:
            view = view[_write(3, view):]

    # /dev/null may itself sit on fd 3, so point 0-2 at it before fd 3 is taken.
    for fd in (0, 1, 2):
        os.dup2(DEVNULL, fd)
    os.dup2(result_fd, 3)
    os.closerange(4, 65536)
    os.chdir(TMP)
    _set_limits(req)
    if req["drop_caps"]:
        _drop_capabilities()

    serialize = _SERIALIZE
    # Traceback lines worth showing: the program's and the setup's (the test is known already).
    names = {"<program>", "<setup>"}
    sources = (("<program>", req["program"], "P"), ("<setup>", req["setup"], "U"))
    g = {"__name__": "__sandbox__", "__builtins__": builtins}
    for filename, text, tag in sources:
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    for filename, text, tag in sources:
        try:
            code = _compile(text, filename, "exec")
        except _BaseException as e:
            emit(("S " if tag == "P" else "T ") + _error_info(e, names))
            _exit(0)
        try:
            _exec(code, g)
        except _BaseException as e:
            emit(tag + " " + _error_info(e, names))
            _exit(0)
    for i, expr in _enumerate(req["exprs"]):
        try:
            value = _eval(_compile(expr, "<test>", "eval"), g)
        except _BaseException as e:
            emit("X %d %s" % (i, _error_info(e, names)))
            continue
        try:
            text = serialize(value)
        except _Unserializable as e:
            emit('N %d {"reason": %s}' % (i, _enc(_clean_text(e.args[0], 200))))
            continue
        except _BaseException as e:
            emit('N %d {"reason": %s}' % (i, _enc("serialization raised " + _clean_text(_type(e).__name__, 100))))
            continue
        emit("V %d %s" % (i, text))
    emit("D")
    _exit(0)


# ---- the monitor and request loop (I) and the namespace holder (Z) ---------------------------


def _sweep(pidns, g):
    """Kills and reaps every process the job left behind."""
    while True:
        try:
            if pidns:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(g, signal.SIGKILL)
        except OSError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        if not pidns:
            return
        time.sleep(0.001)


def _run(req):
    _clean_tmp()
    pidns = req["pid_namespace"]
    result_r, result_w = os.pipe()
    t0 = time.monotonic()
    g = os.fork()
    if g == 0:
        try:
            os.close(result_r)
            if not pidns:
                os.setsid()
            _job(req, result_w)
        finally:
            os._exit(70)
    os.close(result_w)
    pidfd = os.pidfd_open(g)
    deadline = t0 + req["wall_s"]
    cap = req["output_bytes"]
    records, size, overflow, killed = [], 0, False, None
    status = usage = None
    reading = True
    while status is None:
        watch = [pidfd] + ([result_r] if reading else [])
        ready, _, _ = select.select(watch, [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            killed = "wall"
            os.kill(g, signal.SIGKILL)
            _, status, usage = os.wait4(g, 0)
            break
        if result_r in ready:
            chunk = os.read(result_r, 1 << 16)
            size += len(chunk)
            if not chunk:
                reading = False
            elif size > cap:
                # Closing the read end makes further writes fail; the job cannot block us.
                overflow = True
                reading = False
                os.close(result_r)
            else:
                records.append(chunk)
        if pidfd in ready:
            _, status, usage = os.wait4(g, 0)
    wall = time.monotonic() - t0
    os.close(pidfd)
    _sweep(pidns, g)
    if reading:
        # Every writer is dead now, so this ends.
        while size <= cap:
            chunk = os.read(result_r, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            records.append(chunk)
        overflow = size > cap
        os.close(result_r)
    body = b"" if overflow else b"".join(records)
    # Formatted by hand: every field is a number, null, a fixed word or a boolean.
    header = '{"exit_code": %s, "signal": %s, "cpu_s": %r, "wall_s": %r, "killed": %s, "overflow": %s, "records_len": %d}' % (
        os.WEXITSTATUS(status) if os.WIFEXITED(status) else "null",
        os.WTERMSIG(status) if os.WIFSIGNALED(status) else "null",
        usage.ru_utime + usage.ru_stime,
        wall,
        '"wall"' if killed else "null",
        "true" if overflow else "false",
        len(body),
    )
    return header.encode() + b"\n" + body


def _loop():
    _write_all(1, b"ready\n")
    while True:
        req = _read_request()
        if req is None:
            os._exit(0)
        _write_all(1, _run(req))


def main():
    for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    # Objects that exist now are never collected in the children: fewer copied pages per fork.
    gc.freeze()
    if CFG["pid_namespace"]:
        # The Rust side entered the new pid namespace for our children before exec.
        init = os.fork()
        if init != 0:
            os.close(0)
            os.close(1)
            _, status = os.waitpid(init, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        # If Z dies, so does I: the Rust side then sees the worker end and replaces it.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if CFG["drop_caps"]:
        _keep_only_cleanup_capabilities()
    _loop()


main()
