from mcp_server.core.failures import classify

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
