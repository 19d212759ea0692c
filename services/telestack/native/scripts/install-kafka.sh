#!/usr/bin/env bash
# Install an Apache Kafka 4.x broker natively (no Docker, no tarball download):
# Maven resolves kafka_2.13 + its runtime deps + a Log4j 2 backend from Maven Central
# (see services/telestack/native/scripts/kafka/pom.xml) and copies the jars into a cache dir outside the repo:
#
#   ${TELESTACK_CACHE:-$HOME/.cache/telestack}/kafka/<version>/libs/
#
# Idempotent: a marker file records what was installed; when it matches, the script
# exits at once. Progress goes to stderr; the LAST line of stdout is the libs dir.
#
# Use the result with (see kafka/server.properties.example for a single-node KRaft config):
#   LIBS=$(services/telestack/native/scripts/install-kafka.sh | tail -1)
#   CID=$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
#   java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$CID" -c server.properties --standalone
#   java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
#        -XX:SharedArchiveFile="$LIBS/../kafka.jsa" -cp "$LIBS/*" \
#        -Dlog4j2.configurationFile=services/telestack/native/scripts/kafka/log4j2.properties \
#        -Dkafka.logs.dir=<dir> kafka.Kafka server.properties
#   java -cp "$LIBS/*" kafka.Kafka --version      # prints e.g. 4.4.0
# The -cp string must be exactly "$LIBS/*" for the AppCDS archive (kafka.jsa) to apply.
#
# Env:
#   KAFKA_VERSION   (default 4.4.0)   any 4.x on Maven Central
#   LOG4J_VERSION   (default 2.25.5)
#   TELESTACK_CACHE (default $HOME/.cache/telestack)
#   FORCE=1         reinstall even if the marker is present
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${LOG4J_VERSION:-2.25.5}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka/pom.xml"
CACHE="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
DEST="$CACHE/kafka/$KAFKA_VERSION"
LIBS="$DEST/libs"
MARKER="$DEST/.installed"

log() { echo "[install-kafka] $*" >&2; }

[ -f "$POM" ] || { log "missing $POM"; exit 1; }

# What the marker must say for the cache to count as complete: versions + pom content.
# The JDK build is part of it because the AppCDS archive (below) only works with the JDK that made it.
pom_sum="$(sha256sum "$POM" | cut -c1-16)"
jdk="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.vm.version/ {print $2}' || true)"
want="kafka=$KAFKA_VERSION log4j=$LOG4J_VERSION pom=$pom_sum jdk=${jdk:-none}"

