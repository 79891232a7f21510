# Sourced by the limits benches: make a key through the CLI and, given a limits override, set it
# through the admin API of the gateway at $URL (admin key bench-admin). Needs ROOT and PY.
new_key() {  # config, name, [limits override JSON] -> the key's secret
  local out id
  out=$("$ROOT/.venv/bin/stellargate" keys create --config "$1" --name "$2" --json)
  if [ -n "${3:-}" ]; then
    id=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$out")
    curl -sf -X PATCH "$URL/admin/v1/keys/$id/limits" -H "authorization: Bearer bench-admin" \
      -H "content-type: application/json" -d "{\"limits\": $3}" > /dev/null
  fi
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)["key"])' <<<"$out"
}
LIFTED='{"rps": "unlimited", "concurrency": "unlimited", "tpm": "unlimited", "spend_per_day": "unlimited"}'
