#!/usr/bin/env bash
# Installs the real peers the tests start (etcd, Prometheus, node-exporter, wrk, vmagent, chromium) and curl
# from Debian's packages when they are missing. apt does not start their services here; the tests start and
# stop them by PID.
set -euo pipefail
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the UI tests drive it with playwright
command -v npm >/dev/null 2>&1 || need+=(npm)  # axe-core for the UI accessibility check
command -v curl >/dev/null 2>&1 || need+=(curl)  # the docs' curl examples are run as written
command -v vmagent >/dev/null 2>&1 || need+=(victoria-metrics)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} from Debian's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
