"""Where and when a run may start on this machine: the GPU and CPU inventory, leases, the FIFO queue
and its dispatcher.
"""
