#GOSSIP_HA_MAINTAINER#
# $1: 0 when the package is erased, 1 when an upgrade replaces it (the agent keeps running).
if [ "$1" -eq 0 ]; then
    gossip_ha_stop_for_removal
fi
