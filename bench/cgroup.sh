# CPU caps for the benchmarks, sourced by edge.sh and tls.sh: each proxy can be held to
# QUOTA % of one core with the cgroup cpu controller (v1 or v2), so that the proxy, not the
# load generator, is the bottleneck, on equal budgets. The caller sets CG_PREFIX (names the
# cgroup directories, so that a cleanup finds its own) and QUOTA.
cg_make() { # name -> cgroup dir with a QUOTA% cap, or nothing
  if [ -w /sys/fs/cgroup/cpu ] && [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    local d=/sys/fs/cgroup/cpu/$CG_PREFIX-$1; mkdir -p "$d" || return 1
    echo 100000 > "$d/cpu.cfs_period_us"; echo $((QUOTA * 1000)) > "$d/cpu.cfs_quota_us"; echo "$d"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    local d=/sys/fs/cgroup/$CG_PREFIX-$1; mkdir -p "$d" || return 1
    echo "$((QUOTA * 1000)) 100000" > "$d/cpu.max"; echo "$d"
  fi
}
cg_join() { # dir pid... : every thread of every pid
  local d=$1; shift
  for p in "$@"; do for t in /proc/"$p"/task/*; do
    if [ -e "$d/tasks" ]; then echo "${t##*/}" > "$d/tasks"; else echo "${t##*/}" > "$d/cgroup.threads" 2>/dev/null || echo "$p" > "$d/cgroup.procs"; fi
  done 2>/dev/null; done
}
cg_leave() { # dir: move its threads back to the root, remove it
  local d=$1 root; root=$(dirname "$d")
  if [ -e "$d/tasks" ]; then while read -r t; do echo "$t" > "$root/tasks"; done < "$d/tasks"
  else while read -r t; do echo "$t" > "$root/cgroup.procs"; done < "$d/cgroup.procs"; fi 2>/dev/null
  rmdir "$d" 2>/dev/null || true
}
cg_cleanup() { # every cgroup this script made
  for d in /sys/fs/cgroup/cpu/"$CG_PREFIX"-* /sys/fs/cgroup/"$CG_PREFIX"-*; do
    if [ -d "$d" ]; then cg_leave "$d"; fi
  done
}
