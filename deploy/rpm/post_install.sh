#GOSSIP_HA_MAINTAINER#
# $1: 1 on a first install, 2 and more on an upgrade.
if [ "$1" -gt 1 ]; then
    gossip_ha_configure upgrade
else
    gossip_ha_configure ""
fi
