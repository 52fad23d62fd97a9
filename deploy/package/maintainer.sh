# Shared by the .deb and .rpm maintainer scripts (package.sh prepends it to each): what the
# package may do to a running host. It never starts the agent, and restarts it only on an
# upgrade, only when it runs, and only when this host has been set up (its configuration is no
# longer the package's example): installing the package must not change a DB host's role.
GOSSIP_HA_CONFIG=/etc/gossip-ha/gossip-ha.toml
GOSSIP_HA_EXAMPLE=/usr/share/gossip-ha/gossip-ha.toml.example
GOSSIP_HA_STATE=/var/lib/gossip-ha

gossip_ha_systemd() {
    [ -d /run/systemd/system ]
}

gossip_ha_is_example() {
    [ ! -e "$GOSSIP_HA_CONFIG" ] || cmp -s "$GOSSIP_HA_CONFIG" "$GOSSIP_HA_EXAMPLE"
}

gossip_ha_configure() {
    # $1: the version upgraded from, empty on a first install.
    install -d -m 0700 "$GOSSIP_HA_STATE"
    chmod 0700 "$GOSSIP_HA_STATE"
    if gossip_ha_systemd; then
        systemctl daemon-reload || true
    fi
    if gossip_ha_is_example; then
        echo "gossip-ha: this host is not set up yet: write its configuration with \`gossip-ha init\`," \
            "check it with \`gossip-ha check-config\`, then \`systemctl enable --now gossip-ha\`" \
            "(README: /usr/share/doc/gossip-ha/README.md)."
        return 0
    fi
    if [ -n "$1" ] && gossip_ha_systemd && systemctl is-active --quiet gossip-ha.service; then
        # A new version that refuses the host's config would leave it without an agent (the
        # unit's check-config fails every start): then the old agent keeps running.
        if ! /usr/bin/gossip-ha check-config --config "$GOSSIP_HA_CONFIG" >/dev/null; then
            echo "gossip-ha: NOT restarting the running agent: the new version refuses $GOSSIP_HA_CONFIG (run \`gossip-ha check-config\`, fix it, then \`systemctl restart gossip-ha\`)." >&2
            return 0
        fi
        echo "gossip-ha: restarting the running agent on the new version (upgrading hosts one at a time is the operator's call)."
        systemctl restart gossip-ha.service || echo "gossip-ha: the restart failed: see \`journalctl -u gossip-ha\`" >&2
    fi
}

gossip_ha_stop_for_removal() {
    if gossip_ha_systemd; then
        systemctl stop gossip-ha.service || true
    fi
}

gossip_ha_after_removal() {
    if gossip_ha_systemd; then
        systemctl daemon-reload || true
    fi
}

# The agent's own bookkeeping goes; anything else under the state directory (saved divergent
# transactions, dumps and binary logs of a split-brain repair) is the operator's data and stays.
gossip_ha_purge() {
    rm -f /etc/systemd/system/multi-user.target.wants/gossip-ha.service
    rm -f "$GOSSIP_HA_STATE/state.json"
    if [ -d "$GOSSIP_HA_STATE" ] && ! rmdir "$GOSSIP_HA_STATE" 2>/dev/null; then
        echo "gossip-ha: kept $GOSSIP_HA_STATE: it holds repair data (see README, split-brain)."
    fi
    rmdir /etc/gossip-ha 2>/dev/null || true
    gossip_ha_after_removal
}
