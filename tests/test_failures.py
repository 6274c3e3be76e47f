from mcp_server.core.monitoring.failures import classify

OOM = """step 10 loss=2.3
Traceback (most recent call last):
  File "train.py", line 3, in <module>
    x = torch.empty(10**12, device="cuda")
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.64 TiB. GPU 0 has a total capacity of 79.1 GiB
"""

BUSY = "RuntimeError: CUDA error: all CUDA-capable devices are busy or unavailable\n"

TRACEBACK = """epoch 1
Traceback (most recent call last):
  File "train.py", line 9, in <module>
    main()
  File "train.py", line 7, in main
    raise ValueError("bad batch size")
ValueError: bad batch size
"""


def test_own_oom_is_not_retryable() -> None:
    f = classify(1, OOM)
    assert f.kind == "cuda_oom" and not f.retryable
    assert any("CUDA out of memory" in line for line in f.lines)


def test_busy_device_is_contention_and_retryable() -> None:
    f = classify(1, BUSY)
    assert f.kind == "contention" and f.retryable


def test_python_exception_keeps_the_traceback() -> None:
    f = classify(1, TRACEBACK)
    assert f.kind == "exception" and "ValueError: bad batch size" in f.summary
    assert f.lines[0].startswith("Traceback") and f.lines[-1] == "ValueError: bad batch size"


def test_signals_and_nccl() -> None:
    assert classify(137, "").summary.startswith("killed by SIGKILL")
    assert classify(1, "NCCL error in: ProcessGroupNCCL.cpp:1234, unhandled system error").kind == "nccl"
    assert classify(2, "usage: x").kind == "exit_code"


def test_os_device_busy_is_not_gpu_contention() -> None:
    """EBUSY from the filesystem (an NFS silly-rename file still open) must not requeue."""
    nfs = (
        "Traceback (most recent call last):\n"
        '  File "train.py", line 40, in <module>\n'
        "    shutil.rmtree(tmpdir)\n"
        "OSError: [Errno 16] Device or resource busy: '.nfs000000000123abcd00000042'\n"
    )
    f = classify(1, nfs)
    assert f.kind == "exception" and not f.retryable
    assert classify(1, "RuntimeError: CUDA error: device busy\n").kind == "contention"
    assert classify(1, "cudaErrorDevicesUnavailable: CUDA-capable device(s) is/are busy\n").retryable


def test_oom_wins_over_contention_in_the_same_log() -> None:
    f = classify(1, BUSY + OOM)
    assert f.kind == "cuda_oom" and not f.retryable


def test_a_failure_shows_the_users_own_frame_under_a_deep_library_stack() -> None:
    torch = "/home/u/proj/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py"
    stack = [
        "Traceback (most recent call last):",
        '  File "/home/u/proj/train.py", line 9, in <module>',
        "    loss = model(batch)",
    ]
    for depth in range(15):  # library internals between the user's line and the error
        stack += [f'  File "{torch}", line {1500 + depth}, in _call_impl', "    return forward_call(*args)"]
    stack += ["RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x3 and 4x5)"]
    f = classify(1, "\n".join(["step 1 loss=2.3", *stack]))
    assert f.kind == "exception" and f.lines[0] == "Traceback (most recent call last):"
    assert (
        '  File "/home/u/proj/train.py", line 9, in <module>' in f.lines
        and "    loss = model(batch)" in f.lines
    )
    assert f.lines[-1].startswith("RuntimeError: mat1 and mat2") and len(f.lines) <= 16
