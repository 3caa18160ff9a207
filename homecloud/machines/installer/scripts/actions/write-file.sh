# A file of the workflow's into the machine's root.
. /lib/hc/lib.sh
mount_target || exit 1
path=$(with_param path)
case "$path" in /*) ;; *) echo "path must be absolute"; exit 1 ;; esac
mkdir -p "$TARGET$(dirname "$path")"
jq -j '.content' "$HC_RUN/with.json" > "$TARGET$path"
# A YAML mode like 0644 arrives as a number (420): chmod wants it in octal.
mode=$(jq -r 'if (.mode | type) == "number" then "0" + (.mode | tostring) else (.mode // "") end' "$HC_RUN/with.json")
case "$mode" in 0[1-9]*) mode=$(printf '%o' "${mode#0}") ;; esac
[ -n "$mode" ] && chmod "$mode" "$TARGET$path"
echo "wrote $path ($(wc -c < "$TARGET$path") bytes)"
