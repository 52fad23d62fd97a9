#GOSSIP_HA_MAINTAINER#
# rpm has no purge: an erase keeps a changed configuration as .rpmsave and the operator's files.
if [ "$1" -eq 0 ]; then
    gossip_ha_purge
fi
