#!/usr/bin/env bash
# `make demo`: the whole stack on this machine. Pebble (ACME CA) with
# pebble-challtestsrv as its DNS, the proxy-acme sidecar, Envoy with the wasm
# filter and the shipped envoy/envoy.yaml, and a small app behind Envoy.
# Ports: Envoy HTTP 8080, HTTPS 8443, admin 9901; app 8081; sidecar 8555 (ops 8558);
# Pebble ACME 14000, management 15000; challtestsrv DNS 8053. Ctrl-C stops all.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${PROXY_ACME_DEMO_DIR:-${TMPDIR:-/tmp}/proxy-acme-demo}
domain=demo.proxy-acme.test
sidecar_bin=${PROXY_ACME_BIN:-$root/target/release/proxy-acme}
wasm=$root/target/wasm32-wasip1/release/proxy_acme_filter.wasm

envoy=${PROXY_ACME_ENVOY:-envoy}
[ -x "$envoy" ] || envoy=envoy
for bin in pebble pebble-challtestsrv "$envoy" openssl curl python3 "$sidecar_bin"; do
  command -v "$bin" >/dev/null 2>&1 || { echo "demo: $bin is missing; run 'make demo' (it installs and builds)" >&2; exit 1; }
done
[ -f "$wasm" ] || { echo "demo: $wasm is missing; run 'make wasm'" >&2; exit 1; }
for port in 8080 8443 9901 8081 8555 8558 14000 15000 8053 8055; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is in use; stop whatever listens there first" >&2; exit 1
  fi
done

rm -rf "$work"
mkdir -p "$work/state" "$work/www"
chmod 700 "$work/state"
cd "$work"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "demo: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
start() { # name, command...
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

# A throwaway CA for Pebble's own HTTPS listener (not the ACME root).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=proxy-acme-demo-minica -addext basicConstraints=critical,CA:TRUE \
  -keyout minica.key -out minica.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout pebble.key -out pebble.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >pebble.ext
openssl x509 -req -in pebble.csr -CA minica.pem -CAkey minica.key -CAcreateserial -days 30 \
  -extfile pebble.ext -out pebble.pem 2>/dev/null

cat >pebble.json <<JSON
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
  "certificate": "$work/pebble.pem", "privateKey": "$work/pebble.key",
  "httpPort": 8080, "tlsPort": 8443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON

cat >proxy-acme.toml <<TOML
[storage]
directory = "$work/state"

[listen]
http = "127.0.0.1:8555"

[envoy]
sds_socket = "$work/sds.sock"

[admin]
socket = "$work/admin.sock"

[resolvers.pebble]
email = "demo@proxy-acme.test"
ca_server = "https://127.0.0.1:14000/dir"
ca_certificate = "$work/minica.pem"
http_challenge = {}

[[certificates]]
name = "demo"
domains = ["$domain"]
resolver = "pebble"
TOML

sed -e "s#/usr/local/lib/proxy-acme/proxy_acme_filter.wasm#$wasm#" \
    -e "s#/run/proxy-acme/sds.sock#$work/sds.sock#" \
    -e "s#address: 0.0.0.0#address: 127.0.0.1#" \
    "$root/envoy/envoy.yaml" >envoy.yaml
echo "Hello from the app behind Envoy, over a certificate proxy-acme obtained." >www/index.html

start challtestsrv pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 127.0.0.1:8053 \
  -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055
start pebble env PEBBLE_VA_NOSLEEP=1 pebble -config pebble.json -dnsserver 127.0.0.1:8053
start app python3 -m http.server 8081 --bind 127.0.0.1 --directory www
start envoy "$envoy" -c envoy.yaml --concurrency 1 --disable-hot-restart --log-level warn
wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "demo: $what did not come up; see $work/*.log" >&2; exit 1
}
# The CA and Envoy's HTTP listener must be up before the first order.
wait_for pebble curl -sf --cacert minica.pem https://127.0.0.1:14000/dir
wait_for envoy curl -sf http://127.0.0.1:9901/ready
start proxy-acme env PROXY_ACME_LOG=info "$sidecar_bin" run --config proxy-acme.toml

echo "demo: waiting for the certificate for $domain (logs in $work)"
for _ in $(seq 1 120); do
  if curl -sf --cacert minica.pem https://127.0.0.1:15000/roots/0 -o pebble-root.pem 2>/dev/null &&
     curl -sf --cacert pebble-root.pem --resolve "$domain:8443:127.0.0.1" "https://$domain:8443/" -o /dev/null; then
    echo
    echo "  Envoy serves $domain with a certificate from Pebble. Try:"
    echo
    echo "  curl --cacert $work/pebble-root.pem --resolve $domain:8443:127.0.0.1 https://$domain:8443/"
    echo
    echo "  $sidecar_bin certs --config $work/proxy-acme.toml"
    echo
    echo "demo: running; Ctrl-C stops everything"
    wait
    exit 0
  fi
  sleep 1
done
echo "demo: no certificate after 120 s; see $work/proxy-acme.log and $work/envoy.log" >&2
exit 1
