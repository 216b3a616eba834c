#!/usr/bin/env bash
# A single-node Slurm (munge, slurmctld, slurmd) from Debian's packages, for tests/test_slurm_mlflow_server.py.
# Idempotent: installs only what is missing. Needs root; elsewhere it says why and exits 0 (the tests then skip).
# It installs only: the tests write the configuration and start/stop the daemons themselves.
set -euo pipefail
need=()
for cmd in munged slurmctld slurmd sbatch squeue; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "slurm: already installed ($(PATH="$PATH:/usr/sbin" slurmctld -V 2>/dev/null || echo '?'))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm: missing ${need[*]} and not root; the Slurm tests will skip" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm: missing ${need[*]} and no apt-get; the Slurm tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >/dev/null
echo "slurm: installed ($(slurmctld -V))"
