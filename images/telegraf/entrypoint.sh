#!/bin/sh
# As the official image's: a first argument that is an option goes to telegraf.
set -e
if [ "${1#-}" != "$1" ]; then set -- telegraf "$@"; fi
exec "$@"
