# A command of the workflow's, run inside the machine's root (chroot).
. /lib/hc/lib.sh
mount_target || exit 1
for fs in proc sys dev; do
    mkdir -p "$TARGET/$fs"
    is_mounted "$TARGET/$fs" || mount --bind "/$fs" "$TARGET/$fs"
done
# The argv as NUL-separated words, so no word is split or globbed on the way.
jq -j '.argv[] | . + "\u0000"' "$HC_RUN/with.json" | xargs -0 chroot "$TARGET"
status=$?
for fs in dev sys proc; do umount "$TARGET/$fs"; done
exit $status