if [ "${FORCE:-0}" != 1 ] && [ -f "$MARKER" ] && [ "$(head -1 "$MARKER")" = "$want" ] \
    && [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    log "Kafka $KAFKA_VERSION already installed ($want)"
    echo "$LIBS"
    exit 0
fi

# --- prerequisites: Java 17+ and Maven -------------------------------------------------
need_apt=()
if ! command -v java >/dev/null 2>&1; then
    need_apt+=(openjdk-17-jre-headless)
else
    jv="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
    if [ "${jv%%.*}" -lt 17 ] 2>/dev/null; then
        log "java $jv found, Kafka 4.x needs 17+"; need_apt+=(openjdk-17-jre-headless)
    fi
fi
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ "${#need_apt[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { log "need ${need_apt[*]}; run as root or install them"; exit 1; }
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

# (Re)compute with the Java we will really use, in case it was just installed.
jdk="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.vm.version/ {print $2}' || true)"
want="kafka=$KAFKA_VERSION log4j=$LOG4J_VERSION pom=$pom_sum jdk=${jdk:-none}"

# --- resolve + copy jars ----------------------------------------------------------------
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
if ! flock -w 600 9; then log "timed out waiting for $DEST/.lock"; exit 1; fi
# Another process may have finished the install while we waited for the lock.
if [ "${FORCE:-0}" != 1 ] && [ -f "$MARKER" ] && [ "$(head -1 "$MARKER")" = "$want" ] \
    && [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    log "Kafka $KAFKA_VERSION installed by a concurrent run"
    echo "$LIBS"
    exit 0
fi

tmp="$DEST/libs.tmp.$$"
rm -rf "$tmp" "$MARKER"
trap 'rm -rf "$tmp"' EXIT
log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION + log4j $LOG4J_VERSION with Maven (first run downloads ~45 MB)"
t0=$(date +%s)
# Run from a neutral dir: the pom is only a dependency manifest, never built.
# Maven's output goes to a log (even -q prints stray ANSI resets); shown only on failure.
if ! (cd "$DEST" && mvn -B -q -ntp -Dstyle.color=never -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp") \
        >"$DEST/mvn.log" 2>&1; then
    log "mvn failed (log: $DEST/mvn.log):"; grep -E 'ERROR' "$DEST/mvn.log" | head -20 >&2 || true
    exit 1
fi
[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { log "kafka_2.13-$KAFKA_VERSION.jar not in output"; exit 1; }
log "copied $(ls "$tmp" | wc -l) jars ($(du -sh "$tmp" | cut -f1)) in $(( $(date +%s) - t0 ))s"

# Sanity check: the jars load and report the expected version.
got="$(java -cp "$tmp/*" kafka.Kafka --version 2>/dev/null | tail -1 || true)"
[ "$got" = "$KAFKA_VERSION" ] || { log "kafka.Kafka --version printed '$got', expected $KAFKA_VERSION"; exit 1; }
log "kafka.Kafka --version: $got"

rm -rf "$LIBS" "$DEST/kafka.jsa"
mv "$tmp" "$LIBS"
trap - EXIT

# --- AppCDS archive (best effort) -------------------------------------------------------
# One throw-away broker start with -XX:ArchiveClassesAtExit records the ~5k classes Kafka
# loads at startup; later starts with -XX:SharedArchiveFile=$DEST/kafka.jsa map them
# instead of parsing + verifying jars: broker ready in ~1.0 s instead of ~1.5 s (C1 only)
# or ~2.1 s (JVM defaults) on 2 cores. The archive is tied to this JDK build and to the
# exact classpath "$LIBS/*"; if either changes the JVM prints one cds warning and simply
# starts without it. Skip with KAFKA_CDS=0.
make_cds() {
    local work port cport pid i jsa="$DEST/kafka.jsa"
    work="$(mktemp -d "${TMPDIR:-/tmp}/kafka-cds.XXXXXX")"
    freeport() {   # a random high port nothing listens on (bash /dev/tcp probe)
        local p
        for _ in $(seq 50); do
            p=$(( 20000 + RANDOM % 40000 ))
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
        done
        return 1
    }
    port="$(freeport)" && cport="$(freeport)" || { rm -rf "$work"; return 1; }
    cat > "$work/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$work/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
PROPS
    java -cp "$LIBS/*" kafka.tools.StorageTool format -t "$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)" \
        -c "$work/server.properties" --standalone >"$work/format.log" 2>&1 || { rm -rf "$work"; return 1; }
    java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -XX:ArchiveClassesAtExit="$jsa.tmp" -cp "$LIBS/*" \
        -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -Dkafka.logs.dir="$work" \
        kafka.Kafka "$work/server.properties" >"$work/broker.log" 2>&1 &
    pid=$!
    for i in $(seq 600); do
        grep -q "Kafka Server started" "$work/broker.log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1   # let the post-start classes (metadata publishing, first fetches) load too
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
    [ -s "$jsa.tmp" ] && mv "$jsa.tmp" "$jsa"
}
if [ "${KAFKA_CDS:-1}" = 1 ]; then
    log "building AppCDS archive with one throw-away broker start"
    if make_cds; then
        log "AppCDS archive: $DEST/kafka.jsa ($(du -h "$DEST/kafka.jsa" | cut -f1))"
    else
        rm -f "$DEST/kafka.jsa.tmp"; log "AppCDS archive not made (not needed; starts are just slower)"
    fi
fi

{ echo "$want"; date -u +%FT%TZ; } > "$MARKER"
log "installed Kafka $KAFKA_VERSION into $LIBS"
echo "$LIBS"
