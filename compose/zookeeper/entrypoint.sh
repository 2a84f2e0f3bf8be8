#!/bin/sh
# Start ZooKeeper in discovery's image. zoo.cfg is written from the ZOO_*
# variables of the official image's entrypoint (ZOO_MY_ID, ZOO_SERVERS,
# ZOO_TICK_TIME, ZOO_CFG_EXTRA...), then QuorumPeerMain runs on Debian's jars
# with the JVM flags of discovery.servers.ZooKeeperCluster plus $JVMFLAGS. Java
# replaces this shell, so `docker stop` and `docker kill` reach the server itself.
set -euf

conf=${ZOO_CONF_DIR:-/conf}
data=${ZOO_DATA_DIR:-/data}
mkdir -p "$conf" "$data"
{
  echo "dataDir=$data"
  echo "tickTime=${ZOO_TICK_TIME:-2000}"
  echo "initLimit=${ZOO_INIT_LIMIT:-5}"
  echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
  echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
  echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
  echo "admin.enableServer=${ZOO_ADMINSERVER_ENABLED:-true}"
  for server in ${ZOO_SERVERS:-server.1=localhost:2888:3888;2181}; do
    echo "$server"
  done
  if [ -n "${ZOO_4LW_COMMANDS_WHITELIST:-}" ]; then
    echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
  fi
  for entry in ${ZOO_CFG_EXTRA:-}; do
    echo "$entry"
  done
} >"$conf/zoo.cfg"
[ -f "$data/myid" ] || echo "${ZOO_MY_ID:-1}" >"$data/myid"

classpath=/usr/share/java/zookeeper.jar
[ -f /usr/share/java/slf4j-simple.jar ] && classpath=$classpath:/usr/share/java/slf4j-simple.jar
# $JVMFLAGS is split into words on purpose: it holds several flags.
# shellcheck disable=SC2086
exec java ${JVMFLAGS:-} \
  -Xshare:auto -XX:-UsePerfData \
  -Djava.awt.headless=true \
  -Dzookeeper.jmx.log4j.disable=true \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
  -cp "$classpath" \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$conf/zoo.cfg"
