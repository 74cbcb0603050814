# Shared by the ingest scripts (sourced, not run): a collector configuration
# on a database in a scratch directory, and waiting for a collector to answer.

# write_config HUSH DIR PORT: DIR/c.toml, the default configuration with its
# database at DIR/c.sqlite and listening on 127.0.0.1:PORT.
write_config() {
  "$1" collector config |
    sed -e "s|^database = .*|database = \"$2/c.sqlite\"|" -e "s|^listen = .*|listen = \"127.0.0.1:$3\"|" >"$2/c.toml"
}

# wait_healthy PORT TRIES: polls /healthz every 0.2 s, at most TRIES times.
wait_healthy() {
  for _ in $(seq "$2"); do
    curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.2
  done
}
