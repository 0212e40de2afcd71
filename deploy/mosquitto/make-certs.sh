#!/usr/bin/env bash
# Make a private CA and a server certificate for the broker (and optionally a client cert per
# device). Usage: make-certs.sh OUTDIR BROKER_HOSTNAME [DEVICE_ID...]
set -euo pipefail
out=${1:?OUTDIR}; host=${2:?BROKER_HOSTNAME}; shift 2
mkdir -p "$out"; cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=edge-agent-ca" -keyout ca.key -out ca.crt 2>/dev/null
san="DNS:$host"; [[ $host =~ ^[0-9.]+$ ]] && san="IP:$host"
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile <(printf 'subjectAltName=%s' "$san") -out server.crt 2>/dev/null
for dev in "$@"; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$dev" -keyout "$dev.key" -out "$dev.csr" 2>/dev/null
  openssl x509 -req -in "$dev.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -out "$dev.crt" 2>/dev/null
done
rm -f ./*.csr
echo "wrote CA, server and client certificates to $out"
