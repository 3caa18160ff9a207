# A machine image stream as hc-provision sends it (homecloud/provision/image_stream.py), read
# from standard input into `btrfs receive DIR`:
#     sh receive-image.sh ENCODING DIR < STREAM       ENCODING: zstd or identity
# The stream is `btrfs send` then a 12-byte trailer (homecloud/snapshots/framing.py: length and
# CRC-32C). btrfs receive checks the CRC-32C of every command as it goes and, told to stop at the
# stream's end command (-e), reads nothing after it: what is left must be the trailer, whole.
# So a changed byte fails btrfs receive, a cut stream fails it or leaves no trailer, and no
# byte passes through one more program on the way (each of tee, head and sha256sum cost a copy
# and, under emulation, as much as zstd). zstd -d checks its own frame checksum besides.
# Prints the stream's length from the trailer; exits non-zero when anything did not hold.
set -o pipefail
encoding=$1 dir=$2

receive() {
    btrfs receive -e -q "$dir" || return 1
    trailer=$(od -An -v -tx1 | tr -d ' \n')
    if [ "${#trailer}" -ne 24 ]; then
        echo "the stream does not end in its 12-byte trailer: it was cut or damaged" >&2
        return 1
    fi
    echo "received a stream of $((0x${trailer%????????})) bytes, its trailer after its end"
}

case $encoding in
    zstd) zstd -dc | receive ;;
    identity) receive ;;
    *) echo "the image stream's encoding $encoding is unknown to this installer" >&2; exit 1 ;;
esac
