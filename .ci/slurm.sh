#!/usr/bin/env bash
# A real single-node Slurm with 2 fake GPUs, for the test suite (Debian 12, as root).
#
#   .ci/slurm.sh up        install (if needed), configure and start munged, slurmctld, slurmd;
#                          idempotent: a healthy cluster with the same config is left alone
#   .ci/slurm.sh down      stop the daemons (by pid), cancelling jobs first
#   .ci/slurm.sh restart-controller   stop and start slurmctld only (jobs keep running)
#   .ci/slurm.sh status    exit 0 when the node is up and idle/allocated
#
# Daemons are started with stdin/stdout/stderr redirected and every inherited descriptor
# above 2 closed: Slurm daemons keep inherited descriptors, and one holding CI's output
# pipe would make the whole CI run hang.
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool
FAKE_GPU_DIR=/var/spool/slurm-fakegpu
LOG_DIR=/var/log/slurm-ci
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
HOST=$(hostname -s)

log() { echo "slurm.sh: $*" >&2; }

# Run a daemon detached from our descriptors.
spawn() {
    python3 -c 'import os, sys; os.closerange(3, 1 << 16); os.execvp(sys.argv[1], sys.argv[1:])' "$@" \
        </dev/null >>"$LOG_DIR/spawn.log" 2>&1
}

wait_until() {  # wait_until SECONDS CMD...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
        sleep 0.2
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        install -d -m 0700 -o munge -g munge /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    spawn runuser -u munge -- /usr/sbin/munged
    wait_until 10 bash -c 'munge -n | unmunge' || { log "munged did not start"; exit 1; }
}

fake_gpus() {
    install -d "$FAKE_GPU_DIR"
    local i
    for i in 0 1; do
        local dev="$FAKE_GPU_DIR/gpu$i"
        if [ ! -c "$dev" ]; then
            rm -f "$dev"
            if ! mknod -m 666 "$dev" c 1 3 2>/dev/null; then
                # no mknod permission: existing character devices work as well
                ln -sf "$([ "$i" = 0 ] && echo /dev/null || echo /dev/zero)" "$dev"
            fi
        fi
    done
}

write_config() {
    local cpus mem
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    mem=$((mem * 9 / 10))
    install -d "$CONF_DIR" "$SPOOL/slurmctld" "$SPOOL/slurmd" "$LOG_DIR"
    cat >"$CONF_DIR/slurm.conf.new" <<CONF
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
KillWait=5
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    cat >"$CONF_DIR/gres.conf.new" <<CONF
NodeName=$HOST Name=gpu File=$FAKE_GPU_DIR/gpu0
NodeName=$HOST Name=gpu File=$FAKE_GPU_DIR/gpu1
CONF
    CHANGED=0
    for f in slurm.conf gres.conf; do
        if ! cmp -s "$CONF_DIR/$f.new" "$CONF_DIR/$f"; then
            mv -f "$CONF_DIR/$f.new" "$CONF_DIR/$f"
            CHANGED=1
        else
            rm -f "$CONF_DIR/$f.new"
        fi
    done
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME
    if pid_alive "$1"; then
        local pid
        pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        wait_until 15 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        log "stopped $2 ($pid)"
    fi
    rm -f "$1"
}

start_ctld() {
    if ! pid_alive "$CTLD_PID"; then
        spawn slurmctld
    fi
    wait_until 20 scontrol ping || { log "slurmctld did not answer; see $LOG_DIR/slurmctld.log"; exit 1; }
}

node_ready() {
    local state
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    case "$state" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

start_slurmd() {
    if ! pid_alive "$SLURMD_PID"; then
        spawn slurmd
    fi
    if ! wait_until 20 node_ready; then
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        wait_until 20 node_ready || { log "node not ready: $(sinfo -h -N -o '%T %E')"; exit 1; }
    fi
}

smoke_job() {
    # The first job after slurmctld starts waits a few seconds; absorb that here.
    local id
    id=$(sbatch --parsable --output=/dev/null --wrap true)
    wait_until 30 bash -c "scontrol -o show job $id | grep -q JobState=COMPLETED" \
        || { log "smoke job $id did not complete: $(scontrol -o show job "$id")"; exit 1; }
}

cmd_up() {
    install_packages
    install -d "$LOG_DIR"
    start_munge
    fake_gpus
    write_config
    if [ "$CHANGED" = 1 ]; then
        log "configuration changed: (re)starting daemons"
        stop_pidfile "$SLURMD_PID" slurmd
        stop_pidfile "$CTLD_PID" slurmctld
    fi
    start_ctld
    start_slurmd
    smoke_job
    log "up: $(sinfo -h -o '%P %D %T %G')"
}

cmd_down() {
    if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
        scancel --user=root >/dev/null 2>&1 || true
    fi
    stop_pidfile "$SLURMD_PID" slurmd
    stop_pidfile "$CTLD_PID" slurmctld
}

cmd_restart_controller() {
    stop_pidfile "$CTLD_PID" slurmctld
    install -d "$LOG_DIR"
    start_ctld
    wait_until 30 node_ready || { log "node not ready after restart: $(sinfo -h -N -o '%T %E')"; exit 1; }
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    restart-controller) cmd_restart_controller ;;
    status) scontrol ping >/dev/null 2>&1 && node_ready ;;
    *) echo "usage: $0 up|down|restart-controller|status" >&2; exit 2 ;;
esac
